package addon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/daemon"
	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// startAddon runs the add-on's own translation of o on listeners bound
// here, after its init step; mutate (optional) adjusts the paths first.
// stop ends it and returns how it ended; it also runs when the test ends.
func startAddon(t *testing.T, o Options, mutate func(*Paths)) (p Paths, d *daemon.Daemon, stop func() error) {
	t.Helper()
	dir := t.TempDir()
	p = Paths{Options: filepath.Join(dir, "options.json"), Data: dir, Config: dir, RunDir: filepath.Join(dir, "run")}
	if mutate != nil {
		mutate(&p)
	}
	log := zerolog.Nop()
	require.NoError(t, Init(p, o, log))
	cfg := DaemonConfig(p, o, log)
	cfg.Listener, cfg.Web.Listener = listen(t), listen(t)
	d, err := daemon.Start(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Wait(ctx) }()
	var once sync.Once
	var waitErr error
	stop = func() error {
		once.Do(func() { cancel(); waitErr = <-done })
		return waitErr
	}
	t.Cleanup(func() { require.NoError(t, stop()) })
	return p, d, stop
}

func ffNode(cluster string, id uint32) *client.Node {
	return client.NewNode(client.Settings{Cluster: cluster, NodeID: id, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
}

// request is a node's certificate request for cluster, with its key.
func request(t *testing.T, cluster string) (*x509.CertificateRequest, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cluster}}, key)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return csr, key
}

// signedClientTLS is what a paired node holds: a key, its cluster's
// certificate signed by the add-on's CA from a request, and the CA.
func signedClientTLS(t *testing.T, p Paths, cluster string) *tls.Config {
	t.Helper()
	a, err := pki.Load(p.PKIDir())
	require.NoError(t, err)
	csr, key := request(t, cluster)
	path, err := a.Sign(csr, cluster, time.Now())
	require.NoError(t, err)
	cert, err := os.ReadFile(path)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(a.CA)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert}, PrivateKey: key}},
		// NSS checks the server's CN "Qnetd Server", which Go's verifier
		// does not accept as a host name: check the chain and the CN here.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool}); err != nil {
				return err
			}
			if cn := cs.PeerCertificates[0].Subject.CommonName; cn != "Qnetd Server" {
				return errors.New("server certificate is for " + cn)
			}
			return nil
		}}
}

// TestTLSEnabledRequiresTLS: with tls_enabled (the default) the add-on is
// upstream's -s req. A plaintext client that claims a cluster gets the
// TLS-required error for its INIT and never joins; a node with its
// cluster's certificate joins and gets the vote.
func TestTLSEnabledRequiresTLS(t *testing.T) {
	o := Defaults()
	o.PairingEnabled = false
	p, d, _ := startAddon(t, o, nil)
	addr := d.Addr().String()

	plain, err := client.Dial(addr, ffNode("pve", 1), 5*time.Second)
	require.NoError(t, err)
	defer plain.Close()
	r, err := plain.Call(plain.Node.Preinit())
	require.NoError(t, err)
	require.Equal(t, wire.MsgPreinitReply, r.Type)
	require.Equal(t, wire.TLSRequired, r.TLSSupported, "the server says TLS is required")
	r, err = plain.Call(plain.Node.Init(wire.RingID{NodeID: 1, Seq: 4}))
	require.NoError(t, err)
	require.Equal(t, wire.MsgServerError, r.Type)
	require.Equal(t, wire.ErrTLSRequired, r.ReplyErrorCode)
	err = plain.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil)
	require.ErrorIs(t, err, client.ErrRefused, "a plaintext handshake is refused as a whole")

	node, err := client.Dial(addr, ffNode("pve", 1), 5*time.Second)
	require.NoError(t, err)
	defer node.Close()
	require.NoError(t, node.Handshake(wire.RingID{NodeID: 1, Seq: 4}, signedClientTLS(t, p, "pve")))
	nodes := []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}
	_, err = node.Call(node.Node.Config(nodes, true, nil))
	require.NoError(t, err)
	_, err = node.Call(node.Node.Membership(wire.RingID{NodeID: 1, Seq: 4}, nodes, wire.HeuristicsUndefined))
	require.NoError(t, err)
	require.Equal(t, client.Ack, node.Node.Vote(), "the certificate-holding node votes: %v", node.Node.Log)

	st := toolStatus(t, p)
	require.Contains(t, st, "TLS:\t\t\t\tRequired (client certificate required)\n")
	require.Contains(t, st, "Connected clusters:\t\t1\n")
}

// TestTLSEnabledRefusesAnotherClustersCertificate: a certificate for one
// cluster does not let a node into another.
func TestTLSEnabledRefusesAnotherClustersCertificate(t *testing.T) {
	o := Defaults()
	o.PairingEnabled = false
	p, d, _ := startAddon(t, o, nil)
	node, err := client.Dial(d.Addr().String(), ffNode("victim", 1), 5*time.Second)
	require.NoError(t, err)
	defer node.Close()
	err = node.Handshake(wire.RingID{NodeID: 1, Seq: 4}, signedClientTLS(t, p, "mine"))
	require.Error(t, err)
	require.Contains(t, toolStatus(t, p), "Connected clusters:\t\t0\n")
}

func toolStatus(t *testing.T, p Paths) string {
	t.Helper()
	var out, errOut strings.Builder
	code := adminipc.ToolMain([]string{"-s", "-p", daemon.SocketIn(p.RunDir)}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	return out.String()
}

// TestForgetClustersOption: a cluster listed in forget_clusters loses its
// pairing owner at the next start, so another key may have it signed; a
// name that pairing would never sign is refused with the option named.
func TestForgetClustersOption(t *testing.T) {
	dir := t.TempDir()
	p := Paths{Options: filepath.Join(dir, "options.json"), Data: dir, Config: dir, RunDir: filepath.Join(dir, "run")}
	o := Defaults()
	o.PairingEnabled = false
	require.NoError(t, Init(p, o, zerolog.Nop()))
	a, err := pki.Load(p.PKIDir())
	require.NoError(t, err)
	sign := func(cluster string, who pki.Identity) error {
		csr, _ := request(t, cluster)
		_, err := a.SignFor(csr, cluster, who, time.Now())
		return err
	}
	keyA, keyB := pki.Identity{ID: "ssh-key A", Label: "A"}, pki.Identity{ID: "ssh-key B", Label: "B"}
	require.NoError(t, sign("pve", keyA))
	var owned *pki.OwnedError
	require.ErrorAs(t, sign("pve", keyB), &owned, "another key is refused")

	o.ForgetClusters = []string{"PVE"}
	var logBuf strings.Builder
	require.NoError(t, Init(p, o, zerolog.New(&logBuf)))
	require.Contains(t, logBuf.String(), "forgot who paired this cluster")
	require.NoError(t, sign("pve", keyB), "after forgetting, the next key owns it")
	require.ErrorAs(t, sign("pve", keyA), &owned)

	o.ForgetClusters = []string{"*.lan"}
	err = o.Validate()
	require.ErrorContains(t, err, "option 'forget_clusters[0]': \"*.lan\" is not valid")
}
