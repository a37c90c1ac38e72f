package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"reflect"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/tasks"
)

// payload is file content to put on a host: in memory (content,
// rendered templates) or streamed from a local file (copy src), so a large
// binary is never held in memory once per host.
type payload struct {
	fsys fs.FS  // where name is, for local files
	name string // local file, for messages ("" for content)
	size int64
	sum  string // hex sha256
	data []byte // in-memory content, or nil
	// secret says the content holds or was computed from a secret
	// (tasks.Env.Secret): it is written 0600 and never diffed.
	secret bool
	// stream opens a file on another host (copy's from_host), streamed
	// from it through kmsctl's memory: nil for local and in-memory
	// content.
	stream func() io.ReadCloser
}

// peerPayload describes the file src on the host from (copy's from_host):
// its size and sha256 as that host reports them, and a stream of its
// content that is never written to the control machine's disk. The sum
// goes along with the upload, so what lands on the task's host must be
// what from holds: a stream corrupted on the way, or a file that changed
// since, fails the upload and leaves dest as it was.
func peerPayload(ctx context.Context, env *tasks.Env, from, src string) (payload, error) {
	if env.Peer == nil {
		return payload{}, fmt.Errorf("from_host %s: this run offers no connection to another host", from)
	}
	if !path.IsAbs(src) {
		return payload{}, fmt.Errorf("src %q must be an absolute path on %s (from_host)", src, from)
	}
	c, err := env.Peer(ctx, from)
	if err != nil {
		return payload{}, err
	}
	shown := from + ":" + src
	fi, err := c.Stat(ctx, src)
	if err != nil {
		return payload{}, fmt.Errorf("stat %s: %w", shown, err)
	}
	if fi.IsDir() {
		return payload{}, fmt.Errorf("%s is a directory: from_host copies one file", shown)
	}
	sum, err := c.Checksum(ctx, src)
	if err != nil {
		return payload{}, fmt.Errorf("checksum %s: %w", shown, err)
	}
	return payload{name: shown, size: fi.Size(), sum: sum, stream: func() io.ReadCloser {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(c.Download(ctx, src, pw)) }()
		return pr
	}}, nil
}

func memPayload(b []byte) payload {
	return payload{size: int64(len(b)), sum: sha256Hex(b), data: b}
}

// sumKey identifies a local file version for the run's checksum cache.
type sumKey struct {
	fsys  fs.FS
	name  string
	size  int64
	mtime time.Time
}

// filePayload describes a local file, resolved like Env.ReadLocal.
func filePayload(env *tasks.Env, name string) (payload, error) {
	fsys, fname := env.LocalFS(name)
	return fsPayload(env, fsys, fname, name)
}

// fsPayload describes the file name in fsys, hashing it once per run and
// file version (size and modification time). Messages name the file as
// shown (the path as the playbook gives it).
func fsPayload(env *tasks.Env, fsys fs.FS, name, shown string) (payload, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return payload{}, fmt.Errorf("open local file: %w", asGiven(err, shown))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return payload{}, fmt.Errorf("stat local file: %w", asGiven(err, shown))
	}
	if fi.IsDir() {
		return payload{}, fmt.Errorf("local file %s is a directory", shown)
	}
	p := payload{fsys: fsys, name: name, size: fi.Size()}
	key := sumKey{fsys: fsys, name: name, size: fi.Size(), mtime: fi.ModTime()}
	// A file system that cannot be a map key (fstest.MapFS) is not cached.
	cache := env.Memo
	if !reflect.TypeOf(fsys).Comparable() {
		cache = nil
	}
	hashFile := func() (string, error) {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return "", fmt.Errorf("read local file: %w", asGiven(err, shown))
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if cache == nil {
		p.sum, err = hashFile()
		return p, err
	}
	// Hosts that ask at once wait for one hash instead of each hashing.
	e, _ := cache.LoadOrStore(key, &sumEntry{})
	entry := e.(*sumEntry)
	entry.once.Do(func() { entry.sum, entry.err = hashFile() })
	p.sum = entry.sum
	return p, entry.err
}

// sumEntry is one file version's hash in the run's checksum cache,
// computed once however many hosts ask for it at the same time.
type sumEntry struct {
	once sync.Once
	sum  string
	err  error
}

// open returns a reader of the content.
func (p payload) open() (io.ReadCloser, error) {
	if p.stream != nil {
		return p.stream(), nil
	}
	if p.fsys == nil {
		return io.NopCloser(bytes.NewReader(p.data)), nil
	}
	f, err := p.fsys.Open(p.name)
	if err != nil {
		return nil, fmt.Errorf("open local file: %w", err)
	}
	return f, nil
}

// upload puts the content at dest through c. The sha256 computed when the
// payload was described (once per file version and run) goes along as the
// content's known sum: Conn.Upload does not hash it again for every host,
// and checks what landed against it, so a local file that changed since
// fails the upload and leaves dest unchanged.
func (p payload) upload(ctx context.Context, c tasks.Conn, dest string, perm fs.FileMode, owner string) error {
	rc, err := p.open()
	if err != nil {
		return err
	}
	sum, err := c.Upload(ctx, dest, rc, p.sum, perm, owner)
	cerr := rc.Close()
	if err != nil && p.stream != nil {
		return fmt.Errorf("upload %s from %s (sha256 %s there): %w", dest, p.name, p.sum, err)
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", dest, err)
	}
	if cerr != nil {
		return fmt.Errorf("read local file %s: %w", p.name, cerr)
	}
	if sum != p.sum {
		return fmt.Errorf("upload %s: checksum mismatch: planned %s, landed %s (did the local file change?)", dest, p.sum, sum)
	}
	return nil
}

// bytes returns the whole content (for diffs of small files).
func (p payload) bytes() ([]byte, error) {
	if p.fsys == nil {
		return p.data, nil
	}
	rc, err := p.open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read local file %s: %w", p.name, err)
	}
	return b, nil
}

// asGiven returns err with the path of a *fs.PathError replaced by name,
// the path as the playbook gives it ("/tmp/x", where the file system of
// Env.LocalFS knows it as "tmp/x").
func asGiven(err error, name string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: name, Err: pe.Err}
	}
	return err
}
