package pairing

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// Host key files in DataDir/ssh, OpenSSH's names and format.
const (
	hostKeyED25519 = "ssh_host_ed25519_key"
	hostKeyRSA     = "ssh_host_rsa_key"
	rsaHostKeyBits = 3072
)

// loadHostKeys reads the host keys, creating the missing ones once. A key
// file that exists but cannot be read is an error: silently replacing it
// would change the fingerprint the nodes know.
func loadHostKeys(dir string, log zerolog.Logger) ([]ssh.Signer, error) {
	var out []ssh.Signer
	for _, name := range []string{hostKeyED25519, hostKeyRSA} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			var key crypto.Signer
			if name == hostKeyED25519 {
				_, key, err = ed25519.GenerateKey(rand.Reader)
			} else {
				key, err = rsa.GenerateKey(rand.Reader, rsaHostKeyBits)
			}
			if err != nil {
				return nil, fmt.Errorf("pairing: generate %s: %w", name, err)
			}
			blk, err := ssh.MarshalPrivateKey(key, "qnetd pairing host key")
			if err != nil {
				return nil, fmt.Errorf("pairing: encode %s: %w", name, err)
			}
			data = pem.EncodeToMemory(blk)
			signer, err := ssh.NewSignerFromKey(key)
			if err != nil {
				return nil, fmt.Errorf("pairing: %s: %w", name, err)
			}
			pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
			pub = append(bytes.TrimSpace(pub), []byte(" qnetd-pairing\n")...)
			if err := pki.WriteFileAtomic(path+".pub", pub, 0o644); err != nil {
				return nil, fmt.Errorf("pairing: %w", err)
			}
			if err := pki.WriteFileAtomic(path, data, 0o600); err != nil {
				return nil, fmt.Errorf("pairing: %w", err)
			}
			log.Info().Str("file", path).Str("fingerprint", ssh.FingerprintSHA256(signer.PublicKey())).Msg("pairing: created SSH host key")
		} else if err != nil {
			return nil, fmt.Errorf("pairing: read host key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("pairing: host key %s: %w (delete it to create a new one; the nodes will then see a changed host key)", path, err)
		}
		out = append(out, signer)
	}
	return out, nil
}

// authKey is one authorised key.
type authKey struct {
	key     ssh.PublicKey
	comment string
	source  string // "option" or "installed"
}

// keyStore holds the keys from the options and those ssh-copy-id
// installed (persisted in file).
type keyStore struct {
	file string
	mu   sync.Mutex
	opt  map[string]authKey
	inst map[string]authKey
	// order of installed keys, for a stable file
	order []string
}

func loadKeyStore(file string, option []string, log zerolog.Logger) (*keyStore, error) {
	ks := &keyStore{file: file, opt: map[string]authKey{}, inst: map[string]authKey{}}
	for i, line := range option {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, comment, err := parseKeyLine(line)
		if err != nil {
			log.Warn().Int("line", i+1).Err(err).Msg("pairing: authorized_keys option: line ignored")
			continue
		}
		ks.opt[string(k.Marshal())] = authKey{key: k, comment: comment, source: "option"}
	}
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pairing: read %s: %w", file, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, comment, err := parseKeyLine(line)
		if err != nil {
			log.Warn().Str("file", file).Int("line", n).Err(err).Msg("pairing: installed key ignored")
			continue
		}
		id := string(k.Marshal())
		if _, dup := ks.inst[id]; !dup {
			ks.inst[id] = authKey{key: k, comment: comment, source: "installed"}
			ks.order = append(ks.order, id)
		}
	}
	return ks, nil
}

// parseKeyLine parses one authorized_keys line without options.
func parseKeyLine(line string) (ssh.PublicKey, string, error) {
	k, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, "", fmt.Errorf("not a public key: %w", err)
	}
	if len(opts) > 0 {
		return nil, "", fmt.Errorf("key options (%s) are not supported by the pairing endpoint", strings.Join(opts, ","))
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, "", errors.New("more than one key on a line")
	}
	if strings.HasPrefix(k.Type(), "ssh-dss") {
		return nil, "", errors.New("DSA keys are not accepted")
	}
	if ck, ok := k.(ssh.CryptoPublicKey); ok {
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
			return nil, "", fmt.Errorf("RSA key of %d bits is too short", rk.N.BitLen())
		}
	}
	return k, comment, nil
}

// count is how many keys may log in (options and installed).
func (ks *keyStore) count() int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return len(ks.opt) + len(ks.inst)
}

func (ks *keyStore) lookup(k ssh.PublicKey) (authKey, bool) {
	id := string(k.Marshal())
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if a, ok := ks.opt[id]; ok {
		return a, true
	}
	a, ok := ks.inst[id]
	return a, ok
}

// install validates every line of input (authorized_keys format, as
// ssh-copy-id sends the .pub files) and appends the new keys to the
// store. Nothing is stored when a line is invalid.
func (ks *keyStore) install(input []byte) (added, present []authKey, err error) {
	var keys []authKey
	sc := bufio.NewScanner(bytes.NewReader(input))
	sc.Buffer(make([]byte, 0, maxKeyInput), maxKeyInput)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, comment, err := parseKeyLine(line)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", n, err)
		}
		keys = append(keys, authKey{key: k, comment: comment, source: "installed"})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if len(keys) == 0 {
		return nil, nil, errors.New("no public key on standard input")
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	inst := map[string]authKey{}
	for id, a := range ks.inst {
		inst[id] = a
	}
	order := append([]string(nil), ks.order...)
	for _, a := range keys {
		id := string(a.key.Marshal())
		if _, ok := inst[id]; ok {
			present = append(present, a)
			continue
		}
		if _, ok := ks.opt[id]; ok {
			present = append(present, a)
			continue
		}
		inst[id] = a
		order = append(order, id)
		added = append(added, a)
	}
	if len(order) > maxStoredKeys {
		return nil, nil, fmt.Errorf("too many installed keys (at most %d); remove some from %s", maxStoredKeys, ks.file)
	}
	if len(added) == 0 {
		return nil, present, nil
	}
	var b bytes.Buffer
	b.WriteString("# Keys installed with ssh-copy-id for the qnetd pairing endpoint.\n")
	for _, id := range order {
		a := inst[id]
		b.Write(bytes.TrimSpace(ssh.MarshalAuthorizedKey(a.key)))
		if c := sanitizeComment(a.comment); c != "" {
			b.WriteString(" " + c)
		}
		b.WriteByte('\n')
	}
	if err := pki.WriteFileAtomic(ks.file, b.Bytes(), 0o600); err != nil {
		return nil, nil, err
	}
	ks.inst, ks.order = inst, order
	return added, present, nil
}

// sanitizeComment keeps a key comment printable and on one line.
func sanitizeComment(c string) string {
	c = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, c)
	if len(c) > 200 {
		c = c[:200]
	}
	return strings.TrimSpace(c)
}
