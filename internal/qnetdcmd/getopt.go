package qnetdcmd

import (
	"fmt"
	"strings"
)

// opt is one parsed option.
type opt struct {
	name byte
	arg  string
}

// getopt parses args like POSIX getopt(3): spec lists option letters, a
// letter followed by ':' takes an argument ("-p 5403", "-p5403"); short
// options combine ("-fd"); "--" ends the options. It returns the options
// in order and the remaining operands.
func getopt(args []string, spec string) ([]opt, []string, error) {
	var out []opt
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return out, args[i+1:], nil
		}
		if len(a) < 2 || a[0] != '-' {
			return out, args[i:], nil
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			k := strings.IndexByte(spec, c)
			if k < 0 || c == ':' {
				return nil, nil, fmt.Errorf("invalid option -- '%c'", c)
			}
			if k+1 < len(spec) && spec[k+1] == ':' {
				switch {
				case j+1 < len(a):
					out = append(out, opt{c, a[j+1:]})
				case i+1 < len(args):
					i++
					out = append(out, opt{c, args[i]})
				default:
					return nil, nil, fmt.Errorf("option requires an argument -- '%c'", c)
				}
				break
			}
			out = append(out, opt{c, ""})
		}
	}
	return out, nil, nil
}
