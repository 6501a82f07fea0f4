package pairing

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// node is a simulated Proxmox node: corosync-qdevice-net-certutil runs in
// a private mount namespace where a temp dir is bind-mounted over
// /etc/corosync, so its NSS database (/etc/corosync/qdevice/net/nssdb)
// lives in the temp dir and the host is untouched.
type node struct {
	t    *testing.T
	name string
	etc  string // bind-mounted over /etc/corosync
}

func (n *node) nssdb() string { return filepath.Join(n.etc, "qdevice", "net", "nssdb") }

func newNode(t *testing.T, name string) *node {
	n := &node{t: t, name: name, etc: filepath.Join(t.TempDir(), "etc-corosync")}
	require.NoError(t, os.MkdirAll(filepath.Join(n.etc, "qdevice", "net"), 0o755))
	return n
}

// requireNamespaces checks that a private mount namespace can be made.
func requireNamespaces(t *testing.T) {
	t.Helper()
	requireTools(t, "unshare", "mount", "corosync-qdevice-net-certutil", "certutil")
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "true").CombinedOutput()
	if err == nil && os.Geteuid() == 0 {
		return
	}
	msg := fmt.Sprintf("cannot create a mount namespace (root and unshare -m needed): %v %s", err, out)
	if os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// certutil runs the real corosync-qdevice-net-certutil on this node.
func (n *node) certutil(args ...string) string {
	n.t.Helper()
	if _, err := os.Stat("/etc/corosync"); err != nil {
		n.t.Skip("/etc/corosync does not exist: nothing to bind-mount over")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script := `mount --bind "$NODE_ETC" /etc/corosync && exec corosync-qdevice-net-certutil "$@"`
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh"}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_ETC="+n.etc)
	out, err := cmd.CombinedOutput()
	require.NoError(n.t, err, "node %s: corosync-qdevice-net-certutil %v:\n%s", n.name, args, out)
	return string(out)
}

// verify checks the node's "Cluster Cert" with NSS (certutil -V) for SSL
// client use, as corosync-qdevice will present it.
func (n *node) verify() {
	n.t.Helper()
	out, err := exec.Command("certutil", "-V", "-d", "sql:"+n.nssdb(), "-n", "Cluster Cert", "-u", "C").CombinedOutput()
	require.NoError(n.t, err, "node %s: certutil -V:\n%s", n.name, out)
	require.Contains(n.t, string(out), "certificate is valid")
}

// TestPvecmQdeviceSetup replays `pvecm qdevice setup` (pve-cluster's
// PVE/CLI/pvecm.pm, unchanged PVE 5.4 - 9.1) step by step with the real
// OpenSSH tools against the endpoint, and the real
// corosync-qdevice-net-certutil on two simulated nodes; scp runs in SFTP
// mode (PVE 8/9, OpenSSH >= 9.0) and in legacy mode (-O, PVE 7).
func TestPvecmQdeviceSetup(t *testing.T) {
	for _, mode := range []struct {
		name   string
		legacy bool
	}{{"sftp", false}, {"legacy-scp", true}} {
		t.Run(mode.name, func(t *testing.T) {
			requireNamespaces(t)
			hostBefore := hostQdeviceState()
			const password = "pair me, pve!"
			const cluster = "pve-test"
			ts := startServer(t, func(c *Config) { c.Password = password })
			c := newClient(t)
			c.password = password
			nodeA, nodeB := newNode(t, "pve1"), newNode(t, "pve2")

			// 1. ssh-copy-id -i /root/.ssh/id_rsa root@IP: first contact
			// (host key question answered via SSH_ASKPASS), probe, key
			// test with `exit`, then the password login installs the key.
			r := c.run(nil, "ssh-copy-id", append([]string{"-i", c.key, "-p", fmt.Sprint(ts.port)},
				"-F", "/dev/null", "-o", "UserKnownHostsFile="+c.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
				"-o", "StrictHostKeyChecking=ask", "-o", "IdentityAgent=none", "root@127.0.0.1")...)
			require.Equal(t, 0, r.code, r.String())
			require.Contains(t, r.stdout+r.stderr, "Number of key(s) added: 1")
			// The prompt the user sees carries the fingerprint the add-on logs.
			asked, err := os.ReadFile(c.askLog)
			require.NoError(t, err)
			require.Contains(t, string(asked), ts.s.HostKeyFingerprints()[0], "first-contact prompt")
			require.Contains(t, string(asked), "password", "password prompt")
			ts.log.wait(t, "logged in with the password")
			ts.log.wait(t, "SSH key installed (ssh-copy-id)")
			stored, err := os.ReadFile(filepath.Join(ts.dataDir, "ssh", "authorized_keys"))
			require.NoError(t, err)
			require.Contains(t, string(stored), strings.Fields(c.pub())[1])
			kh, err := os.ReadFile(c.knownHosts)
			require.NoError(t, err)
			require.Contains(t, string(kh), strings.Fields(ts.s.HostPublicKeys()[0])[1], "known_hosts got our ed25519 host key")

			// Running ssh-copy-id again: the key test (`exit`) succeeds.
			r = c.run(nil, "ssh-copy-id", "-i", c.key, "-p", fmt.Sprint(ts.port), "-F", "/dev/null",
				"-o", "UserKnownHostsFile="+c.knownHosts, "-o", "IdentityAgent=none", "root@127.0.0.1")
			require.Equal(t, 0, r.code, r.String())
			require.Contains(t, r.stdout+r.stderr, "already exist")

			// 2. ssh -o BatchMode=yes -lroot IP corosync-qnetd-certutil -i
			r = c.ssh(ts, nil, "corosync-qnetd-certutil", "-i")
			require.Equal(t, 0, r.code, r.String())
			require.Equal(t, "QNetd CA certificate is exported as /etc/corosync/qnetd/nssdb/qnetd-cacert.crt\n", r.stdout)
			ts.log.wait(t, `"addr":"127.0.0.1","message":"pairing: certificate authority initialised"`)
			// pvecm ignores the exit code; a second run says it exists.
			r = c.ssh(ts, nil, "corosync-qnetd-certutil", "-i")
			require.Equal(t, 1, r.code, r.String())
			require.Contains(t, r.stderr, "Certificate database (/etc/corosync/qnetd/nssdb) already exists")

			// 3. scp root@[IP]:/etc/corosync/qnetd/nssdb/qnetd-cacert.crt /etc/pve/
			pve := t.TempDir() // the node's /etc/pve
			r = c.scp(ts, mode.legacy, remote("/etc/corosync/qnetd/nssdb/qnetd-cacert.crt"), filepath.Join(pve, "qnetd-cacert.crt"))
			require.Equal(t, 0, r.code, r.String())
			ca, err := os.ReadFile(filepath.Join(pve, "qnetd-cacert.crt"))
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(ts.pkiDir, pki.CAFile))
			require.NoError(t, err)
			require.Equal(t, want, ca)
			ts.log.wait(t, `"addr":"127.0.0.1","file":"/etc/corosync/qnetd/nssdb/qnetd-cacert.crt","message":"pairing: CA fetched"`)

			// ... corosync-qdevice-net-certutil -i -c /etc/pve/qnetd-cacert.crt on every node
			for _, n := range []*node{nodeA, nodeB} {
				n.certutil("-i", "-c", filepath.Join(pve, "qnetd-cacert.crt"))
			}

			// 4. corosync-qdevice-net-certutil -r -n CLUSTER; scp the request to root@[IP]:/tmp
			nodeA.certutil("-r", "-n", cluster)
			crq := filepath.Join(nodeA.nssdb(), "qdevice-net-node.crq")
			r = c.scp(ts, mode.legacy, crq, remote("/tmp"))
			require.Equal(t, 0, r.code, r.String())
			ts.log.wait(t, `"file":"/tmp/qdevice-net-node.crq","bytes":`)
			ts.log.wait(t, "pairing: certificate request uploaded")

			// 5. ssh ... corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n CLUSTER
			r = c.ssh(ts, nil, "corosync-qnetd-certutil", "-s", "-c", "/tmp/qdevice-net-node.crq", "-n", cluster)
			require.Equal(t, 0, r.code, r.String())
			require.Contains(t, r.stdout, "Certificate stored in /etc/corosync/qnetd/nssdb/cluster-"+cluster+".crt")
			ts.log.wait(t, "pairing: signed certificate for a new cluster; this key owns the cluster name now")
			require.Contains(t, ts.log.String(), `"cluster":"`+cluster+`"`)

			// 6. scp root@[IP]:/etc/corosync/qnetd/nssdb/cluster-CLUSTER.crt /etc/corosync/qdevice/net/nssdb
			r = c.scp(ts, mode.legacy, remote("/etc/corosync/qnetd/nssdb/cluster-"+cluster+".crt"), nodeA.nssdb())
			require.Equal(t, 0, r.code, r.String())
			ts.log.wait(t, `"addr":"127.0.0.1","cluster":"`+cluster+`"`)
			ts.log.wait(t, "pairing: cluster certificate fetched")
			crt, err := os.ReadFile(filepath.Join(nodeA.nssdb(), "cluster-"+cluster+".crt"))
			require.NoError(t, err)
			leaf, err := x509.ParseCertificate(crt)
			require.NoError(t, err, "cluster certificate is DER")
			require.Equal(t, cluster, leaf.Subject.CommonName)

			// 7. -M on the setup node, then the p12 to every other node (-m).
			nodeA.certutil("-M", "-c", "/etc/corosync/qdevice/net/nssdb/cluster-"+cluster+".crt")
			p12 := filepath.Join(nodeA.nssdb(), "qdevice-net-node.p12")
			require.FileExists(t, p12)
			nodeB.certutil("-m", "-c", p12)

			// The nodes' certificates verify against the CA with NSS.
			nodeA.verify()
			nodeB.verify()
			a, err := pki.Load(ts.pkiDir)
			require.NoError(t, err)
			require.NoError(t, leaf.CheckSignatureFrom(a.CA))

			// The log told the story.
			for _, step := range []string{"logged in with the password", "SSH key installed", "logged in with key",
				"certificate authority initialised", "pairing: CA fetched", "pairing: certificate request uploaded",
				"signed certificate for a new cluster", "pairing: cluster certificate fetched"} {
				assert.Contains(t, ts.log.String(), step)
			}
			require.Equal(t, hostBefore, hostQdeviceState(), "the host's /etc/corosync was not touched")
			t.Logf("pairing log:\n%s", ts.log.String())
		})
	}
}

// hostQdeviceState describes the host's /etc/corosync/qdevice.
func hostQdeviceState() string {
	var b bytes.Buffer
	out, _ := exec.Command("ls", "-lR", "/etc/corosync/qdevice").CombinedOutput()
	b.Write(out)
	return b.String()
}

// TestSSHConfigStanza: with the endpoint on a port other than 22, the
// stanza printed in the log lets plain `ssh IP` and `scp root@[IP]:...`
// (pvecm has no port option) reach it.
func TestSSHConfigStanza(t *testing.T) {
	c := newClient(t)
	ts := startServer(t, func(cfg *Config) {
		cfg.AuthorizedKeys = []string{c.pub()}
		cfg.PublicHost = "127.0.0.1"
	})
	c.trust(ts)
	stanza := SSHConfigStanza("127.0.0.1", ts.port)
	require.Equal(t, fmt.Sprintf("Host 127.0.0.1\n    Port %d\n    User root\n", ts.port), stanza)
	ts.log.wait(t, "to /root/.ssh/config on the Proxmox node first")
	require.Contains(t, ts.log.String(), strings.ReplaceAll(strings.TrimSpace(stanza), "\n", `\n`))
	require.Contains(t, ts.log.String(), ts.s.HostKeyFingerprints()[0])

	cfgFile := filepath.Join(c.home, ".ssh", "config")
	require.NoError(t, os.WriteFile(cfgFile, []byte(stanza+"    UserKnownHostsFile "+c.knownHosts+"\n    IdentityFile "+c.key+"\n    IdentitiesOnly yes\n    IdentityAgent none\n"), 0o600))
	r := c.run([]byte{}, "ssh", "-F", cfgFile, "-o", "BatchMode=yes", "-lroot", "127.0.0.1", "corosync-qnetd-certutil", "-i")
	require.Equal(t, 0, r.code, r.String()+ts.log.String())
	r = c.run([]byte{}, "scp", "-F", cfgFile, "-o", "BatchMode=yes", remote("/etc/corosync/qnetd/nssdb/qnetd-cacert.crt"), filepath.Join(c.home, "ca.crt"))
	require.Equal(t, 0, r.code, r.String())
	require.Contains(t, SSHConfigStanza("", 2222), "Host HOME-ASSISTANT-IP\n    Port 2222\n")
}

// TestHostKeysPersist: the host keys are made once; a restart serves the
// same ones, and the fingerprints are what ssh-keygen -l prints.
func TestHostKeysPersist(t *testing.T) {
	requireTools(t, "ssh-keygen")
	dir := t.TempDir()
	s1, err := New(Config{DataDir: dir, PKIDir: t.TempDir()})
	require.NoError(t, err)
	fp1 := s1.HostKeyFingerprints()
	require.Len(t, fp1, 2)
	require.True(t, strings.HasPrefix(fp1[0], "ED25519 key fingerprint is SHA256:"), fp1[0])
	require.True(t, strings.HasPrefix(fp1[1], "RSA key fingerprint is SHA256:"), fp1[1])
	s2, err := New(Config{DataDir: dir, PKIDir: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, fp1, s2.HostKeyFingerprints())
	for i, f := range []string{hostKeyED25519, hostKeyRSA} {
		fi, err := os.Stat(filepath.Join(dir, "ssh", f))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		out, err := exec.Command("ssh-keygen", "-l", "-f", filepath.Join(dir, "ssh", f+".pub")).CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), strings.TrimPrefix(fp1[i][strings.Index(fp1[i], "SHA256:"):], ""))
	}
	// A damaged key is an error, never silently replaced.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ssh", hostKeyRSA), []byte("garbage"), 0o600))
	_, err = New(Config{DataDir: dir, PKIDir: t.TempDir()})
	require.Error(t, err)
}

// TestServerVersion: the identification string seen by the client does
// not start with "dropbear" (ssh-copy-id would then target
// /etc/dropbear/authorized_keys).
func TestServerVersion(t *testing.T) {
	c := newClient(t)
	ts := startServer(t, nil)
	c.trust(ts)
	r := c.run([]byte{}, "ssh", append(c.opts("-v", "-p", fmt.Sprint(ts.port), "-o", "BatchMode=yes", "-o", "LogLevel=DEBUG"), "root@127.0.0.1", "exit")...)
	require.NotEqual(t, 0, r.code, "the key is not authorised")
	require.Contains(t, r.stderr, "remote software version qnetd_pairing")
	require.NotContains(t, strings.ToLower(ServerVersion), "dropbear")
	require.False(t, strings.HasPrefix(strings.TrimPrefix(ServerVersion, "SSH-2.0-"), "NetScreen"))
}

// TestAuthorizedKeysOption: keys from the option log in at once; lines
// with options or garbage are ignored with a warning; keys installed by
// ssh-copy-id survive a restart.
func TestAuthorizedKeysOption(t *testing.T) {
	c := newClient(t)
	ts := startServer(t, func(cfg *Config) {
		cfg.AuthorizedKeys = []string{"# comment", "", `from="10.0.0.0/8" ` + c.pub(), "not a key", c.pub()}
	})
	c.trust(ts)
	require.Contains(t, ts.log.String(), "key options (from=")
	require.Contains(t, ts.log.String(), "not a public key")
	r := c.ssh(ts, nil, "exit")
	require.Equal(t, 0, r.code, r.String())

	// Keys installed through the key-install command persist.
	other, err := os.ReadFile(c.key + ".pub")
	require.NoError(t, err)
	k, _, _, _, err := ssh.ParseAuthorizedKey(other)
	require.NoError(t, err)
	ks, err := loadKeyStore(filepath.Join(t.TempDir(), "authorized_keys"), nil, ts.cfg.Log)
	require.NoError(t, err)
	added, _, err := ks.install(other)
	require.NoError(t, err)
	require.Len(t, added, 1)
	ks2, err := loadKeyStore(ks.file, nil, ts.cfg.Log)
	require.NoError(t, err)
	_, ok := ks2.lookup(k)
	require.True(t, ok)
}
