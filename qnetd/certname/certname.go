// Package certname holds the rules for the names in qnetd's certificates:
// which cluster names the signer accepts, which names are reserved for the
// CA and the server, and how names compare. The signer (internal/pki) and
// the TLS-time check of client certificates (qnetd/engine) share it, so a
// name that one refuses the other refuses too.
package certname

import (
	"fmt"
	"strings"
)

// The subjects of the CA and server certificates, as upstream's
// corosync-qnetd-certutil creates them (docs/qnetd-protocol.md §6). The
// nodes' corosync-qdevice accepts any certificate of the CA that names
// "Qnetd Server" as the server, so no client certificate may carry it.
const (
	CA     = "QNet CA"
	Server = "Qnetd Server"
)

// MaxLen is the longest cluster name that can be signed: the certificate
// is stored as cluster-NAME.crt, and a file name has at most 255 bytes.
const MaxLen = 255 - len("cluster-.crt")

// Reserved returns the reserved name that name equals, ignoring case as the
// TLS host name check does, and whether it does.
func Reserved(name string) (string, bool) {
	for _, r := range []string{Server, CA} {
		if strings.EqualFold(name, r) {
			return r, true
		}
	}
	return "", false
}

// Wildcard reports whether name is a host name pattern: the TLS host name
// check would let it match other names.
func Wildcard(name string) bool { return strings.ContainsRune(name, '*') }

// Key is the form in which names are compared: the TLS check ignores case,
// so "PVE" and "pve" are one cluster.
func Key(name string) string { return strings.ToLower(name) }

// useOwnName ends every refusal: what to give instead.
const useOwnName = "give the cluster's own name (totem.cluster_name in corosync.conf)"

// Check accepts the cluster names a client certificate may be signed for:
// 1 to MaxLen bytes of ASCII letters, digits, '.', '_' and '-', and not a
// reserved name.
func Check(name string) error {
	if r, ok := Reserved(name); ok {
		role := "server"
		if r == CA {
			role = "certificate authority"
		}
		return fmt.Errorf("cluster name %q is reserved: %q is the name of this qnetd's %s certificate, "+
			"and a cluster certificate with that name could pose as it; %s", name, r, role, useOwnName)
	}
	switch {
	case name == "":
		return fmt.Errorf("cluster name is empty; %s", useOwnName)
	case len(name) > MaxLen:
		return fmt.Errorf("cluster name of %d bytes is longer than %d (its certificate file cluster-NAME.crt must fit in 255 bytes); %s",
			len(name), MaxLen, useOwnName)
	case Wildcard(name):
		return fmt.Errorf("cluster name %q is a wildcard: a certificate for it would match other clusters' names; %s", name, useOwnName)
	}
	for i, r := range name {
		if !nameRune(r) {
			return fmt.Errorf("cluster name %q has %q at byte %d: a cluster name may only have letters, digits, '.', '_' and '-'; %s",
				name, r, i+1, useOwnName)
		}
	}
	return nil
}

func nameRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-'
}
