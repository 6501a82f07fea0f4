package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHelpExitsZero: "qnetd -h" and "qnetd TOOL -h" print usage and exit
// 0; called by an upstream name the tool keeps upstream's exit status.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"version"},
		{"addon", "-h"}, {"addon", "--help"}, {"addon", "run", "-h"}, {"addon", "init", "--help"}, {"addon", "healthcheck", "-h"},
		{"pairing", "-h"},
		{"corosync-qnetd", "-h"}, {"corosync-qnetd-tool", "-h"}, {"corosync-qnetd-certutil", "-h"}} {
		require.Equal(t, 0, run("qnetd", args), "qnetd %v", args)
	}
	require.Equal(t, 2, run("qnetd", nil), "no tool is a usage error")
	require.Equal(t, 2, run("qnetd", []string{"addon"}), "addon without a command is a usage error")
	require.Equal(t, 1, run("corosync-qnetd", []string{"-h"}), "upstream's corosync-qnetd -h exits 1")
	require.Equal(t, 1, run("corosync-qnetd-tool", []string{"-h"}), "upstream's corosync-qnetd-tool -h exits 1")
}
