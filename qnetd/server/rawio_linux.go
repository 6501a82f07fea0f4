package server

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The poller's sockets are non-blocking, so reading, writing and asking
// epoll what is ready never wait. These calls therefore skip the Go
// scheduler's system-call bookkeeping (RawSyscall): on a mostly idle
// server that bookkeeping wakes the runtime's monitor thread for each
// call, and in a CPU profile of the bench's splits workload those
// wake-ups (a futex wake, the monitor's short sleeps, the thread
// switches) cost more than the reads and writes themselves. Only calls
// that cannot block belong here.

// sockRead reads what a non-blocking socket holds.
func sockRead(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sockWrite writes what a non-blocking socket takes at once.
func sockWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// epollReady asks which watched sockets are ready, without waiting
// (timeout 0); Go's netpoller does the waiting on the epoll descriptor.
func epollReady(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
