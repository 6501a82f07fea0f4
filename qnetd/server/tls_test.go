package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type tlsEnv struct {
	ca  *pki.Authority
	srv *server.Server
	log *syncBuffer
}

func startTLS(t *testing.T, mode wire.TLSSupported, certRequired bool) *tlsEnv {
	t.Helper()
	ca, err := pki.Init(t.TempDir(), time.Now())
	require.NoError(t, err)
	logs := &syncBuffer{}
	srv := start(t, func(c *server.Config) {
		c.Engine.TLS = mode
		c.Engine.ClientCertRequired = certRequired
		c.TLS = ca.TLSConfig(certRequired)
		c.Log = zerolog.New(logs)
	})
	return &tlsEnv{ca: ca, srv: srv, log: logs}
}

// clientCert makes a node certificate for cluster, signed by ca (nil = a
// foreign CA), valid from notBefore for a year.
func clientCert(t *testing.T, ca *pki.Authority, cluster string, notBefore time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	if ca == nil {
		ca, err = pki.Init(t.TempDir(), time.Now())
		require.NoError(t, err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(999), Subject: pkix.Name{CommonName: cluster},
		NotBefore: notBefore, NotAfter: notBefore.AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.CA, key.Public(), ca.CAKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// clientTLS is what corosync-qdevice checks: the chain to the QNet CA and
// the server name "Qnetd Server".
func clientTLS(ca *pki.Authority, certs ...tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.CA)
	return &tls.Config{RootCAs: pool, ServerName: "Qnetd Server", Certificates: certs,
		// Go refuses names in the CN; check the CN as NSS does.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool()}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return err
			}
			if cn := cs.PeerCertificates[0].Subject.CommonName; cn != "Qnetd Server" {
				return &net.AddrError{Err: "server certificate is for " + cn}
			}
			return nil
		}}
}

func tlsNode(cluster string) *client.Node {
	return client.NewNode(client.Settings{Cluster: cluster, NodeID: 1, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
}

func dialNode(t *testing.T, env *tlsEnv, cluster string) *client.Conn {
	t.Helper()
	c, err := client.Dial(env.srv.Addr().String(), tlsNode(cluster), 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func TestTLSClientWithRightCertificate(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		env := startTLS(t, wire.TLSSupportedOn, true)
		c := dialNode(t, env, "pve")
		require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, clientTLS(env.ca, clientCert(t, env.ca, "pve", time.Now().Add(-time.Hour)))))
		var st engineState
		st.read(t, env.srv)
		require.Equal(t, []string{"pve/1 tls verified"}, st.clients)
	})
}

func TestTLSCertificateForAnotherClusterIsRefused(t *testing.T) {
	env := startTLS(t, wire.TLSSupportedOn, true)
	c := dialNode(t, env, "pve")
	err := c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, clientTLS(env.ca, clientCert(t, env.ca, "other", time.Now().Add(-time.Hour))))
	require.Error(t, err, "upstream drops the connection at INIT, without a reply")
	require.NotContains(t, err.Error(), "tls handshake")
	require.Eventually(t, func() bool {
		return strings.Contains(env.log.String(), `"reason":"certificate is for 'other', not for cluster 'pve'"`)
	}, 5*time.Second, 5*time.Millisecond, env.log.String())
}

func TestTLSForeignCAIsRefused(t *testing.T) {
	env := startTLS(t, wire.TLSSupportedOn, true)
	c := dialNode(t, env, "pve")
	err := c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, clientTLS(env.ca, clientCert(t, nil, "pve", time.Now().Add(-time.Hour))))
	require.Error(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(env.log.String(), `"cluster":"pve","reason":"client certificate is not signed by this qnetd's CA`)
	}, 5*time.Second, 5*time.Millisecond, env.log.String())
}

func TestTLSExpiredAndNotYetValidAreRefused(t *testing.T) {
	env := startTLS(t, wire.TLSSupportedOn, true)
	for _, nb := range []time.Time{time.Now().AddDate(-2, 0, 0), time.Now().Add(24 * time.Hour)} {
		c := dialNode(t, env, "pve")
		err := c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, clientTLS(env.ca, clientCert(t, env.ca, "pve", nb)))
		require.Error(t, err)
	}
	require.Eventually(t, func() bool {
		return strings.Count(env.log.String(), `"cluster":"pve","reason":"client certificate has expired or is not yet valid (check the clocks of the node and this host)"`) == 2
	}, 5*time.Second, 5*time.Millisecond, env.log.String())
}

func TestTLSWithoutClientCertificateWhenNotRequired(t *testing.T) {
	env := startTLS(t, wire.TLSSupportedOn, false)
	c := dialNode(t, env, "pve")
	require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, clientTLS(env.ca)))
}

func TestTLSClientWithoutCertificateWhenRequired(t *testing.T) {
	env := startTLS(t, wire.TLSSupportedOn, true)
	c := dialNode(t, env, "pve")
	require.Error(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, clientTLS(env.ca)))
}

func TestPlainClientServedOnlyInModeOn(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		env := startTLS(t, wire.TLSSupportedOn, true)
		c := dialNode(t, env, "pve")
		require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil), "mode on serves a client that skips STARTTLS")

		env = startTLS(t, wire.TLSRequired, true)
		c = dialNode(t, env, "pve")
		err := c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil)
		require.ErrorIs(t, err, client.ErrRefused)
		require.Contains(t, err.Error(), "error=3")
	})
}

// pipeliningConn holds back the STARTTLS message and sends it together
// with the ClientHello in one write, so the server's framing reader has
// the first TLS bytes buffered when it switches.
type pipeliningConn struct {
	net.Conn
	held []byte
}

func (p *pipeliningConn) Write(b []byte) (int, error) {
	if len(b) >= wire.HeaderSize && b[1] == byte(wire.MsgStartTLS) && p.held == nil {
		p.held = append([]byte(nil), b...)
		return len(b), nil
	}
	if p.held != nil {
		all := append(p.held, b...)
		p.held = []byte{}
		if _, err := p.Conn.Write(all); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return p.Conn.Write(b)
}

func TestStartTLSWithPipelinedClientHello(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		env := startTLS(t, wire.TLSSupportedOn, true)
		nc, err := net.Dial("tcp", env.srv.Addr().String())
		require.NoError(t, err)
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		n := tlsNode("pve")
		_, err = nc.Write(n.Preinit().Append(nil))
		require.NoError(t, err)
		m, _, err := client.ReadMsg(nc)
		require.NoError(t, err)
		require.Equal(t, wire.MsgPreinitReply, m.Type)
		pc := &pipeliningConn{Conn: nc}
		_, err = pc.Write(n.StartTLS().Append(nil))
		require.NoError(t, err)
		tc := tls.Client(pc, clientTLS(env.ca, clientCert(t, env.ca, "pve", time.Now().Add(-time.Hour))))
		require.NoError(t, tc.Handshake())
		_, err = tc.Write(n.Init(wire.RingID{NodeID: 1, Seq: 4}).Append(nil))
		require.NoError(t, err)
		m, _, err = client.ReadMsg(tc)
		require.NoError(t, err)
		require.Equal(t, wire.MsgInitReply, m.Type)
		require.Equal(t, wire.ErrNoError, m.ReplyErrorCode)
	})
}

// engineState is a snapshot of the engine's clients, read through Status.
type engineState struct{ clients []string }

func (s *engineState) read(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := srv.Status(ctx)
	require.NoError(t, err)
	for _, cl := range st.Clusters {
		for _, c := range cl.Nodes {
			state := "tls off"
			if c.TLSActive {
				state = "tls unverified"
			}
			if c.CertVerified {
				state = "tls verified"
			}
			s.clients = append(s.clients, fmt.Sprintf("%s/%d %s", cl.Name, c.NodeID, state))
		}
	}
}
