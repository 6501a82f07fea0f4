package client

import (
	"fmt"
	"strconv"
)

// wait MS lets time pass: timers and deadlines due on the way fire.
func (r *Runner) wait(a args) error {
	if len(a.pos) != 1 {
		return fmt.Errorf("wait MS")
	}
	ms, err := strconv.ParseUint(a.pos[0], 10, 32)
	if err != nil {
		return err
	}
	r.T.Wait(uint32(ms))
	return nil
}
