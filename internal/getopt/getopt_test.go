package getopt

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	opts, rest, err := Parse([]string{"-fd", "-p5403", "-l", "::1", "-S", "a=b", "x", "-v"}, "46dfhvc:l:m:p:S:s:")
	require.NoError(t, err)
	require.Equal(t, []Opt{{'f', ""}, {'d', ""}, {'p', "5403"}, {'l', "::1"}, {'S', "a=b"}}, opts)
	require.Equal(t, []string{"x", "-v"}, rest)
	_, rest, err = Parse([]string{"-f", "--", "-d"}, "fd")
	require.NoError(t, err)
	require.Equal(t, []string{"-d"}, rest)
	_, _, err = Parse([]string{"-x"}, "fd")
	require.Equal(t, &Error{Option: 'x'}, err)
	require.EqualError(t, err, "invalid option -- 'x'")
	_, _, err = Parse([]string{"-p"}, "p:")
	require.Equal(t, &Error{Option: 'p', Missing: true}, err)
}
