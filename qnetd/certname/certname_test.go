package certname

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheck: the boundaries of a signable name. The longest one still
// names a file (cluster-NAME.crt, 255 bytes).
func TestCheck(t *testing.T) {
	require.Equal(t, 255, len("cluster-"+strings.Repeat("a", MaxLen)+".crt"))
	for _, ok := range []string{"a", "pve", "PVE-1", "ha_cl.example.com", strings.Repeat("z", MaxLen)} {
		require.NoError(t, Check(ok), ok)
	}
	for _, bad := range []string{"", strings.Repeat("z", MaxLen+1), "a*", "a b", "a/b", "ä", "Qnetd Server", "qnet ca"} {
		require.Error(t, Check(bad), bad)
	}
}

// TestReservedAndKey: reserved names compare ignoring case, as the TLS host
// name check does, and return the canonical spelling.
func TestReservedAndKey(t *testing.T) {
	r, ok := Reserved("QNETD server")
	require.True(t, ok)
	require.Equal(t, Server, r)
	r, ok = Reserved("qnet ca")
	require.True(t, ok)
	require.Equal(t, CA, r)
	_, ok = Reserved("Qnetd Server2")
	require.False(t, ok)
	require.Equal(t, Key("PVE"), Key("pve"))
	require.True(t, Wildcard("*.lan"))
	require.False(t, Wildcard("x.lan"))
}

// FuzzCheck: a name from a pairing client's request or a client
// certificate. Whatever is accepted is plain: no reserved name, no
// wildcard, only letters, digits, '.', '_' and '-', at most MaxLen bytes.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"pve", "Qnetd Server", "*.lan", "a.b_c-d", "", "QNET CA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if Check(name) != nil {
			return
		}
		if _, reserved := Reserved(name); reserved || Wildcard(name) || name == "" || len(name) > MaxLen {
			t.Fatalf("%q accepted", name)
		}
		for _, r := range name {
			if !nameRune(r) {
				t.Fatalf("%q accepted with %q", name, r)
			}
		}
	})
}
