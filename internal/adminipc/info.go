package adminipc

import (
	"net"
	"strings"
)

// ServerInfo is what the status output needs besides the engine's status:
// the daemon's command line as given.
type ServerInfo struct {
	// Host is the -l value; "" (not given) prints as "*".
	Host string
	Port int
	// ListenAddr is the bound TCP address, optional. When it is an IPv6
	// socket (dual stack), IPv4 clients are shown as ::ffff:a.b.c.d, as
	// upstream's NSPR socket reports them.
	ListenAddr net.Addr
	// MaxClients is -m (0 = unlimited, not shown).
	MaxClients int64
	// MaxClientSendSize and MaxClientReceiveSize are the advanced settings
	// as given; 0 means take the engine's.
	MaxClientSendSize    int64
	MaxClientReceiveSize int64
}

// dualStack reports whether a listener bound to addr is an IPv6 socket, on
// which IPv4 peers arrive as v4-mapped addresses.
func dualStack(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP != nil && ta.IP.To4() == nil
}

// upstreamAddr formats "host:port" (Go's form, [v6]:port) as upstream's
// PR_NetAddrToString + ":port": no brackets, IPv4 on a dual-stack socket
// as ::ffff:a.b.c.d, no zone.
func upstreamAddr(addr string, mapped bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	if ip := net.ParseIP(host); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			if mapped || strings.Contains(host, ":") {
				host = "::ffff:" + v4.String()
			} else {
				host = v4.String()
			}
		} else {
			host = ip.String()
		}
	}
	return host + ":" + port
}
