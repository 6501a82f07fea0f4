//go:build !linux

package server

import (
	"errors"

	"golang.org/x/sys/unix"
)

// poller is Linux's epoll loop; elsewhere every connection is read by a
// goroutine of its own.
type poller struct{}

func newPoller(*Server) (*poller, error) { return nil, errors.New("no epoll on this system") }

func (*poller) adopt(*conn) error                { return errors.New("no poller") }
func (*poller) watch(*conn) error                { return errors.New("no poller") }
func (*poller) wantWrite(*conn, bool) error      { return errors.New("no poller") }
func (*poller) release(*conn)                    {}
func (*poller) handOff(*conn, chan bool, []byte) {}
func (*poller) run()                             {}
func (*poller) close()                           {}
func (*poller) compact()                         {}
func (*poller) tableLen() int                    { return 0 }

// sockWrite is the poller's write; without a poller nothing calls it.
func sockWrite(fd int, b []byte) (int, error) { return unix.Write(fd, b) }
