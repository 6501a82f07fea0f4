package adminipc_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	clientAddr = regexp.MustCompile(`(?m)^(        Client address:\t\t).*$`)
	clientPort = regexp.MustCompile(`(?m)^(        Client address:\t\t.*:)\d+$`)
	listenPort = regexp.MustCompile(`(?m)^(QNetd address:\t\t\t.*:)\d+$`)
)

// mask hides what must differ between two servers: the clients' addresses
// and the listening port.
func mask(s string) string {
	s = clientAddr.ReplaceAllString(s, "${1}ADDR")
	return listenPort.ReplaceAllString(s, "${1}PORT")
}

// maskPorts hides only port numbers.
func maskPorts(s string) string {
	s = clientPort.ReplaceAllString(s, "${1}PORT")
	return listenPort.ReplaceAllString(s, "${1}PORT")
}

// TestOutputMatchesUpstreamDaemon connects the same simulated nodes to
// Debian's corosync-qnetd and to ours and compares what Debian's
// corosync-qnetd-tool prints for each, and the raw replies to hand-made
// requests, with only client addresses and the listening port masked.
func TestOutputMatchesUpstreamDaemon(t *testing.T) {
	real := requireUpstream(t, "corosync-qnetd-tool")
	upAddr, upSock := startUpstream(t, "127.0.0.1")
	o := startOurs(t, nil)
	populate(t, upAddr)
	populate(t, o.addr)

	for _, args := range [][]string{
		{"-l", "-v"}, {"-l"}, {"-s"}, {"-s", "-v"},
		{"-l", "-v", "-c", `we "ird" \name`}, {"-l", "-c", "nul"}, {"-l", "-c", "nosuch"},
	} {
		up := runRealTool(t, real, append([]string{"-p", upSock}, args...)...)
		our := runRealTool(t, real, append([]string{"-p", o.sock}, args...)...)
		require.Equal(t, 0, up.code, "upstream %q: %s", args, up.stderr)
		require.Equal(t, mask(up.stdout), mask(our.stdout), "corosync-qnetd-tool %q", args)
		require.Equal(t, up.stderr, our.stderr)
		require.Equal(t, up.code, our.code)
		if strings.Join(args, " ") == "-l -v" {
			t.Logf("upstream -l -v:\n%s", up.stdout)
			t.Logf("ours -l -v:\n%s", our.stdout)
		}
	}

	exact := "list cluster " + strings.Repeat("a", 4096-len("list cluster ")-1) + "\n"
	for _, req := range []string{
		"\n", "  \t \n", "bogus things\n", "\"two words\" x\n", "BoGuS\n", "x\x00y\n",
		"status\x00junk\n", "STATUS VERBOSE\n", "status verbose trailing\r\n", "status x verbose\n",
		"list\rverbose\n", "list cluster nosuch\n", "LIST CLUSTER two\n", "list bogus verbose\n",
		"list cluster\n", "list cluster \"\" verbose\n", `list verbose cluster "we \"ird\" \\name"` + "\n",
		`list cluster we\ "ird"\ \\name` + "\n", "list cluster \"lms\n",
		"status", exact, strings.Repeat("a", 4096) + "\n", strings.Repeat("a", 5000) + "\n",
	} {
		up := ipcRequest(t, upSock, req)
		our := ipcRequest(t, o.sock, req)
		require.Equal(t, mask(up), mask(our), "request %q", req)
	}
}

// TestWildcardListenerAddresses: without -l upstream listens on an IPv6
// socket and shows IPv4 clients as ::ffff:a.b.c.d and its address as "*";
// ours must print the same (only port numbers masked).
func TestWildcardListenerAddresses(t *testing.T) {
	real := requireUpstream(t, "corosync-qnetd-tool")
	upAddr, upSock := startUpstream(t, "")
	o := startOursOn(t, "", nil)
	populate(t, upAddr)
	populate(t, o.addr)
	for _, args := range [][]string{{"-l", "-v"}, {"-s", "-v"}} {
		up := runRealTool(t, real, append([]string{"-p", upSock}, args...)...)
		our := runRealTool(t, real, append([]string{"-p", o.sock}, args...)...)
		require.Equal(t, 0, up.code, "upstream %q: %s", args, up.stderr)
		require.Equal(t, maskPorts(up.stdout), maskPorts(our.stdout), "corosync-qnetd-tool %q", args)
	}
	up := runRealTool(t, real, "-p", upSock, "-l")
	require.Contains(t, up.stdout, "Client address:\t\t::ffff:127.0.0.1:")
	require.Contains(t, runRealTool(t, real, "-p", upSock, "-s").stdout, "QNetd address:\t\t\t*:")
}
