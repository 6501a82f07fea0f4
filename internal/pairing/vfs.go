package pairing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"

	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/qnetd/certname"
)

// The virtual tree: a few directories, the public certificate files of
// PKIDir and the files in DataDir/ssh/tmp. Every path is resolved against
// this allowlist; nothing else on the host can be named.

type vkind int

const (
	vDir     vkind = iota
	vCert          // qnetd-cacert.crt or cluster-NAME.crt in PKIDir (read-only)
	vTmpFile       // a file in /tmp
)

type vnode struct {
	kind  vkind
	vpath string // cleaned virtual path
	real  string // real path of a file
}

// virtualDirs maps each virtual directory to its fixed children.
var virtualDirs = map[string][]string{
	"/":                   {"etc", "tmp"},
	"/etc":                {"corosync"},
	"/etc/corosync":       {"qnetd"},
	"/etc/corosync/qnetd": {"nssdb"},
	NSSDBPath:             nil, // listed from PKIDir
	TmpPath:               nil, // listed from the tmp dir
}

var (
	errNotAllowed = fmt.Errorf("%w: the pairing endpoint serves only %s/qnetd-cacert.crt, %s/cluster-*.crt, %s/%sCLUSTER and %s", os.ErrPermission, NSSDBPath, NSSDBPath, NSSDBPath, CRQPrefix, TmpPath)
	errReadOnly   = fmt.Errorf("%w: read-only: only %s and %s/%sCLUSTER are writable", os.ErrPermission, TmpPath, NSSDBPath, CRQPrefix)
	errTooBig     = fmt.Errorf("file larger than %d bytes: not a certificate request", MaxUpload)
	errTmpFull    = fmt.Errorf("%s holds %d files already; remove some", TmpPath, maxTmpFiles)
)

// cleanVirtual cleans a client path; relative paths are relative to "/".
func cleanVirtual(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", errNotAllowed
	}
	return path.Clean("/" + p), nil
}

// certName reports whether name is a served certificate file of PKIDir.
func certName(name string) bool {
	if name == pki.CAFile {
		return true
	}
	return strings.HasPrefix(name, "cluster-") && strings.HasSuffix(name, ".crt") &&
		len(name) > len("cluster-.crt") && validName(name)
}

// tmpName reports whether name can name a file in /tmp.
func tmpName(name string) bool {
	if len(name) == 0 || len(name) > 128 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("._+@-", r):
		default:
			return false
		}
	}
	return true
}

// CRQPrefix is the name crmsh gives a cluster's certificate request when it
// uploads it into the nssdb directory: CRQPrefix + cluster name.
const CRQPrefix = "qdevice-net-node.crq."

// crqName reports whether name is crmsh's upload name for a cluster's
// certificate request. Such a file is stored with the /tmp uploads (the
// same bounds apply) and shows in both directories.
func crqName(name string) bool {
	return strings.HasPrefix(name, CRQPrefix) && certname.Check(strings.TrimPrefix(name, CRQPrefix)) == nil && tmpName(name)
}

func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00") && name[0] != '.'
}

// resolve maps a virtual path onto the allowlist. Files that may exist
// (a certificate, a /tmp name) resolve whether or not they exist.
func (s *Server) resolve(p string) (vnode, error) {
	vp, err := cleanVirtual(p)
	if err != nil {
		return vnode{}, err
	}
	if _, ok := virtualDirs[vp]; ok {
		return vnode{kind: vDir, vpath: vp}, nil
	}
	dir, name := path.Split(vp)
	dir = path.Clean(dir)
	switch {
	case dir == NSSDBPath && certName(name):
		return vnode{kind: vCert, vpath: vp, real: filepath.Join(s.pkiDir, name)}, nil
	case dir == NSSDBPath && crqName(name):
		return vnode{kind: vTmpFile, vpath: vp, real: filepath.Join(s.tmpDir, name)}, nil
	case dir == TmpPath && tmpName(name):
		return vnode{kind: vTmpFile, vpath: vp, real: filepath.Join(s.tmpDir, name)}, nil
	}
	if strings.HasPrefix(vp, NSSDBPath+"/") || strings.HasPrefix(vp, TmpPath+"/") {
		return vnode{}, fmt.Errorf("%s: %w", vp, os.ErrNotExist)
	}
	return vnode{}, fmt.Errorf("%s: %w", vp, errNotAllowed)
}

// statReal is lstat of a served file: only regular files exist.
func statReal(real string) (os.FileInfo, error) {
	fi, err := os.Lstat(real)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", filepath.Base(real), os.ErrNotExist)
	}
	return fi, nil
}

// readServed reads a served file without following symbolic links.
func readServed(real string) ([]byte, os.FileInfo, error) {
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, fmt.Errorf("%s: %w", filepath.Base(real), os.ErrNotExist)
		}
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Base(real), os.ErrNotExist)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxServedFile+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxServedFile {
		return nil, nil, fmt.Errorf("%s: too large", filepath.Base(real))
	}
	return data, fi, nil
}

// fileInfo is a virtual directory entry.
type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return f.size }
func (f fileInfo) Mode() fs.FileMode  { return f.mode }
func (f fileInfo) ModTime() time.Time { return f.mtime }
func (f fileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fileInfo) Sys() any           { return nil }

func dirInfo(name string) fileInfo {
	return fileInfo{name: name, mode: fs.ModeDir | 0o755}
}

func (s *Server) stat(n vnode) (os.FileInfo, error) {
	if n.kind == vDir {
		mode := fs.ModeDir | 0o555
		if n.vpath == TmpPath {
			mode = fs.ModeDir | 0o700
		}
		return fileInfo{name: path.Base(n.vpath), mode: mode}, nil
	}
	fi, err := statReal(n.real)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.vpath, os.ErrNotExist)
	}
	mode := fs.FileMode(0o444)
	if n.kind == vTmpFile {
		mode = 0o600
	}
	return fileInfo{name: path.Base(n.vpath), size: fi.Size(), mode: mode, mtime: fi.ModTime()}, nil
}

// list returns a directory's entries.
func (s *Server) list(n vnode) ([]os.FileInfo, error) {
	if n.kind != vDir {
		return nil, fmt.Errorf("%s: not a directory", n.vpath)
	}
	var out []os.FileInfo
	var realDir string
	var ok func(string) bool
	var kind vkind
	switch n.vpath {
	case NSSDBPath:
		realDir, ok, kind = s.pkiDir, certName, vCert
	case TmpPath:
		realDir, ok, kind = s.tmpDir, tmpName, vTmpFile
	default:
		for _, c := range virtualDirs[n.vpath] {
			out = append(out, dirInfo(c))
		}
		return out, nil
	}
	ents, err := os.ReadDir(realDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: cannot list", n.vpath)
	}
	for _, e := range ents {
		if !ok(e.Name()) {
			continue
		}
		if fi, err := s.stat(vnode{kind: kind, vpath: path.Join(n.vpath, e.Name()), real: filepath.Join(realDir, e.Name())}); err == nil {
			out = append(out, fi)
		}
	}
	if n.vpath == NSSDBPath {
		ups, _ := os.ReadDir(s.tmpDir)
		for _, e := range ups {
			if !crqName(e.Name()) {
				continue
			}
			if fi, err := s.stat(vnode{kind: vTmpFile, vpath: path.Join(n.vpath, e.Name()), real: filepath.Join(s.tmpDir, e.Name())}); err == nil {
				out = append(out, fi)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// fetched logs a certificate download.
func (s *Server) fetched(n vnode, ip string) {
	name := path.Base(n.vpath)
	switch {
	case n.kind == vCert && name == pki.CAFile:
		s.log.Info().Str("addr", ip).Str("file", n.vpath).Msg("pairing: CA fetched")
	case n.kind == vCert:
		cluster := strings.TrimSuffix(strings.TrimPrefix(name, "cluster-"), ".crt")
		s.log.Info().Str("addr", ip).Str("file", n.vpath).Str("cluster", cluster).
			Msg("pairing: cluster certificate fetched")
	default:
		s.log.Info().Str("addr", ip).Str("file", n.vpath).Msg("pairing: file fetched")
	}
}

// cleanTmp removes old files and abandoned uploads from the tmp dir.
func (s *Server) cleanTmp() {
	ents, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return
	}
	now := time.Now()
	for _, e := range ents {
		fi, err := os.Lstat(filepath.Join(s.tmpDir, e.Name()))
		if err != nil {
			continue
		}
		if now.Sub(fi.ModTime()) > tmpMaxAge || (strings.HasPrefix(e.Name(), ".") && now.Sub(fi.ModTime()) > time.Hour) {
			_ = os.Remove(filepath.Join(s.tmpDir, e.Name()))
		}
	}
}

// tmpFull reports whether /tmp holds too many files for another upload.
func (s *Server) tmpFull(name string) bool {
	s.cleanTmp()
	ents, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return true
	}
	n := 0
	for _, e := range ents {
		if e.Name() != name {
			n++
		}
	}
	return n >= maxTmpFiles
}

// storeUpload writes a whole uploaded file to /tmp.
func (s *Server) storeUpload(name string, data []byte, ip string) error {
	if !tmpName(name) {
		return fmt.Errorf("%q: %w", name, errNotAllowed)
	}
	if len(data) > MaxUpload {
		return errTooBig
	}
	s.tmpMu.Lock()
	defer s.tmpMu.Unlock()
	if s.tmpFull(name) {
		return errTmpFull
	}
	if err := pki.WriteFileAtomic(filepath.Join(s.tmpDir, name), data, 0o600); err != nil {
		return errors.New("cannot store the file")
	}
	s.uploaded(name, len(data), ip)
	return nil
}

func (s *Server) uploaded(name string, size int, ip string) {
	s.log.Info().Str("addr", ip).Str("file", path.Join(TmpPath, name)).Int("bytes", size).
		Msg("pairing: certificate request uploaded")
}

// sftpFS serves the virtual tree over the sftp subsystem.
type sftpFS struct {
	s  *Server
	ip string
}

func (f *sftpFS) handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: f, FilePut: f, FileCmd: f, FileList: f}
}

func (f *sftpFS) refused(op, p string, err error) error {
	f.s.log.Warn().Str("addr", f.ip).Str("op", op).Str("path", p).Err(err).Msg("pairing: sftp request refused")
	return err
}

// Fileread opens a served file for reading.
func (f *sftpFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	n, err := f.s.resolve(r.Filepath)
	if err != nil {
		return nil, f.refused("read", r.Filepath, err)
	}
	if n.kind == vDir {
		return nil, fmt.Errorf("%s: is a directory", n.vpath)
	}
	data, _, err := readServed(n.real)
	if err != nil {
		return nil, f.refused("read", r.Filepath, fmt.Errorf("%s: %w", n.vpath, os.ErrNotExist))
	}
	f.s.fetched(n, f.ip)
	return bytes.NewReader(data), nil
}

// Filewrite opens a new file in /tmp; it appears under its name once
// complete (on close).
func (f *sftpFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	n, err := f.s.resolve(r.Filepath)
	if err != nil {
		return nil, f.refused("write", r.Filepath, err)
	}
	if n.kind != vTmpFile {
		return nil, f.refused("write", r.Filepath, errReadOnly)
	}
	name := path.Base(n.vpath)
	f.s.tmpMu.Lock()
	full := f.s.tmpFull(name)
	var tmp *os.File
	if !full {
		tmp, err = os.CreateTemp(f.s.tmpDir, ".upload-*")
	}
	f.s.tmpMu.Unlock()
	if full {
		return nil, f.refused("write", r.Filepath, errTmpFull)
	}
	if err != nil {
		return nil, errors.New("cannot create the file")
	}
	return &upload{s: f.s, f: tmp, name: name, ip: f.ip}, nil
}

// upload is a file being written over sftp.
type upload struct {
	s      *Server
	f      *os.File
	name   string
	ip     string
	mu     sync.Mutex
	size   int64
	failed bool
	done   bool
}

func (u *upload) WriteAt(p []byte, off int64) (int, error) {
	u.mu.Lock()
	if u.failed || u.done {
		u.mu.Unlock()
		return 0, errTooBig
	}
	if off < 0 || off+int64(len(p)) > MaxUpload {
		u.failed = true
		u.mu.Unlock()
		u.s.log.Warn().Str("addr", u.ip).Str("file", path.Join(TmpPath, u.name)).
			Int("max_bytes", MaxUpload).Msg("pairing: upload refused: too large")
		return 0, errTooBig
	}
	u.size = max(u.size, off+int64(len(p)))
	u.mu.Unlock()
	return u.f.WriteAt(p, off)
}

// TransferError is called when the session ends with the file open.
func (u *upload) TransferError(error) {
	u.mu.Lock()
	u.failed = true
	u.mu.Unlock()
}

func (u *upload) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil
	}
	u.done = true
	tmp := u.f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := u.f.Sync(); err != nil {
		u.failed = true
	}
	if err := u.f.Close(); err != nil {
		u.failed = true
	}
	if u.failed {
		return errTooBig
	}
	if err := os.Rename(tmp, filepath.Join(u.s.tmpDir, u.name)); err != nil {
		return errors.New("cannot store the file")
	}
	u.s.uploaded(u.name, int(u.size), u.ip)
	return nil
}

// Filecmd: setstat on /tmp files is accepted and ignored, removing a /tmp
// file is allowed; everything else is refused.
func (f *sftpFS) Filecmd(r *sftp.Request) error {
	n, err := f.s.resolve(r.Filepath)
	if err != nil {
		return f.refused(strings.ToLower(r.Method), r.Filepath, err)
	}
	switch r.Method {
	case "Setstat":
		if n.kind == vTmpFile {
			return nil
		}
	case "Remove":
		if n.kind == vTmpFile {
			if _, err := statReal(n.real); err != nil {
				return fmt.Errorf("%s: %w", n.vpath, os.ErrNotExist)
			}
			f.s.tmpMu.Lock()
			defer f.s.tmpMu.Unlock()
			return os.Remove(n.real)
		}
	}
	return f.refused(strings.ToLower(r.Method), r.Filepath, errReadOnly)
}

// Filelist answers List and Stat; Readlink has nothing to read.
func (f *sftpFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	n, err := f.s.resolve(r.Filepath)
	if err != nil {
		return nil, err
	}
	switch r.Method {
	case "List":
		l, err := f.s.list(n)
		if err != nil {
			return nil, err
		}
		return listerAt(l), nil
	case "Stat", "Lstat":
		fi, err := f.s.stat(n)
		if err != nil {
			return nil, err
		}
		return listerAt{fi}, nil
	}
	return nil, f.refused(strings.ToLower(r.Method), r.Filepath, errNotAllowed)
}

// Lstat is Stat: no served file is a link.
func (f *sftpFS) Lstat(r *sftp.Request) (sftp.ListerAt, error) { return f.Filelist(r) }

// Readlink: there are no links.
func (f *sftpFS) Readlink(p string) (string, error) {
	return "", f.refused("readlink", p, errNotAllowed)
}

// RealPath cleans a path against "/".
func (f *sftpFS) RealPath(p string) (string, error) { return cleanVirtual(p) }

type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}
