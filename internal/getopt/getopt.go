// Package getopt parses short options the way POSIX getopt(3) and bash's
// getopts do, so the upstream tools' command lines work unchanged.
package getopt

import (
	"fmt"
	"strings"
)

// Opt is one parsed option.
type Opt struct {
	Name byte
	Arg  string
}

// Error is a command line error; Missing tells a missing argument from an
// unknown option.
type Error struct {
	Option  byte
	Missing bool
}

func (e *Error) Error() string {
	if e.Missing {
		return fmt.Sprintf("option requires an argument -- '%c'", e.Option)
	}
	return fmt.Sprintf("invalid option -- '%c'", e.Option)
}

// Parse parses args like POSIX getopt(3): spec lists option letters, a
// letter followed by ':' takes an argument ("-p 5403", "-p5403"); short
// options combine ("-fd"); "--" ends the options. It returns the options
// in order and the remaining operands.
func Parse(args []string, spec string) ([]Opt, []string, error) {
	var out []Opt
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
				return nil, nil, &Error{Option: c}
			}
			if k+1 < len(spec) && spec[k+1] == ':' {
				switch {
				case j+1 < len(a):
					out = append(out, Opt{c, a[j+1:]})
				case i+1 < len(args):
					i++
					out = append(out, Opt{c, args[i]})
				default:
					return nil, nil, &Error{Option: c, Missing: true}
				}
				break
			}
			out = append(out, Opt{c, ""})
		}
	}
	return out, nil, nil
}
