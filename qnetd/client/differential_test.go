package client_test

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/server/servertest"

	"github.com/qnetd-addon/qnetd/internal/upstreamtest"
	"github.com/qnetd-addon/qnetd/qnetd/client"
)

// upstreamQnetd starts Debian's corosync-qnetd on loopback and returns
// its address and a function that reads its client count over its IPC
// socket. The process is ended (by PID) when the test ends.
func upstreamQnetd(t *testing.T) (string, func() (int, error)) {
	t.Helper()
	q := upstreamtest.Start(t, "127.0.0.1")
	return q.Addr, func() (int, error) { return ipcClients(q.Sock) }
}

var clientsLine = regexp.MustCompile(`(?m)^Connected clients:\s+(\d+)$`)

// ipcClients asks corosync-qnetd's admin socket for its client count.
func ipcClients(sock string) (int, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("status \n")); err != nil {
		return 0, err
	}
	var b strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	m := clientsLine.FindStringSubmatch(b.String())
	if m == nil {
		return 0, fmt.Errorf("no client count in %q", b.String())
	}
	return strconv.Atoi(m[1])
}

// ourQnetd runs our server in-process with TLS off on a loopback port.
func ourQnetd(t *testing.T) (string, func() (int, error)) {
	t.Helper()
	srv, ln := servertest.Start(t, nil)
	return ln.Addr().String(), func() (int, error) { return srv.NumConnections(), nil }
}

// TestDifferential plays every engine scenario over TCP against Debian's
// corosync-qnetd and against our server: both must print exactly the
// expected votes. Each file gets fresh servers.
func TestDifferential(t *testing.T) {
	if testing.Short() {
		t.Skip("differential test needs real time; not run with -short")
	}
	files, err := filepath.Glob("../engine/testdata/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	servers := []struct {
		name  string
		start func(*testing.T) (string, func() (int, error))
	}{{"upstream", upstreamQnetd}, {"ours", ourQnetd}}
	for _, path := range files {
		f, err := client.ParseStory(path)
		require.NoError(t, err)
		t.Run(filepath.Base(path), func(t *testing.T) {
			if f.SkipDifferential != "" {
				t.Skipf("in-process only: %s", f.SkipDifferential)
			}
			for _, srv := range servers {
				t.Run(srv.name, func(t *testing.T) {
					addr, clients := srv.start(t)
					tr := client.NewTCPTransport(addr)
					tr.Clients = clients
					defer tr.CloseAll()
					got, err := client.RunStory(f, tr)
					require.NoError(t, err)
					for i, b := range f.Blocks {
						require.Equal(t, b.Want, got[i], "%s:%d (%s)", path, b.Line, srv.name)
					}
				})
			}
		})
	}
}
