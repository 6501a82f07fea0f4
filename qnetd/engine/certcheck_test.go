package engine_test

import (
	"bytes"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// tlsClient connects a client that sends PREINIT for cluster, starts TLS
// with cert, then sends ECHO_REQUEST (a message behind the TLS gate). It
// returns whether the engine disconnected it and whether it answered the
// echo.
func tlsClient(t *testing.T, e *engine.Engine, id engine.ClientID, cluster string, cert *engine.PeerCert) (dropped, answered bool) {
	t.Helper()
	e.Connect(0, id, "192.0.2.1:5000")
	pre := (&wire.Msg{Type: wire.MsgPreinit, ClusterName: []byte(cluster)}).Set(wire.OptClusterName)
	e.Message(0, id, pre, nil)
	b := e.Message(0, id, &wire.Msg{Type: wire.MsgStartTLS}, nil)
	require.True(t, b.StartTLS)
	require.Empty(t, b.Sends)
	require.Empty(t, b.Disconnects)
	e.TLSStarted(0, id, cert)
	echo := &wire.Msg{Type: wire.MsgEchoRequest}
	b = e.Message(0, id, echo, echo.Append(nil))
	for _, d := range b.Disconnects {
		dropped = dropped || d.Client == id
	}
	for _, s := range b.Sends {
		answered = answered || s.To == id
	}
	return dropped, answered
}

// TestClientCertNames: the TLS-time check accepts the certificate of the
// cluster's own name (any case) and refuses, whatever the cluster,
// certificates that name a wildcard or a name reserved for the server or
// the CA, even though the CA signed them (an earlier version did). The
// reason in the log names the certificate's name and the fix.
func TestClientCertNames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster string
		cert    engine.PeerCert
		refused string // "" = accepted
	}{
		{"own name", "pve1", engine.PeerCert{CommonName: "pve1"}, ""},
		{"own name, other case", "PVE1", engine.PeerCert{CommonName: "pve1"}, ""},
		{"own name in subjectAltName", "pve1", engine.PeerCert{CommonName: "x", DNSNames: []string{"pve1"}, HasSAN: true}, ""},
		{"other cluster", "pve2", engine.PeerCert{CommonName: "pve1"}, "certificate is for 'pve1', not for cluster 'pve2'"},
		{"wildcard CN", "x.lan", engine.PeerCert{CommonName: "*.lan"},
			"certificate names the wildcard '*.lan', which qnetd does not accept from clients; pair cluster 'x.lan' again to get a certificate for its own name"},
		{"wildcard in subjectAltName", "x.lan", engine.PeerCert{CommonName: "x.lan", DNSNames: []string{"*.lan"}, HasSAN: true},
			"certificate names the wildcard '*.lan' (subjectAltName)"},
		{"wildcard next to the own name", "x.lan", engine.PeerCert{DNSNames: []string{"x.lan", "*.lan"}, HasSAN: true},
			"the wildcard '*.lan'"},
		{"server name", "Qnetd Server", engine.PeerCert{CommonName: "Qnetd Server"},
			"certificate names 'Qnetd Server', a name reserved for this qnetd's 'Qnetd Server' certificate; pair cluster 'Qnetd Server' again"},
		{"server name, other case", "qnetd server", engine.PeerCert{CommonName: "QNETD SERVER"},
			"certificate names 'QNETD SERVER', a name reserved for this qnetd's 'Qnetd Server' certificate"},
		{"CA name", "qnet ca", engine.PeerCert{CommonName: "qnet ca"}, "a name reserved for this qnetd's 'QNet CA' certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			e := engine.New(engine.DefaultConfig(), zerolog.New(&logs))
			cert := tc.cert
			dropped, answered := tlsClient(t, e, 1, tc.cluster, &cert)
			if tc.refused == "" {
				require.False(t, dropped, "log: %s", logs.String())
				require.True(t, answered, "the echo passed the TLS gate")
				require.Zero(t, e.Status().Stats.CertRejected)
				return
			}
			require.True(t, dropped)
			require.False(t, answered)
			require.Equal(t, uint64(1), e.Status().Stats.CertRejected)
			require.Contains(t, logs.String(), `"message":"client certificate refused"`)
			require.Contains(t, logs.String(), tc.refused)
		})
	}
}
