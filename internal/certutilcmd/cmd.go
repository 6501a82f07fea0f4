// Package certutilcmd is corosync-qnetd-certutil: upstream's command line
// (-i to initialise, -s -c REQUEST -n CLUSTER to sign, -h) over our own
// certificate authority, with upstream's messages and exit codes, because
// pvecm, pcs and crmsh run it over ssh and parse what it prints.
//
// Run locally, it is the administrator's tool: it signs any valid cluster
// name and leaves the record of who owns which name as it is (-F forgets
// an owner). The pairing endpoint runs it with the session's identity,
// and then a name belongs to the identity that first had it signed (see
// pki.SignFor).
package certutilcmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/qnetd-addon/qnetd/internal/getopt"
	"github.com/qnetd-addon/qnetd/internal/pki"
)

// DefaultDir is upstream's NSS database directory; here it is the PKI
// directory.
const DefaultDir = "/etc/corosync/qnetd/nssdb"

const prog = "corosync-qnetd-certutil"

func usage(w io.Writer) {
	fmt.Fprintf(w, `%s: [-i|-s] [-c certificate] [-G] [-n cluster_name] [-d dir] [-I import.pem] [-F]

  -i      initialize a new certificate authority and server certificate
  -s      sign the cluster certificate request given with -c for cluster -n
  -c      certificate request to sign (DER or PEM)
  -n      cluster name
  -F      forget who paired cluster -n, so that another pairing key may sign
          it (certificates already issued stay valid)
  -d      certificate directory (default %s, or $QNETD_NSS_DB_DIR)
  -I      import a CA (and server certificate) exported from an upstream NSS
          database, in PEM, so that existing node certificates keep working
  -G      accepted for compatibility (group permissions)
  -h      this help
`, prog, DefaultDir)
}

// Options are what the pairing endpoint adds to a run.
type Options struct {
	// Identity is who asks over the pairing endpoint. Nil is a local run
	// by the administrator: it may sign any valid name, and the owners
	// stay as they are.
	Identity *pki.Identity
	// Outcome, when not nil, receives what -s did.
	Outcome *Outcome
}

// Outcome is what -s did: the result, or why it refused (a
// *pki.OwnedError when the name belongs to another identity).
type Outcome struct {
	Cluster string
	Result  pki.SignResult
	Err     error
}

// Main runs the tool locally and returns its exit status.
func Main(args []string, environ map[string]string, stdout, stderr io.Writer, now func() time.Time) int {
	return Run(args, environ, Options{}, stdout, stderr, now)
}

// Run runs the tool with opts and returns its exit status.
func Run(args []string, environ map[string]string, o Options, stdout, stderr io.Writer, now func() time.Time) int {
	opts, _, err := getopt.Parse(args, "FGhisc:n:d:I:")
	if err != nil {
		var ge *getopt.Error
		if errors.As(err, &ge) && ge.Missing {
			fmt.Fprintf(stderr, "Option -%c requires an argument.\n", ge.Option)
		} else if errors.As(err, &ge) {
			fmt.Fprintf(stderr, "Invalid option: -%c\n", ge.Option)
		}
		usage(stderr)
		return 1
	}
	dir := DefaultDir
	if d := environ["QNETD_NSS_DB_DIR"]; d != "" {
		dir = d
	}
	var op, csrFile, cluster, importFile string
	for _, o := range opts {
		switch o.Name {
		case 'i', 's', 'F':
			op = string(o.Name)
		case 'h':
			op = "h"
		case 'c':
			csrFile = o.Arg
		case 'n':
			cluster = o.Arg
		case 'd':
			dir = o.Arg
		case 'I':
			op, importFile = "I", o.Arg
		}
	}
	switch op {
	case "i":
		return initCA(dir, stdout, stderr, now())
	case "s":
		return sign(dir, csrFile, cluster, o, stdout, stderr, now())
	case "F":
		return forget(dir, cluster, o, stdout, stderr)
	case "I":
		return importCA(dir, importFile, stdout, stderr, now())
	}
	usage(stdout)
	return 0
}

func initCA(dir string, stdout, stderr io.Writer, now time.Time) int {
	if pki.Initialized(dir) {
		fmt.Fprintf(stderr, "Certificate database (%s) already exists. Delete it to initialize new db\n", dir)
		return 1
	}
	for _, nss := range []string{"cert9.db", "cert8.db"} {
		if _, err := os.Stat(filepath.Join(dir, nss)); err == nil {
			fmt.Fprintf(stderr, "%s holds an NSS database from upstream corosync-qnetd (%s). "+
				"Import its CA with %s -I (see DOCS.md, \"Moving from corosync-qnetd\") or delete it to initialize a new one\n", dir, nss, prog)
			return 1
		}
	}
	if _, err := pki.Init(dir, now); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	fmt.Fprintf(stdout, "QNetd CA certificate is exported as %s\n", filepath.Join(dir, pki.CAFile))
	return 0
}

func sign(dir, csrFile, cluster string, o Options, stdout, stderr io.Writer, now time.Time) int {
	data, err := readLimited(csrFile)
	if err != nil {
		fmt.Fprintf(stderr, "Can't open certificate file %s\n", csrFile)
		return 2
	}
	if cluster == "" {
		fmt.Fprintln(stderr, "You have to specify cluster name")
		return 2
	}
	if !pki.Initialized(dir) {
		fmt.Fprintf(stderr, "Certificate database doesn't exists. Use %s -i to create it\n", prog)
		return 1
	}
	a, err := pki.Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	fmt.Fprintln(stdout, "Signing cluster certificate")
	csr, err := pki.ParseCSR(data)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s: %v\n", prog, csrFile, err)
		return 1
	}
	var res pki.SignResult
	if o.Identity != nil {
		res, err = a.SignFor(csr, cluster, *o.Identity, now)
	} else {
		res.Path, err = a.Sign(csr, cluster, now)
	}
	if o.Outcome != nil {
		*o.Outcome = Outcome{Cluster: cluster, Result: res, Err: err}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	fmt.Fprintf(stdout, "Certificate stored in %s\n", res.Path)
	return 0
}

// forget removes the owner of a cluster name; only the local
// administrator may (the pairing endpoint does not pass -F on).
func forget(dir, cluster string, o Options, stdout, stderr io.Writer) int {
	if o.Identity != nil {
		fmt.Fprintf(stderr, "%s: -F is for the administrator of this qnetd only\n", prog)
		return 1
	}
	if cluster == "" {
		fmt.Fprintln(stderr, "You have to specify cluster name")
		return 2
	}
	owner, ok, err := pki.Forget(dir, cluster)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	if !ok {
		fmt.Fprintf(stdout, "Cluster %q has no recorded owner: any pairing key may sign it\n", cluster)
		return 0
	}
	who := owner.Label
	if who == "" {
		who = owner.ID
	}
	fmt.Fprintf(stdout, "Forgot that cluster %q belongs to %s: the next pairing key that signs it owns it\n", owner.Cluster, who)
	return 0
}

// readLimited reads at most one byte more than a request may have, so a
// huge file is refused without being read whole.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, pki.MaxCSRSize+1))
}

func importCA(dir, file string, stdout, stderr io.Writer, now time.Time) int {
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	minSerial := 0
	if b, err := os.ReadFile(filepath.Join(dir, pki.SerialFile)); err == nil {
		fmt.Sscanf(string(b), "%d", &minSerial)
	}
	a, err := pki.Import(dir, data, minSerial, now)
	if err != nil {
		fmt.Fprintf(stderr, "%s: import %s: %v\n", prog, file, err)
		return 1
	}
	fmt.Fprintf(stdout, "Imported CA %q (serial %s); server certificate serial %s\nQNetd CA certificate is exported as %s\n",
		a.CA.Subject.CommonName, a.CA.SerialNumber, a.Server.SerialNumber, filepath.Join(dir, pki.CAFile))
	return 0
}
