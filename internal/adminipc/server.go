package adminipc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// DefaultSocketPath is upstream's local_socket_file default.
const DefaultSocketPath = "/var/run/corosync-qnetd/corosync-qnetd.sock"

// sunPathMax is sizeof(sockaddr_un.sun_path) on Linux.
const sunPathMax = 108

// Config configures the IPC server; the names follow upstream's advanced
// settings.
type Config struct {
	// Path is local_socket_file.
	Path string
	// Umask is local_socket_umask: octal, applied while binding; "" leaves
	// the process umask alone.
	Umask string
	// GID is local_socket_gid: a group name or number; "" or "-1" leaves
	// the socket's group alone.
	GID string
	// Backlog is local_socket_backlog (default 10).
	Backlog int
	// MaxClients is ipc_max_clients: further connections are closed at
	// once (0 = unlimited).
	MaxClients int64
	// MaxReceiveSize is ipc_max_receive_size: a longer request line closes
	// the connection without a reply (default 4096).
	MaxReceiveSize int64
	// MaxSendSize is ipc_max_send_size: the largest reply (default 10 MiB).
	MaxSendSize int64

	// Info describes the daemon for the status output.
	Info ServerInfo
	// Status reads the engine's state (server.Server.Status).
	Status func(context.Context) (*engine.Status, error)
	// Shutdown is called once, after the reply to "shutdown" was sent.
	Shutdown func()
	// Timeout bounds the engine call and each connection's I/O
	// (default 10 s; upstream waits forever for a silent IPC client).
	Timeout time.Duration
	Log     zerolog.Logger
}

// Server is a running IPC listener.
type Server struct {
	cfg    Config
	ln     *net.UnixListener
	active atomic.Int64

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
	shutOnce sync.Once
}

// Listen creates the socket as upstream's unix_socket_server_create: the
// path must be 1..107 bytes; an existing file is unlinked; the umask is
// set around bind; the socket is chowned to GID; listen(Backlog).
func Listen(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Status == nil {
		return nil, errors.New("adminipc: no engine status configured")
	}
	path := cfg.Path
	if len(path) == 0 || len(path) >= sunPathMax {
		return nil, fmt.Errorf("create unix socket %q: %w", path, syscall.ENAMETOOLONG)
	}
	mask, err := parseUmask(cfg.Umask)
	if err != nil {
		return nil, err
	}
	gid, err := lookupGID(cfg.GID)
	if err != nil {
		return nil, err
	}
	fd, err := bindUnix(path, mask, gid, cfg.Backlog)
	if err != nil {
		return nil, err
	}
	ul, err := unixListener(fd, path)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, ln: ul, conns: map[net.Conn]struct{}{}}, nil
}

// withDefaults fills in upstream's defaults for the limits not set.
func (cfg Config) withDefaults() Config {
	if cfg.Backlog <= 0 {
		cfg.Backlog = 10
	}
	if cfg.MaxReceiveSize <= 0 {
		cfg.MaxReceiveSize = 4096
	}
	if cfg.MaxSendSize <= 0 {
		cfg.MaxSendSize = 10 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return cfg
}

// parseUmask reads local_socket_umask (octal); -1 when it is not set.
func parseUmask(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	x, err := strconv.ParseUint(s, 8, 32)
	if err != nil || x > 0o777 {
		return 0, fmt.Errorf("local_socket_umask %q: want an octal number from 0 to 0777", s)
	}
	return int(x), nil
}

// bindUnix creates, binds (with umask mask unless it is -1), chowns (to
// gid unless it is -1) and listens on the socket at path, replacing a
// file there.
func bindUnix(path string, mask, gid, backlog int) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("create unix socket: %w", err)
	}
	_ = os.Remove(path)
	var old int
	if mask != -1 {
		old = unix.Umask(mask)
	}
	bindErr := unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	if mask != -1 {
		unix.Umask(old)
	}
	if bindErr != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind unix socket %s: %w", path, bindErr)
	}
	if gid != -1 {
		if err := os.Lchown(path, -1, gid); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("change group of %s to %d: %w", path, gid, err)
		}
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen on unix socket %s: %w", path, err)
	}
	return fd, nil
}

// unixListener wraps the listening socket fd in a net.UnixListener whose
// Close unlinks path, as upstream does.
func unixListener(fd int, path string) (*net.UnixListener, error) {
	f := os.NewFile(uintptr(fd), path)
	fl, err := net.FileListener(f)
	f.Close()
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("unix socket %s: %w", path, err)
	}
	ul, ok := fl.(*net.UnixListener)
	if !ok {
		fl.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("unix socket %s: unexpected listener %T", path, fl)
	}
	ul.SetUnlinkOnClose(false) // Close unlinks, as upstream
	return ul, nil
}

// lookupGID resolves local_socket_gid as upstream's utils_get_group_gid:
// "" and "-1" mean -1 (leave alone); a number from -1 to UINT_MAX is used
// as is; anything else is a group name.
func lookupGID(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	if x, err := strconv.ParseInt(s, 10, 64); err == nil && x >= -1 && x <= 1<<32-1 {
		if x == 1<<32-1 {
			return -1, nil // (gid_t)-1
		}
		return int(x), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("local_socket_gid %q: %w", s, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("local_socket_gid %q: group id %q", s, g.Gid)
	}
	return gid, nil
}

// Serve accepts IPC connections until Close; one goroutine per connection.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.cfg.Log.Error().Err(err).Msg("cannot accept local IPC connection")
			time.Sleep(10 * time.Millisecond) // e.g. out of descriptors: do not spin
			continue
		}
		if max := s.cfg.MaxClients; max != 0 && s.active.Load() >= max {
			s.cfg.Log.Warn().Int64("ipc_max_clients", max).Msg("maximum IPC clients reached, connection closed")
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.active.Add(1)
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// Close stops listening, removes the socket file, closes the open IPC
// connections and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	if rmErr := os.Remove(s.cfg.Path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
		err = rmErr
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) handle(c net.Conn) {
	var once sync.Once
	release := func() {
		once.Do(func() {
			// free the slot before the client can see the close
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			s.active.Add(-1)
			c.Close()
		})
	}
	defer s.wg.Done()
	defer release()
	_ = c.SetDeadline(time.Now().Add(s.cfg.Timeout))
	line, ok := readLine(c, s.cfg.MaxReceiveSize)
	if !ok {
		s.cfg.Log.Debug().Msg("IPC client closed the connection or sent too much; disconnected")
		return
	}
	reply, shutdown := s.Execute(line)
	if reply == nil {
		return
	}
	if _, err := c.Write(reply); err != nil {
		s.cfg.Log.Debug().Err(err).Msg("cannot send IPC reply")
		return
	}
	if shutdown {
		release()
		s.cfg.Log.Info().Msg("shutdown requested over local IPC")
		s.shutOnce.Do(func() {
			if s.cfg.Shutdown != nil {
				s.cfg.Shutdown()
			}
		})
	}
}

// readLine reads up to and including the first '\n'. More than max bytes
// before it, EOF or an error: false (upstream closes without a reply).
func readLine(r io.Reader, max int64) ([]byte, bool) {
	var buf []byte
	chunk := make([]byte, 256)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			if i := bytes.IndexByte(chunk[:n], '\n'); i >= 0 {
				buf = append(buf, chunk[:i+1]...)
				return buf, int64(len(buf)) <= max
			}
			buf = append(buf, chunk[:n]...)
			if int64(len(buf)) > max {
				return nil, false
			}
		}
		if err != nil {
			return nil, false
		}
	}
}

// Execute answers one request line. It returns the reply bytes (nil =
// close without a reply) and whether the daemon must shut down once the
// reply was sent.
func (s *Server) Execute(line []byte) ([]byte, bool) {
	lexMax := int(min(s.cfg.MaxReceiveSize, 1<<30))
	cmd := ParseCommand(line, lexMax)
	switch cmd.Op {
	case OpNone:
		s.cfg.Log.Debug().Msg("IPC client sent no command")
		return s.errorReply("No command specified"), false
	case OpTooLong:
		return s.errorReply("Command too long"), false
	case OpUnknown:
		s.cfg.Log.Debug().Str("command", cmd.Word).Msg("IPC client sent an unknown command")
		return s.errorReply("Unknown command '" + cmd.Word + "'"), false
	case OpShutdown:
		s.cfg.Log.Debug().Msg("IPC client requested shutdown")
		return []byte("OK\n"), true
	}
	what := "status"
	if cmd.Op == OpList {
		what = "cluster list"
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	snap, err := s.cfg.Status(ctx)
	if err != nil {
		s.cfg.Log.Error().Err(err).Msg("cannot read the server state for local IPC")
		return s.errorReply("Can't get QNetd " + what), false
	}
	var body string
	if cmd.Op == OpStatus {
		body = RenderStatus(snap, s.cfg.Info, cmd.Verbose)
	} else {
		body = RenderList(snap, s.cfg.Info, cmd.Verbose, cmd.Cluster)
	}
	return s.okReply(body, what), false
}

// okReply applies upstream's buffer arithmetic: every formatted piece
// needs room for its terminating NUL, so a body of ipc_max_send_size bytes
// or more fails ("Can't get ..."), and "OK\n" must fit in front of it.
func (s *Server) okReply(body, what string) []byte {
	max := s.cfg.MaxSendSize
	if int64(len(body))+1 > max {
		s.cfg.Log.Error().Int("size", len(body)).Int64("ipc_max_send_size", max).Msg("IPC reply too large")
		return s.errorReply("Can't get QNetd " + what)
	}
	if int64(len(body))+3 > max {
		s.cfg.Log.Error().Int("size", len(body)).Int64("ipc_max_send_size", max).Msg("IPC reply too large")
		return s.errorReply("Internal IPC buffer too small")
	}
	return append([]byte("OK\n"), body...)
}

// errorReply is "Error\n<msg>\n", or nil (close) when it does not fit.
func (s *Server) errorReply(msg string) []byte {
	if int64(6+len(msg))+1 > s.cfg.MaxSendSize || msg == "" {
		s.cfg.Log.Error().Msg("cannot send IPC error to client (buffer too small)")
		return nil
	}
	return []byte("Error\n" + msg + "\n")
}
