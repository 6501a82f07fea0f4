package adminipc

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// TestReplySizeLimits follows upstream's dynar arithmetic: each formatted
// piece needs room for a NUL, and "OK\n" is prepended afterwards.
func TestReplySizeLimits(t *testing.T) {
	s := &Server{cfg: Config{MaxSendSize: 1024, Log: zerolog.Nop()}}
	body := func(n int) string { return strings.Repeat("x", n) }
	require.Equal(t, "OK\n"+body(1021), string(s.okReply(body(1021), "status")))
	require.Equal(t, "Error\nInternal IPC buffer too small\n", string(s.okReply(body(1022), "status")))
	require.Equal(t, "Error\nInternal IPC buffer too small\n", string(s.okReply(body(1023), "status")))
	require.Equal(t, "Error\nCan't get QNetd status\n", string(s.okReply(body(1024), "status")))
	require.Equal(t, "Error\nCan't get QNetd cluster list\n", string(s.okReply(body(5000), "cluster list")))

	// an error message that does not fit: closed without a reply
	require.Equal(t, "Error\n"+body(1017)+"\n", string(s.errorReply(body(1017))))
	require.Nil(t, s.errorReply(body(1018)))

	// Execute end to end for the replies that need no engine
	s.cfg.MaxReceiveSize = 4096
	for req, want := range map[string]string{
		"\n":                "Error\nNo command specified\n",
		"nope\n":            "Error\nUnknown command 'nope'\n",
		"SHUTDOWN now\n":    "OK\n",
		"\"\"\n":            "Error\nNo command specified\n",
		"un\\ known\"!\"\n": "Error\nUnknown command 'un known!'\n",
	} {
		got, shutdown := s.Execute([]byte(req))
		require.Equal(t, want, string(got), "%q", req)
		require.Equal(t, want == "OK\n", shutdown)
	}
	s.cfg.MaxReceiveSize = 8192
	got, _ := s.Execute([]byte("u" + body(1100) + "\n"))
	require.Nil(t, got, "Unknown command '<1101 bytes>' exceeds ipc_max_send_size: closed")
}
