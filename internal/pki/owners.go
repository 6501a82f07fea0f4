package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/certname"
)

// Cluster name ownership. Every key that may pair can ask for a
// certificate, and a certificate for a cluster's name lets its holder vote
// in that cluster (DESIGN.md §4: qnetd accepts a client whose certificate
// names its cluster). So a cluster name belongs to the pairing identity
// that first had it signed: that identity may sign it again (pvecm
// qdevice setup --force from the same node), another one is refused until
// the administrator forgets the name. Names are compared as the TLS check
// compares them, ignoring case.
//
// The record is OwnersFile in the certificate directory, rewritten whole
// (temp file + rename) under an exclusive lock of the directory, so the
// pairing endpoint, the add-on and a local corosync-qnetd-certutil can
// share it.

// OwnersFile records the owner of every cluster name signed over pairing.
const OwnersFile = "owners.json"

// Bounds of the record: maxOwners names (far more clusters than one qnetd
// serves), and the file's size when read.
const (
	maxOwners     = 1024
	maxOwnersFile = 1 << 20
)

// Identity is who asks for a signature over the pairing endpoint.
type Identity struct {
	// ID is what is compared, e.g. "ssh-key SHA256:..." for an SSH key.
	ID string
	// Label names the identity for people (key type, fingerprint, comment).
	Label string
}

// Owner is the record of one cluster name.
type Owner struct {
	Cluster string    `json:"cluster"` // as it was first signed
	ID      string    `json:"owner"`
	Label   string    `json:"owner_label,omitempty"`
	Claimed time.Time `json:"claimed"`
}

type ownersDoc struct {
	About    string  `json:"about"`
	Clusters []Owner `json:"clusters"`
}

const ownersAbout = "Which pairing identity owns each cluster name; see DOCS.md, \"Who may sign a cluster name\"."

//go:generate go run golang.org/x/tools/cmd/stringer@v0.45.0 -linecomment -type=Claim

// Claim says how SignFor came to sign for a name.
type Claim int

const (
	// ClaimSame: the name was the identity's already.
	ClaimSame Claim = iota + 1 // same owner
	// ClaimNew: the name had never been signed; it is the identity's now.
	ClaimNew // new
	// ClaimLegacy: the name was signed before owners were recorded (a
	// cluster-NAME.crt without a record); the first identity that signs it
	// again owns it now.
	ClaimLegacy // claimed, signed before owners were recorded
)

// SignResult is what SignFor did.
type SignResult struct {
	Path  string
	Claim Claim
}

// OwnedError refuses to sign a name that belongs to another identity.
type OwnedError struct {
	Cluster string // as asked
	Owner   Owner
}

func (e *OwnedError) Error() string {
	return fmt.Sprintf("cluster name %q belongs to another pairing key, which had it signed first (%s); "+
		"if this is your cluster, ask the Home Assistant admin to add %q to the add-on's option forget_clusters and restart it "+
		"(on a plain qnetd host: corosync-qnetd-certutil -F -n %s), then run the setup again",
		e.Cluster, e.Owner.Claimed.UTC().Format(time.DateOnly), e.Cluster, e.Cluster)
}

// SignFor is Sign on behalf of a pairing identity: it refuses a name that
// belongs to another identity, and records the name as the identity's when
// it has no owner yet. The record is written before the certificate, so a
// crash between the two leaves a claim without a certificate (which the
// same identity completes by signing again), never a certificate without
// its owner.
func (a *Authority) SignFor(csr *x509.CertificateRequest, cluster string, who Identity, now time.Time) (SignResult, error) {
	if err := checkRequest(csr, cluster); err != nil {
		return SignResult{}, err
	}
	if who.ID == "" {
		return SignResult{}, fmt.Errorf("sign %s: no pairing identity", cluster)
	}
	unlock, err := lockDir(a.Dir)
	if err != nil {
		return SignResult{}, fmt.Errorf("sign %s: %w", cluster, err)
	}
	defer unlock()
	doc, err := loadOwners(a.Dir)
	if err != nil {
		return SignResult{}, fmt.Errorf("sign %s: %w", cluster, err)
	}
	var claim Claim
	if i := doc.find(cluster); i >= 0 {
		if o := doc.Clusters[i]; o.ID != who.ID {
			return SignResult{}, &OwnedError{Cluster: cluster, Owner: o}
		}
		claim = ClaimSame
	} else {
		claim = ClaimNew
		if signedBefore(a.Dir, cluster) {
			claim = ClaimLegacy
		}
		if len(doc.Clusters) >= maxOwners {
			return SignResult{}, fmt.Errorf("sign %s: %d cluster names are recorded, the most this qnetd keeps; "+
				"forget the clusters that no longer exist (corosync-qnetd-certutil -F -n NAME)", cluster, len(doc.Clusters))
		}
		doc.Clusters = append(doc.Clusters, Owner{Cluster: cluster, ID: who.ID, Label: who.Label, Claimed: now.UTC()})
		if err := saveOwners(a.Dir, doc); err != nil {
			return SignResult{}, fmt.Errorf("sign %s: %w", cluster, err)
		}
	}
	path, err := a.issue(csr, cluster, now)
	if err != nil {
		if claim != ClaimSame {
			doc.Clusters = doc.Clusters[:len(doc.Clusters)-1]
			if uerr := saveOwners(a.Dir, doc); uerr != nil {
				err = fmt.Errorf("%w (and the claim on the name stays recorded: %v)", err, uerr)
			}
		}
		return SignResult{}, err
	}
	return SignResult{Path: path, Claim: claim}, nil
}

// signedBefore reports whether a certificate file for cluster, in any
// case, is in dir.
func signedBefore(dir, cluster string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), "cluster-")
		if name, ok2 := strings.CutSuffix(name, ".crt"); ok && ok2 && certname.Key(name) == certname.Key(cluster) {
			return true
		}
	}
	return false
}

// Forget removes the owner of cluster (any case), so that the next identity
// that signs the name owns it. It returns the record it removed, and false
// when the name had no owner. Issued certificates stay valid: forgetting
// only decides who may sign the name next.
func Forget(dir, cluster string) (Owner, bool, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return Owner{}, false, fmt.Errorf("forget %s: %w", cluster, err)
	}
	defer unlock()
	doc, err := loadOwners(dir)
	if err != nil {
		return Owner{}, false, fmt.Errorf("forget %s: %w", cluster, err)
	}
	i := doc.find(cluster)
	if i < 0 {
		return Owner{}, false, nil
	}
	o := doc.Clusters[i]
	doc.Clusters = slices.Delete(doc.Clusters, i, i+1)
	if err := saveOwners(dir, doc); err != nil {
		return Owner{}, false, fmt.Errorf("forget %s: %w", cluster, err)
	}
	return o, true, nil
}

// Owners lists the recorded owners, in the order they claimed their names.
func Owners(dir string) ([]Owner, error) {
	doc, err := loadOwners(dir)
	if err != nil {
		return nil, err
	}
	return doc.Clusters, nil
}

func (d *ownersDoc) find(cluster string) int {
	return slices.IndexFunc(d.Clusters, func(o Owner) bool { return certname.Key(o.Cluster) == certname.Key(cluster) })
}

func loadOwners(dir string) (*ownersDoc, error) {
	path := filepath.Join(dir, OwnersFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &ownersDoc{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxOwnersFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	damaged := func(why string) error {
		return fmt.Errorf("%s is damaged (%s); restore it from a backup, or delete it: then every cluster name counts as "+
			"signed before owners were recorded, and the first key that signs it again owns it", path, why)
	}
	if len(data) > maxOwnersFile {
		return nil, damaged(fmt.Sprintf("more than %d bytes", maxOwnersFile))
	}
	var doc ownersDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, damaged(err.Error())
	}
	for _, o := range doc.Clusters {
		if o.ID == "" || certname.Check(o.Cluster) != nil {
			return nil, damaged(fmt.Sprintf("invalid record %q", o.Cluster))
		}
	}
	if len(doc.Clusters) > maxOwners {
		return nil, damaged(fmt.Sprintf("%d records, more than %d", len(doc.Clusters), maxOwners))
	}
	return &doc, nil
}

func saveOwners(dir string, doc *ownersDoc) error {
	doc.About = ownersAbout
	if doc.Clusters == nil {
		doc.Clusters = []Owner{}
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, OwnersFile), append(data, '\n'), 0o600)
}

// lockDir takes an exclusive lock on dir (flock), which every change of
// OwnersFile holds from reading to writing.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
