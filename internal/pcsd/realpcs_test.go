package pcsd

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// realPcs runs Debian's pcs (0.11.5) as root in a private mount namespace
// where /var/lib/pcsd (pcs's known-hosts) and /etc/corosync (the node's
// certificate database) are directories of the test: nothing of the host's
// is read or written.
type realPcs struct {
	t       *testing.T
	pcsdDir string
	coroDir string
}

const pcsdVarDir = "/var/lib/pcsd"

func requireRealPcs(t *testing.T) *realPcs {
	t.Helper()
	var missing []string
	for _, tool := range []string{"pcs", "ruby", "/usr/bin/python3", "unshare", "mount", "corosync-qdevice-net-certutil", "certutil"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	msg := ""
	switch {
	case len(missing) > 0:
		msg = fmt.Sprintf("missing tools %v (Debian: pcs, corosync-qdevice, libnss3-tools, util-linux)", missing)
	case os.Geteuid() != 0:
		msg = "pcs host auth runs as root only (as another user it asks the local pcsd); the test needs root"
	default:
		if out, err := exec.Command("unshare", "-m", "--propagation", "private", "true").CombinedOutput(); err != nil {
			msg = fmt.Sprintf("cannot create a mount namespace: %v %s", err, out)
		} else if _, err := os.Stat("/etc/corosync"); err != nil {
			msg = "/etc/corosync does not exist: nothing to mount over"
		}
	}
	if msg != "" {
		if os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// The mount point: pcs's package does not always make it. One made
	// here is removed again (it stays empty: the test's directory is
	// mounted over it in the namespace only).
	if _, err := os.Stat(pcsdVarDir); errors.Is(err, os.ErrNotExist) {
		require.NoError(t, os.Mkdir(pcsdVarDir, 0o700))
		t.Cleanup(func() { os.Remove(pcsdVarDir) })
	}
	dir := t.TempDir()
	p := &realPcs{t: t, pcsdDir: filepath.Join(dir, "pcsd"), coroDir: filepath.Join(dir, "corosync")}
	require.NoError(t, os.Mkdir(p.pcsdDir, 0o700))
	require.NoError(t, os.Mkdir(p.coroDir, 0o755))
	return p
}

// run runs args in the namespace; it returns the output and exit status.
func (p *realPcs) run(args ...string) (string, int) {
	p.t.Helper()
	script := `mount --bind "$1" /var/lib/pcsd && mount --bind "$2" /etc/corosync && shift 2 && exec "$@"`
	cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh", p.pcsdDir, p.coroDir}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "HOME=" + p.t.TempDir()}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	require.NoError(p.t, err, string(out))
	return string(out), 0
}

func (p *realPcs) hostAuth(addr, password string) (string, int) {
	return p.run("pcs", "host", "auth", "qnetd-host", "addr="+addr, "-u", User, "-p", password)
}

// knownHost is pcs's record of the qnetd host.
func (p *realPcs) knownHost() (token, addr string, port int) {
	p.t.Helper()
	data, err := os.ReadFile(filepath.Join(p.pcsdDir, "known-hosts"))
	require.NoError(p.t, err)
	var doc struct {
		KnownHosts map[string]struct {
			Token    string `json:"token"`
			DestList []struct {
				Addr string `json:"addr"`
				Port int    `json:"port"`
			} `json:"dest_list"`
		} `json:"known_hosts"`
	}
	require.NoError(p.t, json.Unmarshal(data, &doc), string(data))
	h, ok := doc.KnownHosts["qnetd-host"]
	require.True(p.t, ok, string(data))
	require.NotEmpty(p.t, h.DestList)
	return h.Token, h.DestList[0].Addr, h.DestList[0].Port
}

// TestRealPcs: Debian's pcs against the endpoint on loopback: `pcs host
// auth` with a wrong and the right password, then the qnetd host's part of
// `pcs quorum device add model net` through pcs's own library
// (testdata/pcs_qdevice_net.py): the CA certificate, the node's
// certificate database made by pcs with corosync-qdevice-net-certutil, the
// signed cluster certificate imported into it; then a second `pcs host
// auth` (a new token, a new identity) whose signing of the same cluster is
// refused with our reason shown by pcs.
func TestRealPcs(t *testing.T) {
	p := requireRealPcs(t)
	ts := startServer(t, testPassword, nil)

	out, code := p.hostAuth(ts.addr, "wrong-password")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "qnetd-host: Username and/or password is incorrect")
	t.Logf("pcs host auth, wrong password:\n%s", out)

	out, code = p.hostAuth(ts.addr, testPassword)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "qnetd-host: Authorized")
	token, addr, port := p.knownHost()
	require.Equal(t, ts.addr, fmt.Sprintf("%s:%d", addr, port))
	rec, ok := ts.s.tokens.lookup(token)
	require.True(t, ok, "pcs keeps the token we issued")

	outDir := t.TempDir()
	script, err := filepath.Abs("testdata/pcs_qdevice_net.py")
	require.NoError(t, err)
	out, code = p.run("/usr/bin/python3", script, "qnetd-host", "rhel-prod", outDir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "OK")

	ca, err := os.ReadFile(filepath.Join(outDir, "ca.crt"))
	require.NoError(t, err)
	caFile, err := os.ReadFile(filepath.Join(ts.a.Dir, pki.CAFile))
	require.NoError(t, err)
	require.Equal(t, caFile, ca)
	der, err := os.ReadFile(filepath.Join(outDir, "cluster.crt"))
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	blk, _ := pem.Decode(ca)
	caCert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	require.Equal(t, "rhel-prod", cert.Subject.CommonName)
	owners, err := pki.Owners(ts.a.Dir)
	require.NoError(t, err)
	require.Len(t, owners, 1)
	require.Equal(t, rec.identity().ID, owners[0].ID)

	// The node's database, as pcs and corosync-qdevice-net-certutil left
	// it: our CA and the cluster certificate with its key.
	nssdb := filepath.Join(p.coroDir, "qdevice", "net", "nssdb")
	list, err := exec.Command("certutil", "-L", "-d", nssdb).CombinedOutput()
	require.NoError(t, err, string(list))
	require.Contains(t, string(list), "QNet CA")
	require.Contains(t, string(list), "Cluster Cert")

	// A new `pcs host auth` is a new identity: the cluster stays the
	// first token's, and pcs shows why.
	out, code = p.hostAuth(ts.addr, testPassword)
	require.Equal(t, 0, code, out)
	token2, _, _ := p.knownHost()
	require.NotEqual(t, token, token2)
	csr := filepath.Join(outDir, "other.crq")
	require.NoError(t, os.WriteFile(csr, makeCSR(t, "rhel-prod"), 0o600))
	out, code = p.run("/usr/bin/python3", script, "qnetd-host", "rhel-prod", outDir, "sign", csr)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, `qnetd-host: cluster name "rhel-prod" belongs to another pairing key`)
	t.Logf("signing with another token:\n%s", out)
	require.True(t, strings.Contains(ts.log.String(), "pcsd: refused to sign a cluster name that another pairing identity owns"))
}
