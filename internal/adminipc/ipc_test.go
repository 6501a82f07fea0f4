package adminipc_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/qnetdcmd"
	"github.com/qnetd-addon/qnetd/internal/upstreamtest"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// requireUpstream returns the path of a Debian binary, or skips (fails
// when QNETD_REQUIRE_UPSTREAM is set).
func requireUpstream(t *testing.T, name string) string {
	t.Helper()
	return upstreamtest.Binary(t, name)
}

type ours struct {
	addr string
	sock string
	srv  *server.Server
	ipc  *adminipc.Server
	// shutdown is closed when "shutdown" arrived over IPC
	shutdown chan struct{}
}

// startOurs runs our TCP server (TLS off, 127.0.0.1:0) and the IPC server
// on a socket in a temporary directory.
func startOurs(t *testing.T, mutate func(*adminipc.Config)) *ours {
	return startOursOn(t, "127.0.0.1", mutate)
}

// startOursOn is startOurs listening on host ("" = every address, dual stack).
func startOursOn(t *testing.T, host string, mutate func(*adminipc.Config)) *ours {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Engine.TLS = wire.TLSUnsupported
	cfg.Host, cfg.Port = host, 0
	cfg.Log = zerolog.Nop()
	srv := server.New(cfg)
	ln, err := srv.Listen()
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Shutdown)
	port := ln.Addr().(*net.TCPAddr).Port
	o := &ours{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), srv: srv, shutdown: make(chan struct{})}
	o.sock = filepath.Join(t.TempDir(), "qnetd.sock")
	icfg := adminipc.Config{Path: o.sock, MaxClients: 10, MaxReceiveSize: 4096, MaxSendSize: 10 << 20,
		Status: srv.Status, Shutdown: func() { close(o.shutdown) }, Log: zerolog.Nop(),
		Info: adminipc.ServerInfo{Host: host, Port: port, ListenAddr: ln.Addr()}}
	if mutate != nil {
		mutate(&icfg)
	}
	o.ipc, err = adminipc.Listen(icfg)
	require.NoError(t, err)
	go func() { _ = o.ipc.Serve() }()
	t.Cleanup(func() { o.ipc.Close() })
	return o
}

// startUpstream runs Debian's corosync-qnetd -f -d -s off [-l host]
// (clients connect over 127.0.0.1) with its IPC socket in a temporary
// directory, until the test ends.
func startUpstream(t *testing.T, host string) (addr, sock string) {
	t.Helper()
	q := upstreamtest.Start(t, host)
	return q.Addr, q.Sock
}

type simNode struct {
	s          client.Settings
	ring       wire.RingID
	config     []wire.NodeInfo
	version    *uint64
	members    []wire.NodeInfo
	heuristics wire.Heuristics
	change     wire.Heuristics // HEURISTICS_CHANGE after the membership (Undefined = none)
}

func ids(list ...uint32) []wire.NodeInfo {
	out := make([]wire.NodeInfo, len(list))
	for i, id := range list {
		out[i] = wire.NodeInfo{NodeID: id}
	}
	return out
}

func u64(x uint64) *uint64 { return &x }

// scenario is the same set of clients for every server: ffsplit with KAP,
// a tie-breaker by node id with data center ids and heuristics, LMS,
// 2nodelms, the test algorithm under a cluster name with a NUL byte, and
// one connection that only sent PREINIT.
func scenario() []simNode {
	ring := wire.RingID{NodeID: 1, Seq: 0x24}
	ff := func(id uint32) client.Settings {
		return client.Settings{Cluster: "cl", NodeID: id, Algorithm: wire.AlgoFFSplit,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true}
	}
	weird := client.Settings{Cluster: `we "ird" \name`, NodeID: 3, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerNodeID, NodeID: 4}, Heartbeat: 10000, KAP: false}
	return []simNode{
		{s: ff(2), ring: ring, config: ids(1, 2), version: u64(42), members: ids(1, 2)},
		{s: ff(1), ring: ring, config: ids(1, 2), version: u64(42), members: ids(1, 2)},
		{s: weird, ring: wire.RingID{NodeID: 3, Seq: 0xabcdef0123},
			config:  []wire.NodeInfo{{NodeID: 3, DataCenterID: 7}, {NodeID: 4}, {NodeID: 10, DataCenterID: 9}},
			members: []wire.NodeInfo{{NodeID: 3, DataCenterID: 7}}, heuristics: wire.HeuristicsPass},
		{s: client.Settings{Cluster: "lms", NodeID: 5, Algorithm: wire.AlgoLMS,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerHighest}, Heartbeat: 12000, KAP: true},
			ring: wire.RingID{NodeID: 5, Seq: 2}, config: ids(5, 6), members: ids(5),
			heuristics: wire.HeuristicsFail, change: wire.HeuristicsPass},
		{s: client.Settings{Cluster: "two", NodeID: 7, Algorithm: wire.Algo2NodeLMS,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 9000, KAP: true},
			ring: wire.RingID{NodeID: 7, Seq: 9}, config: ids(7, 8), version: u64(0), members: ids(7)},
		{s: client.Settings{Cluster: "nul\x00hidden", NodeID: 9, Algorithm: wire.AlgoTest,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 10000, KAP: true}},
	}
}

// populate connects the scenario's nodes to addr and waits until no vote
// is in flight.
func populate(t *testing.T, addr string) {
	t.Helper()
	dial := func(n *client.Node) *client.Conn {
		c, err := client.Dial(addr, n, 5*time.Second)
		require.NoError(t, err)
		_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
		t.Cleanup(func() { c.Close() })
		return c
	}
	call := func(c *client.Conn, m *wire.Msg) {
		t.Helper()
		r, err := c.Call(m)
		require.NoError(t, err)
		require.NotEqual(t, wire.MsgServerError, r.Type, "%s", r)
	}
	// connected, PREINIT only: counted as a client, in no cluster
	pre := dial(client.NewNode(client.Settings{Cluster: "cl"}))
	call(pre, pre.Node.Preinit())

	sims := scenario()
	conns := make([]*client.Conn, len(sims))
	for i, s := range sims {
		conns[i] = dial(client.NewNode(s.s))
		require.NoError(t, conns[i].Handshake(s.ring, nil))
	}
	for i, s := range sims {
		if s.config != nil {
			call(conns[i], conns[i].Node.Config(s.config, true, s.version))
		}
	}
	for i, s := range sims {
		if s.members != nil {
			call(conns[i], conns[i].Node.Membership(s.ring, s.members, s.heuristics))
		}
		if s.change != wire.HeuristicsUndefined {
			call(conns[i], conns[i].Node.HeuristicsChange(s.change))
		}
	}
	// Barrier rounds: a SET_OPTION round trip on every connection reads
	// (and answers) every VOTE_INFO queued before it. A round in which no
	// node got a VOTE_INFO means nothing is in flight any more.
	for round := 0; ; round++ {
		require.Less(t, round, 20, "votes still moving")
		before := 0
		for _, c := range conns {
			before += c.Node.VoteInfos
		}
		for _, c := range conns {
			call(c, c.Node.SetOptionKAP())
		}
		after := 0
		for _, c := range conns {
			after += c.Node.VoteInfos
		}
		if after == before {
			return
		}
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func runOurTool(args ...string) result {
	var out, errb bytes.Buffer
	code := adminipc.ToolMain(args, &out, &errb)
	return result{out.String(), errb.String(), code}
}

func runRealTool(t *testing.T, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "run %s: %v", bin, err)
		code = ee.ExitCode()
	}
	return result{out.String(), errb.String(), code}
}

// TestToolMatchesUpstreamTool runs our corosync-qnetd-tool and Debian's
// against our IPC server: same stdout, stderr and exit code.
func TestToolMatchesUpstreamTool(t *testing.T) {
	real := requireUpstream(t, "corosync-qnetd-tool")
	o := startOurs(t, nil)
	populate(t, o.addr)
	missing := filepath.Join(t.TempDir(), "none.sock")
	cases := [][]string{
		{"-l", "-v"}, {"-s"}, {"-s", "-v"}, {"-l"},
		{"-c", `we "ird" \name`, "-l"}, {"-l", "-v", "-c", "cl"}, {"-c", "nosuch", "-l"},
		{"-c", "", "-l", "-v"}, {"-c", "nul", "-l", "-v"}, {"-lvc", "lms"}, {"-s", "-c", "cl", "-v"},
		{"-s", "extra", "operands", "-v"}, {"-l", "-s"}, {"-s", "-l"}, {"-v"}, {}, {"-h", "-s"}, {"-s", "--", "-l"},
		{"-p", missing, "-s"}, {"-p", "", "-l"}, {"-p", strings.Repeat("x", 200), "-l"},
		{"-p", t.TempDir(), "-s"},
	}
	for _, args := range cases {
		withSock := append([]string{"-p", o.sock}, args...)
		got, want := runOurTool(withSock...), runRealTool(t, real, withSock...)
		require.Equal(t, want, got, "corosync-qnetd-tool %q", args)
		if strings.Join(args, " ") == "-l -v" {
			t.Logf("corosync-qnetd-tool -l -v:\n%s", got.stdout)
		}
	}
	// getopt errors: upstream names the program by its full argv[0]
	for _, args := range [][]string{{"-x", "-s"}, {"-s", "-c"}} {
		got, want := runOurTool(args...), runRealTool(t, real, args...)
		require.Equal(t, want.code, got.code, "%q", args)
		require.Equal(t, want.stdout, got.stdout, "%q", args)
		require.Equal(t, strings.Replace(want.stderr, real, "corosync-qnetd-tool", 1), got.stderr, "%q", args)
	}

	// pcs reads cluster names from -l with this regex
	pcs := regexp.MustCompile(`(?m)^Cluster "(?P<cluster>[^"]+)":$`)
	var names []string
	for _, m := range pcs.FindAllStringSubmatch(runOurTool("-p", o.sock, "-l").stdout, -1) {
		names = append(names, m[1])
	}
	require.Equal(t, []string{"cl", "lms", "two", "nul"}, names, `the "we \"ird\"" name has quotes pcs cannot parse, as with upstream`)
}

// TestToolReplyHandling runs both tools against a fake IPC server giving
// canned replies: error, unknown and odd status lines, early close.
func TestToolReplyHandling(t *testing.T) {
	real := requireUpstream(t, "corosync-qnetd-tool")
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	replies := make(chan string, 1)
	requests := make(chan string, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			requests <- line
			_, _ = io.WriteString(c, <-replies)
			c.Close()
		}
	}()
	for _, reply := range []string{
		"OK\nbody\n", "ok\r\nbody\x00with nul", "OK", "", "Error\nNo command specified\n", "ERROR\nx",
		"Error\n", "Bogus\nbody\n", "OK\x00junk\nbody\n", " OK\nbody\n",
		strings.Repeat("O", 511) + "\nbody", strings.Repeat("O", 512) + "\nbody", strings.Repeat("O", 600),
	} {
		var res [2]result
		var req [2]string
		for i, run := range []func() result{
			func() result { return runOurTool("-p", sock, "-l", "-v", "-c", `a"b\c`) },
			func() result { return runRealTool(t, real, "-p", sock, "-l", "-v", "-c", `a"b\c`) },
		} {
			replies <- reply
			res[i] = run()
			req[i] = <-requests
		}
		require.Equal(t, res[1], res[0], "reply %q", reply)
		require.Equal(t, req[1], req[0])
		require.Equal(t, `list verbose cluster "a\"b\\c" `+"\n", req[0])
	}
}

// TestIPCProtocol sends raw requests to our IPC server.
func TestIPCProtocol(t *testing.T) {
	o := startOurs(t, nil)
	populate(t, o.addr)
	for req, want := range map[string]string{
		"\n":                          "Error\nNo command specified\n",
		"bogus things\n":              "Error\nUnknown command 'bogus'\n",
		"\"two words\" x\n":           "Error\nUnknown command 'two words'\n",
		"list cluster nosuch\n":       "OK\n",
		"LIST CLUSTER two\n":          "OK\nCluster \"two\":\n    Algorithm:\t\t2 Node LMS\n",
		"status\n":                    "OK\nQNetd address:\t\t\t127.0.0.1:",
		"status verbose trailing\r\n": "OK\nQNetd address:\t\t\t127.0.0.1:",
	} {
		got := ipcRequest(t, o.sock, req)
		require.True(t, strings.HasPrefix(got, want), "%q: got %q", req, got)
	}
	require.NotContains(t, ipcRequest(t, o.sock, "LIST CLUSTER two\n"), "KAP Tie-breaker",
		"KAP is only shown for ffsplit")

	// a line longer than ipc_max_receive_size: closed without a reply
	require.Equal(t, "", ipcRequest(t, o.sock, strings.Repeat("a", 5000)+"\n"))
	// EOF before the newline: no reply either
	require.Equal(t, "", ipcRequest(t, o.sock, "status"))
}

func ipcRequest(t *testing.T, sock, req string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(c, req)
	if err == nil && !strings.HasSuffix(req, "\n") {
		err = c.(*net.UnixConn).CloseWrite()
	}
	if err != nil && !isReset(err) { // the server may close first
		require.NoError(t, err)
	}
	b, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		require.NoError(t, err)
	}
	return string(b)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func TestIPCMaxClientsAndSendSize(t *testing.T) {
	o := startOurs(t, func(c *adminipc.Config) { c.MaxClients = 1; c.MaxSendSize = 1024 })
	populate(t, o.addr)
	first, err := net.Dial("unix", o.sock)
	require.NoError(t, err)
	defer first.Close()
	// the second connection is closed at once: the first holds the only slot
	require.Equal(t, "", ipcRequest(t, o.sock, "status\n"))
	_, err = io.WriteString(first, "list verbose\n")
	require.NoError(t, err)
	_ = first.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(first)
	require.NoError(t, err)
	require.Equal(t, "Error\nCan't get QNetd cluster list\n", string(b), "the verbose list is over 1024 bytes")
	// the slot is free again
	require.True(t, strings.HasPrefix(ipcRequest(t, o.sock, "status\n"), "OK\n"))

	r := runOurTool("-p", o.sock, "-l", "-v")
	require.Equal(t, result{"", "Error: Can't get QNetd cluster list\n", adminipc.ExitQNetdError}, r)
}

func TestIPCShutdown(t *testing.T) {
	o := startOurs(t, nil)
	r := runOurTool("-p", o.sock, "-H")
	require.Equal(t, result{"", "", 0}, r)
	select {
	case <-o.shutdown:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown callback not called")
	}
}

func TestToolWithoutServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	r := runOurTool("-p", sock, "-s")
	require.Equal(t, adminipc.ExitSocketConnect, r.code)
	require.Equal(t, "", r.stdout)
	require.Equal(t, "corosync-qnetd-tool: Can't connect to qnetd socket (is QNetd running?): No such file or directory\n", r.stderr)
	require.Contains(t, strings.ToLower(r.stderr), "is qnetd running?", "what pcs looks for")

	r = runOurTool()
	require.Equal(t, result{"usage: corosync-qnetd-tool [-Hhlsv] [-c cluster_name] [-p qnetd_ipc_socket_path]\n", "", 1}, r)
}

func TestListenOptions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	require.NoError(t, os.WriteFile(path, []byte("stale"), 0o600))
	do := func(context.Context) (*engine.Status, error) { return &engine.Status{}, nil }
	s, err := adminipc.Listen(adminipc.Config{Path: path, Umask: "077", GID: strconv.Itoa(os.Getgid()), Status: do})
	require.NoError(t, err, "an existing file is replaced")
	st, err := os.Lstat(path)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket, st.Mode().Type())
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "umask 077 during bind")
	require.NoError(t, s.Close())
	_, err = os.Lstat(path)
	require.True(t, os.IsNotExist(err), "Close removes the socket file")

	_, err = adminipc.Listen(adminipc.Config{Path: "", Status: do})
	require.ErrorIs(t, err, syscall.ENAMETOOLONG)
	_, err = adminipc.Listen(adminipc.Config{Path: "/" + strings.Repeat("x", 107), Status: do})
	require.ErrorIs(t, err, syscall.ENAMETOOLONG)
	_, err = adminipc.Listen(adminipc.Config{Path: filepath.Join(dir, "no", "dir.sock"), Status: do})
	require.ErrorIs(t, err, syscall.ENOENT)
	_, err = adminipc.Listen(adminipc.Config{Path: path, GID: "no-such-group-here", Status: do})
	require.Error(t, err)
}

var startedAddr = regexp.MustCompile(`corosync-qnetd started .*\baddr=(\S+)`)

// TestDaemonShutdownOverIPC runs corosync-qnetd's Main and stops it with
// "corosync-qnetd-tool -H": exit status 0, socket removed.
func TestDaemonShutdownOverIPC(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "qnetd.sock")
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		code := qnetdcmd.Main([]string{"-f", "-s", "off", "-l", "127.0.0.1", "-p", "0",
			"-S", "lock_file=" + filepath.Join(dir, "qnetd.pid") + ",local_socket_file=" + sock}, nil, io.Discard, pw)
		pw.Close()
		exit <- code
	}()
	// The port is read back from the start line, so none is guessed.
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			if m := startedAddr.FindStringSubmatch(sc.Text()); !once && m != nil {
				once = true
				ready <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case code := <-exit:
		t.Fatalf("corosync-qnetd exited with %d", code)
	case <-time.After(10 * time.Second):
		t.Fatal("no IPC socket")
	}
	r := runOurTool("-p", sock, "-s")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "QNetd address:\t\t\t"+addr+"\n")
	require.Contains(t, r.stdout, "TLS:\t\t\t\tUnsupported\n")
	require.Equal(t, result{"", "", 0}, runOurTool("-p", sock, "-H"))
	select {
	case code := <-exit:
		require.Equal(t, 0, code)
	case <-time.After(10 * time.Second):
		t.Fatal("corosync-qnetd did not stop after shutdown")
	}
	_, err := os.Lstat(sock)
	require.True(t, os.IsNotExist(err))
}
