package qnetdcmd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func TestParseUpstreamFlags(t *testing.T) {
	s, action, err := Parse([]string{"-f", "-d", "-d", "-4", "-l", "10.0.0.1", "-p", "5404", "-s", "REQ", "-c", "off", "-m", "7",
		"-S", "heartbeat_interval_min=500,DPD_ENABLED=no,keep_active_partition_tie_breaker=on,dpd_interval=3,,ignored=1"}, nil)
	require.NoError(t, err)
	require.Empty(t, action)
	require.True(t, s.Foreground)
	require.Equal(t, 2, s.Debug)
	require.Equal(t, "4", s.Family)
	require.Equal(t, "10.0.0.1", s.ListenAddr)
	require.Equal(t, 5404, s.Port)
	require.Equal(t, "req", s.TLS)
	require.False(t, s.ClientCert)
	require.Equal(t, int64(7), s.MaxClients)
	require.Equal(t, int64(500), s.HeartbeatIntervalMin)
	require.False(t, s.DPDEnabled)
	require.True(t, s.KAPTieBreaker)
	require.Len(t, s.Warnings, 1, "dpd_interval is deprecated")
	cfg, err := s.ServerConfig(NewLogger(&bytes.Buffer{}, "console", false))
	require.NoError(t, err)
	require.Equal(t, "tcp4", cfg.Network)
	require.Equal(t, wire.TLSRequired, cfg.Engine.TLS)
	require.Equal(t, uint32(500), cfg.Engine.HeartbeatMin)
}

func TestConnectionLimitSettings(t *testing.T) {
	log := NewLogger(&bytes.Buffer{}, "console", false)
	s, _, err := Parse(nil, nil)
	require.NoError(t, err)
	cfg, err := s.ServerConfig(log)
	require.NoError(t, err)
	d := server.DefaultConfig()
	require.Equal(t, []any{d.InitTimeout, d.MaxNewcomers, d.MaxNewcomersPerSource, d.FDReserve},
		[]any{cfg.InitTimeout, cfg.MaxNewcomers, cfg.MaxNewcomersPerSource, cfg.FDReserve}, "the same defaults as the server's")

	s, _, err = Parse([]string{"-S", "init_timeout=5000,max_clients_before_init=100,max_clients_before_init_per_address=4,fd_reserve=64"},
		map[string]string{"QNETD_INIT_TIMEOUT": "1"})
	require.NoError(t, err)
	cfg, err = s.ServerConfig(log)
	require.NoError(t, err)
	require.Equal(t, []any{5 * time.Second, 100, 4, 64},
		[]any{cfg.InitTimeout, cfg.MaxNewcomers, cfg.MaxNewcomersPerSource, cfg.FDReserve})

	s, _, err = Parse([]string{"-S", "init_timeout=0,max_clients_before_init=0,max_clients_before_init_per_address=0,fd_reserve=0"}, nil)
	require.NoError(t, err)
	cfg, err = s.ServerConfig(log)
	require.NoError(t, err)
	require.Equal(t, []any{time.Duration(0), 0, 0, 0},
		[]any{cfg.InitTimeout, cfg.MaxNewcomers, cfg.MaxNewcomersPerSource, cfg.FDReserve}, "0 turns each off")

	for _, bad := range []string{"init_timeout=-1", "init_timeout=4294967296", "max_clients_before_init=x",
		"max_clients_before_init_per_address=-2", "fd_reserve=2147483648"} {
		_, _, err := Parse([]string{"-S", bad}, nil)
		name, value, _ := strings.Cut(bad, "=")
		require.ErrorContains(t, err, fmt.Sprintf("Invalid value '%s' for option '%s'", value, name))
	}
}

func TestRequiredIsAcceptedForReq(t *testing.T) {
	s, _, err := Parse([]string{"-s", "required"}, nil)
	require.NoError(t, err)
	require.Equal(t, "req", s.TLS)
}

func TestBadInputNamesOptionAndValue(t *testing.T) {
	for args, want := range map[string][]string{
		"tls must be one of on, off, req (got \"maybe\")":                    {"-s", "maybe"},
		"listen port \"65536\" is invalid: want 1..65535 (0: any free port)": {"-p", "65536"},
		"Unknown option 'foo'": {"-S", "foo=1"},
		"Invalid value '0' for option 'heartbeat_interval_min' (expected 1..4294967295 (ms))":           {"-S", "heartbeat_interval_min=0"},
		"Invalid value '1.5x' for option 'dpd_interval_coefficient' (expected a number from 1 to 1000)": {"-S", "dpd_interval_coefficient=1.5x"},
		"client_cert_required should be on or off (got \"perhaps\")":                                    {"-c", "perhaps"},
	} {
		_, _, err := Parse(want, nil)
		require.EqualError(t, err, args)
	}
}

func TestEnvironmentAndOptionsVariable(t *testing.T) {
	s, _, err := Parse([]string{"-p", "6000"}, map[string]string{
		"QNETD_PORT": "5999", "QNETD_TLS": "off", "COROSYNC_QNETD_OPTIONS": "-m 3 -p 5998",
	})
	require.NoError(t, err)
	require.Equal(t, 6000, s.Port, "the command line wins over COROSYNC_QNETD_OPTIONS and the environment")
	require.Equal(t, int64(3), s.MaxClients)
	require.Equal(t, "off", s.TLS)
	_, _, err = Parse(nil, map[string]string{"QNETD_PORT": "x"})
	require.EqualError(t, err, `environment variable QNETD_PORT="x": want int`)
}

func TestReceiveSizeBelowClientMinimumIsRefused(t *testing.T) {
	s, _, err := Parse([]string{"-S", "max_client_receive_size=1024"}, nil)
	require.NoError(t, err)
	_, err = s.ServerConfig(NewLogger(&bytes.Buffer{}, "console", false))
	require.ErrorContains(t, err, "max_client_receive_size=1024 is below 32768")
}

func TestVersionAndHelpExit1(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 1, Main([]string{"-v"}, nil, &out, &out))
	require.Contains(t, out.String(), "Supported algorithms: Test (0), Fifty-Fifty split (1), 2 Node LMS (2), LMS (3)")
	out.Reset()
	require.Equal(t, 1, Main([]string{"-h"}, nil, &out, &out))
	require.Contains(t, out.String(), "usage: corosync-qnetd")
}

var startedAddr = regexp.MustCompile(`corosync-qnetd started .*\baddr=(\S+)`)

// TestSIGTERMClosesClientsAndExits0 runs the daemon in-process, connects a
// client and sends the process SIGTERM (which Main takes over).
func TestSIGTERMClosesClientsAndExits0(t *testing.T) {
	dir := t.TempDir()
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		code := Main([]string{"-f", "-s", "off", "-l", "127.0.0.1", "-p", "0",
			"-S", "lock_file=" + filepath.Join(dir, "pid") + ",local_socket_file=" + filepath.Join(dir, "sock")}, nil, io.Discard, pw)
		pw.Close()
		exit <- code
	}()
	// The port is read back from the start line, so none is guessed.
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := startedAddr.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	var addr string
	select {
	case addr = <-ready:
	case code := <-exit:
		t.Fatalf("exited with %d", code)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not start")
	}
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	n := client.NewNode(client.Settings{Cluster: "c"})
	_, err = c.Write(n.Preinit().Append(nil))
	require.NoError(t, err)
	m, _, err := client.ReadMsg(c)
	require.NoError(t, err)
	require.Equal(t, wire.MsgPreinitReply, m.Type)

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case code := <-exit:
		require.Equal(t, 0, code)
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = client.ReadMsg(c)
	require.ErrorIs(t, err, io.EOF, "the client's connection is closed")
}
