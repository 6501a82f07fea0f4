package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// lockPIDFile takes upstream's lock: an fcntl write lock on the pid file,
// holding "<pid>\n". A second instance fails with a clear message.
func lockPIDFile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o770); err != nil {
		return nil, fmt.Errorf("create directory for lock_file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock_file: %w", err)
	}
	// An open-file-description lock: it conflicts with upstream's fcntl
	// lock on the same file, and unlike a classic fcntl lock it is not
	// dropped when some other descriptor of the file is closed.
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("another instance is running (lock held on lock_file %s)", path)
		}
		return nil, fmt.Errorf("lock lock_file %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncate lock_file %s: %w", path, err)
	}
	if _, err := f.WriteString(strconv.Itoa(os.Getpid()) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("write lock_file %s: %w", path, err)
	}
	// Not removed at exit, as upstream; the lock goes away with the process.
	return func() { f.Close() }, nil
}

// raiseFDLimit lifts the soft open-file limit to the hard one: every client
// is a descriptor, and upstream stays at 1024 (about 1016 clients).
func raiseFDLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// LookupUser returns the uid and gid of name, or ok=false.
func LookupUser(name string) (uid, gid int, ok bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, false
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	return uid, gid, err1 == nil && err2 == nil
}

// dropPrivileges switches to the unprivileged user once every port is
// bound: binding below 1024 (the pairing port 22) is the only thing root
// was needed for, so no capability is kept at all. The files in handOver,
// made as root, become the user's first: the local socket, which the
// pairing endpoint's corosync-qnetd-tool connects to as that user (as
// upstream's daemon, which runs as its user, owns its socket).
func dropPrivileges(name string, log zerolog.Logger, handOver ...string) error {
	if name == "" || os.Geteuid() != 0 {
		return nil
	}
	uid, gid, ok := LookupUser(name)
	if !ok {
		log.Warn().Str("user", name).Msg("user not found, running as root")
		return nil
	}
	for _, p := range handOver {
		if p == "" {
			continue
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("hand %s to user %s: %w", p, name, err)
		}
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	log.Info().Str("user", name).Int("uid", uid).Msg("running unprivileged")
	return nil
}
