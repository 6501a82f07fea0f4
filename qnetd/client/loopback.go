package client

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// Linux delivers all of 127.0.0.0/8 on the loopback interface, so a
// client on the same machine can connect from many addresses, as nodes on
// many hosts do. qnetd limits the connections one address may hold before
// INIT; tests and benchmarks that connect thousands of simulated nodes
// spread them over 127.1.0.1 and up (127.0.0.0/16, with 127.0.0.1, is
// left to everything else).

// loopbackSpan is how many addresses there are from 127.1.0.1 on, with
// host parts ending in .0 and .255 left out.
const loopbackSpan = 254 * 256 * 254

var nextLoopback atomic.Int64

// Loopback reserves n loopback addresses no other caller in this process
// gets (until 16 million have been handed out) and returns the i-th of
// them (0 <= i < n) for a local address, e.g. Dialer.LocalAddr.
func Loopback(n int) func(i int) *net.TCPAddr {
	base := nextLoopback.Add(int64(n)) - int64(n)
	return func(i int) *net.TCPAddr {
		return &net.TCPAddr{IP: loopbackAt(base + int64(i%max(n, 1)))}
	}
}

func loopbackAt(k int64) net.IP {
	k %= loopbackSpan
	return net.IPv4(127, byte(1+k/(256*254)), byte(k/254%256), byte(1+k%254))
}

// OnLoopback reports whether addr ("host:port") is an IPv4 loopback
// address, where Loopback addresses can reach it.
func OnLoopback(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	a := ap.Addr().Unmap()
	return err == nil && a.Is4() && a.IsLoopback()
}
