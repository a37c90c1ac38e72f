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
	"net"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/shlex"

	"github.com/kmsctl/kmsctl/tasks"
)

// fakeConn is an in-memory host for tests: a small file system, a few
// emulated commands (stat, chmod, chown, mkdir, rm, touch, find, systemctl,
// true) and scripted handlers for anything else.
type fakeConn struct {
	t    testing.TB
	name string

	mu          sync.Mutex
	files       map[string]*fakeFile
	units       map[string]*fakeUnit
	ports       map[string]string // addr as seen from the host → real 127.0.0.1 address
	handlers    []fakeHandler
	calls       []string
	stdins      []string
	unreachable bool
	closed      int

	running, maxRunning atomic.Int32
	gate                chan struct{} // when set, Run waits on it (or ctx)
}

type fakeFile struct {
	data         []byte
	mode         fs.FileMode
	dir          bool
	owner, group string
}

type fakeUnit struct {
	active, enabled bool
	failStart       bool
	masked          bool
}

type fakeHandler struct {
	match func(cmd string) bool
	fn    func(ctx context.Context, cmd, stdin string) (stdout, stderr string, rc int, err error)
}

type exitError struct{ code int }

func (e exitError) Error() string   { return fmt.Sprintf("exit status %d", e.code) }
func (e exitError) ExitStatus() int { return e.code }

var errFakeUnreachable = &tasks.UnreachableError{Err: errors.New("fake: connection refused")}

func newFake(t testing.TB, name string) *fakeConn {
	f := &fakeConn{t: t, name: name, files: map[string]*fakeFile{"/": {dir: true, mode: 0o755, owner: "root", group: "root"}},
		units: map[string]*fakeUnit{}, ports: map[string]string{}}
	for _, d := range []string{"/etc/default", "/etc/minkms", "/mnt", "/opt", "/tmp", "/usr/local/bin"} {
		f.mkdirAll(d)
	}
	return f
}

// on adds a handler for commands with the given prefix.
func (f *fakeConn) on(prefix string, fn func(ctx context.Context, cmd, stdin string) (string, string, int, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers = append(f.handlers, fakeHandler{match: func(c string) bool { return strings.HasPrefix(c, prefix) }, fn: fn})
}

// reply makes commands with the prefix print stdout and exit rc.
func (f *fakeConn) reply(prefix, stdout string, rc int) {
	f.on(prefix, func(context.Context, string, string) (string, string, int, error) { return stdout, "", rc, nil })
}

func (f *fakeConn) putFile(p, data string, mode fs.FileMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mkdirAll(path.Dir(p))
	f.files[p] = &fakeFile{data: []byte(data), mode: mode, owner: "root", group: "root"}
}

func (f *fakeConn) file(p string) (*fakeFile, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, ok := f.files[p]
	if !ok {
		return nil, false
	}
	c := *ff
	return &c, true
}

func (f *fakeConn) mkdirAll(p string) {
	for d := p; d != "/" && d != "."; d = path.Dir(d) {
		if _, ok := f.files[d]; !ok {
			f.files[d] = &fakeFile{dir: true, mode: 0o755, owner: "root", group: "root"}
		}
	}
}

func (f *fakeConn) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeConn) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	if f.unreachable {
		return errFakeUnreachable
	}
	return nil
}

// snapshot returns a copy of the file system and units for comparing.
func (f *fakeConn) snapshot() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		ff := f.files[k]
		fmt.Fprintf(&b, "%s dir=%v mode=%o %s:%s %q\n", k, ff.dir, ff.mode, ff.owner, ff.group, ff.data)
	}
	var units []string
	for k := range f.units {
		units = append(units, k)
	}
	sort.Strings(units)
	for _, k := range units {
		fmt.Fprintf(&b, "unit %s %+v\n", k, *f.units[k])
	}
	return b.String()
}

func (f *fakeConn) Host() string { return f.name }

func (f *fakeConn) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := f.record(cmd); err != nil {
		return err
	}
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxRunning.Load()
		if n <= m || f.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	var in []byte
	if stdin != nil {
		var err error
		if in, err = io.ReadAll(stdin); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.stdins = append(f.stdins, string(in))
	gate := f.gate
	var h *fakeHandler
	for i := len(f.handlers) - 1; i >= 0; i-- {
		if f.handlers[i].match(cmd) {
			h = &f.handlers[i]
			break
		}
	}
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var out, errOut string
	var rc int
	var err error
	if h != nil {
		out, errOut, rc, err = h.fn(ctx, cmd, string(in))
	} else {
		out, errOut, rc = f.emulate(cmd)
	}
	if err != nil {
		return err
	}
	io.WriteString(stdout, out)
	io.WriteString(stderr, errOut)
	if rc != 0 {
		return exitError{rc}
	}
	return nil
}

// emulate runs the few commands the modules use against the fake state.
func (f *fakeConn) emulate(cmd string) (string, string, int) {
	w, err := shlex.Split(cmd)
	if err != nil || len(w) == 0 {
		return "", "bad command", 2
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	last := w[len(w)-1]
	switch w[0] {
	case "true":
		return "", "", 0
	case "false":
		return "", "", 1
	case "echo":
		return strings.Join(w[1:], " ") + "\n", "", 0
	case "stat":
		ff, ok := f.files[last]
		if !ok {
			return "", "stat: cannot statx: No such file or directory", 1
		}
		return ff.owner + ":" + ff.group + "\n", "", 0
	case "chmod":
		ff, ok := f.files[last]
		if !ok {
			return "", "chmod: No such file", 1
		}
		m, _, _ := tasks.Args{"mode": w[1]}.Mode("mode")
		ff.mode = m
		return "", "", 0
	case "chown", "chgrp":
		recurse := w[1] == "-R"
		spec := w[1]
		if recurse {
			spec = w[2]
		}
		if _, ok := f.files[last]; !ok {
			return "", "chown: No such file", 1
		}
		for p, ff := range f.files {
			if p == last || (recurse && strings.HasPrefix(p, last+"/")) {
				if w[0] == "chgrp" {
					ff.group = spec
					continue
				}
				u, g, hasG := strings.Cut(spec, ":")
				ff.owner = u
				if hasG {
					ff.group = g
				}
			}
		}
		return "", "", 0
	case "mv": // mv -f -- SRC DST
		src, dst := w[len(w)-2], w[len(w)-1]
		ff, ok := f.files[src]
		if !ok {
			return "", "mv: cannot stat " + src, 1
		}
		f.files[dst] = ff
		delete(f.files, src)
		return "", "", 0
	case "mkdir":
		f.mkdirAll(last)
		return "", "", 0
	case "touch":
		if _, ok := f.files[last]; !ok {
			f.files[last] = &fakeFile{mode: 0o644, owner: "root", group: "root"}
		}
		return "", "", 0
	case "rm":
		for p := range f.files {
			if p == last || strings.HasPrefix(p, last+"/") {
				delete(f.files, p)
			}
		}
		return "", "", 0
	case "find": // find DIR \( ! -user U [-o ! -group G] \) -print -quit
		var user, group string
		for i := range w {
			if w[i] == "-user" {
				user = w[i+1]
			}
			if w[i] == "-group" {
				group = w[i+1]
			}
		}
		for p, ff := range f.files {
			if p == w[1] || strings.HasPrefix(p, w[1]+"/") {
				if (user != "" && ff.owner != user) || (group != "" && ff.group != group) {
					return p + "\n", "", 0
				}
			}
		}
		return "", "", 0
	case "systemctl":
		return f.systemctl(w[1:])
	}
	return "", "", 0 // any other command succeeds silently
}

func (f *fakeConn) systemctl(w []string) (string, string, int) {
	verb := w[0]
	if verb == "daemon-reload" {
		return "", "", 0
	}
	name := w[len(w)-1]
	u, ok := f.units[name]
	if verb == "show" {
		if !ok {
			return "LoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\n", "", 0
		}
		active, sub, file := "inactive", "dead", "disabled"
		if u.active {
			active, sub = "active", "running"
		} else if u.failStart {
			active, sub = "failed", "failed"
		}
		if u.enabled {
			file = "enabled"
		}
		if u.masked {
			file = "masked"
		}
		return fmt.Sprintf("LoadState=loaded\nActiveState=%s\nSubState=%s\nUnitFileState=%s\n", active, sub, file), "", 0
	}
	if !ok {
		return "", "Unit " + name + " not found.", 5
	}
	switch verb {
	case "start", "restart":
		if u.failStart {
			u.active = false
			return "", "Job for " + name + " failed.", 1
		}
		u.active = true
	case "reload":
		if !u.active {
			return "", "unit not active", 1
		}
	case "stop":
		u.active = false
	case "enable":
		u.enabled = true
	case "disable":
		u.enabled = false
	default:
		return "", "unknown verb", 1
	}
	return "", "", 0
}

func (f *fakeConn) Upload(ctx context.Context, p string, src io.Reader, known string, perm fs.FileMode, owner string) (string, error) {
	if err := f.record("upload " + p); err != nil {
		return "", err
	}
	data, err := io.ReadAll(src)
	if err != nil {
		return "", err
	}
	if s := sha256.Sum256(data); known != "" && strings.ToLower(known) != hex.EncodeToString(s[:]) {
		return "", fmt.Errorf("upload %s: checksum mismatch: declared %s, got %x", p, known, s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.files[path.Dir(p)]; !ok || !d.dir {
		return "", fmt.Errorf("upload %s: %w", p, fs.ErrNotExist)
	}
	ff := &fakeFile{data: data, mode: perm, owner: "root", group: "root"}
	if old, ok := f.files[p]; ok {
		ff.owner, ff.group = old.owner, old.group
	}
	if owner != "" {
		u, g, hasG := strings.Cut(owner, ":")
		ff.owner = u
		if hasG {
			ff.group = g
		}
	}
	f.files[p] = ff
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:]), nil
}

func (f *fakeConn) Download(ctx context.Context, p string, dst io.Writer) error {
	if err := f.record("download " + p); err != nil {
		return err
	}
	ff, ok := f.file(p)
	if !ok || ff.dir {
		return fmt.Errorf("download %s: %w", p, fs.ErrNotExist)
	}
	_, err := dst.Write(ff.data)
	return err
}

type fakeInfo struct {
	name string
	f    fakeFile
}

func (i fakeInfo) Name() string { return path.Base(i.name) }
func (i fakeInfo) Size() int64  { return int64(len(i.f.data)) }
func (i fakeInfo) Mode() fs.FileMode {
	if i.f.dir {
		return i.f.mode | fs.ModeDir
	}
	return i.f.mode
}
func (i fakeInfo) ModTime() time.Time { return time.Time{} }
func (i fakeInfo) IsDir() bool        { return i.f.dir }
func (i fakeInfo) Sys() any           { return nil }

func (f *fakeConn) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	if err := f.record("stat " + p); err != nil {
		return nil, err
	}
	ff, ok := f.file(p)
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
	return fakeInfo{name: p, f: *ff}, nil
}

func (f *fakeConn) Remove(ctx context.Context, p string) error {
	if err := f.record("remove " + p); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.files[p]; !ok {
		return &fs.PathError{Op: "remove", Path: p, Err: fs.ErrNotExist}
	}
	delete(f.files, p)
	return nil
}

func (f *fakeConn) Checksum(ctx context.Context, p string) (string, error) {
	if err := f.record("checksum " + p); err != nil {
		return "", err
	}
	ff, ok := f.file(p)
	if !ok {
		return "", &fs.PathError{Op: "checksum", Path: p, Err: fs.ErrNotExist}
	}
	s := sha256.Sum256(ff.data)
	return hex.EncodeToString(s[:]), nil
}

func (f *fakeConn) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if err := f.record("dial " + addr); err != nil {
		return nil, err
	}
	f.mu.Lock()
	real, ok := f.ports[addr]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", real)
}

func (f *fakeConn) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

var _ tasks.Conn = (*fakeConn)(nil)

// testEnv builds an Env for calling a module directly.
func testEnv(c *fakeConn, args map[string]any) *tasks.Env {
	return &tasks.Env{Conn: c, Host: tasks.Host{Name: c.name}, Args: args, Vars: map[string]any{}}
}

// sentinel is a fake secret that must never appear in output.
const sentinel = "S3NT1NEL-hsm:aes256:c2VjcmV0LXNlY3JldC1zZWNyZXQ="

var _ = bytes.NewReader
