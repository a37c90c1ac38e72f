package fake

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// File is one entry of the in-memory file system: a regular file or a
// directory.
type File struct {
	Content string
	Mode    fs.FileMode // permission and special bits (never fs.ModeDir: see Dir)
	Owner   string      // user name
	Group   string      // group name
	ModTime time.Time
	Dir     bool // a directory; Content is empty
}

// skeleton is the directory tree New creates: the places kmsctl writes to on
// a Key Manager host, owned by root.
var skeleton = []string{
	"/etc/default", "/etc/minkms", "/etc/systemd/system", "/home", "/mnt", "/opt",
	"/root", "/srv", "/tmp", "/usr/local/bin", "/var/lib",
}

// Errors of file system operations, worded as the C library words them.
var (
	errNoEnt    = &fsError{"No such file or directory", fs.ErrNotExist}
	errNotDir   = &fsError{"Not a directory", nil}
	errIsDir    = &fsError{"Is a directory", nil}
	errExist    = &fsError{"File exists", fs.ErrExist}
	errNotEmpty = &fsError{"Directory not empty", nil}
)

// fsError is an errno: its text is strerror's, and it matches the fs error
// of the same meaning.
type fsError struct {
	msg string
	is  error
}

func (e *fsError) Error() string        { return e.msg }
func (e *fsError) Is(target error) bool { return e.is != nil && target == e.is }

// SetUser sets the user and group the fake's commands and uploads run as:
// the owner of what they create. The default is root:root.
func (c *Conn) SetUser(user, group string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user, c.group = user, group
}

// SetFile creates or replaces the regular file at p, creating missing parent
// directories. A new file belongs to the fake's user (SetUser); a replaced
// one keeps its owner and group.
func (c *Conn) SetFile(p, content string, mode fs.FileMode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p = path.Clean(p)
	c.mustMkdirAll(path.Dir(p))
	f := &File{Content: content, Mode: mode, Owner: c.user, Group: c.group, ModTime: time.Now()}
	if old, ok := c.files[p]; ok {
		f.Owner, f.Group = old.Owner, old.Group
	}
	c.files[p] = f
}

// MkdirAll creates the directory p and its missing parents (mode 0755,
// owned by the fake's user), as `mkdir -p` does. It fails the test when a
// regular file is in the way.
func (c *Conn) MkdirAll(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mustMkdirAll(path.Clean(p))
}

func (c *Conn) mustMkdirAll(p string) {
	if err := c.mkdirAll(p, 0o755); err != nil {
		c.t.Fatalf("fake %s: mkdir -p %s: %v", c.host, p, err)
	}
}

// SetFileOwner sets the owner ("user" or "user:group", as chown takes it) of
// the existing file or directory at p.
func (c *Conn) SetFileOwner(p, owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.files[path.Clean(p)]; ok {
		f.Owner, f.Group = chownSpec(owner, f.Owner, f.Group)
	}
}

// DeleteFile removes p from the in-memory file system, if present (a
// directory with everything below it).
func (c *Conn) DeleteFile(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeAll(path.Clean(p))
}

// File returns the file or directory at p and whether it exists.
func (c *Conn) File(p string) (File, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.files[path.Clean(p)]
	if !ok {
		return File{}, false
	}
	return *f, true
}

// Files returns a copy of the regular files of the in-memory file system.
func (c *Conn) Files() map[string]File {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]File{}
	for k, f := range c.files {
		if !f.Dir {
			m[k] = *f
		}
	}
	return m
}

// Paths returns the paths of the regular files, sorted.
func (c *Conn) Paths() []string { return c.paths(false) }

// Dirs returns the paths of the directories, sorted.
func (c *Conn) Dirs() []string { return c.paths(true) }

func (c *Conn) paths(dirs bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []string
	for p, f := range c.files {
		if f.Dir == dirs {
			ps = append(ps, p)
		}
	}
	sort.Strings(ps)
	return ps
}

// Snapshot describes the whole state of the host (files with their content,
// directories, systemd units) in a stable text, for tests that check that
// nothing changed. Modification times are left out.
func (c *Conn) Snapshot() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	ps := make([]string, 0, len(c.files))
	for p := range c.files {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	for _, p := range ps {
		f := c.files[p]
		if f.Dir {
			fmt.Fprintf(&b, "dir  %s %s %s:%s\n", p, modeString(f.Mode), f.Owner, f.Group)
		} else {
			fmt.Fprintf(&b, "file %s %s %s:%s %q\n", p, modeString(f.Mode), f.Owner, f.Group, f.Content)
		}
	}
	names := make([]string, 0, len(c.units))
	for n := range c.units {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "unit %s %+v\n", n, *c.units[n])
	}
	return b.String()
}

// modeString formats permission and special bits as four octal digits.
func modeString(m fs.FileMode) string { return fmt.Sprintf("%04o", unixMode(m)) }

// unixMode returns the permission and special bits as a Unix mode.
func unixMode(m fs.FileMode) uint32 {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return n
}

// fileMode is the inverse of unixMode.
func fileMode(n uint32) fs.FileMode {
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// chownSpec applies a chown owner spec ("user", "user:group", ":group") to
// the current user and group.
func chownSpec(spec, user, group string) (string, string) {
	u, g, hasGroup := strings.Cut(spec, ":")
	if u != "" {
		user = u
	}
	if hasGroup && g != "" {
		group = g
	}
	return user, group
}

// The helpers below are called with c.mu held; p is clean and absolute.

// lookupPath returns the entry at p, or errNoEnt, or errNotDir when a
// parent is a regular file.
func (c *Conn) lookupPath(p string) (*File, error) {
	if f, ok := c.files[p]; ok {
		return f, nil
	}
	for d := path.Dir(p); ; d = path.Dir(d) {
		if f, ok := c.files[d]; ok {
			if !f.Dir {
				return nil, errNotDir
			}
			return nil, errNoEnt
		}
		if d == "/" {
			return nil, errNoEnt
		}
	}
}

// checkParent reports whether p can be created: its parent is an existing
// directory.
func (c *Conn) checkParent(p string) error {
	d, err := c.lookupPath(path.Dir(p))
	if err != nil {
		return err
	}
	if !d.Dir {
		return errNotDir
	}
	return nil
}

// mkdirAll creates p and its missing parents with mode perm.
func (c *Conn) mkdirAll(p string, perm fs.FileMode) error {
	if p == "/" {
		return nil
	}
	if f, ok := c.files[p]; ok {
		if !f.Dir {
			return errExist
		}
		return nil
	}
	if err := c.mkdirAll(path.Dir(p), perm); err != nil {
		if err == errExist {
			err = errNotDir
		}
		return err
	}
	c.files[p] = &File{Mode: perm, Owner: c.user, Group: c.group, ModTime: time.Now(), Dir: true}
	return nil
}

// removeStaleTemps deletes the temp files and private temp directories
// that interrupted uploads of p left in p's directory (see Conn.Upload); a
// directory in such a temp directory fails the removal, as rmdir would.
func (c *Conn) removeStaleTemps(p string) error {
	dir, prefix := path.Dir(p), "."+path.Base(p)+".kmsctl-tmp-"
	for _, name := range c.children(dir) {
		suffix, ok := strings.CutPrefix(name, prefix)
		q := path.Join(dir, name)
		switch f := c.files[q]; {
		case !ok:
		case !f.Dir:
			delete(c.files, q)
		case isRandomSuffix(suffix):
			for _, n := range c.children(q) {
				if c.files[path.Join(q, n)].Dir {
					return fmt.Errorf("remove stale temp directory %s: %w", q, errNotEmpty)
				}
			}
			c.removeAll(q)
		}
	}
	return nil
}

// isRandomSuffix reports whether s is 16 lower-case hex digits, the random
// part of an upload's temp name.
func isRandomSuffix(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// removeAll deletes p and everything below it.
func (c *Conn) removeAll(p string) {
	for q := range c.files {
		if q != "/" && (q == p || strings.HasPrefix(q, p+"/") || p == "/") {
			delete(c.files, q)
		}
	}
}

// children returns the names of the entries directly in directory p, sorted.
func (c *Conn) children(p string) []string {
	var names []string
	for q := range c.files {
		if q != p && path.Dir(q) == p {
			names = append(names, path.Base(q))
		}
	}
	sort.Strings(names)
	return names
}

// move renames the tree at src to dst (which must not exist).
func (c *Conn) move(src, dst string) {
	for q, f := range c.files {
		if q == src || strings.HasPrefix(q, src+"/") {
			delete(c.files, q)
			c.files[dst+strings.TrimPrefix(q, src)] = f
		}
	}
}

// fileInfo is the fs.FileInfo of an in-memory entry.
type fileInfo struct {
	name string
	f    File
}

func (fi fileInfo) Name() string { return fi.name }
func (fi fileInfo) Size() int64 {
	if fi.f.Dir {
		return 4096
	}
	return int64(len(fi.f.Content))
}
func (fi fileInfo) Mode() fs.FileMode {
	if fi.f.Dir {
		return fi.f.Mode | fs.ModeDir
	}
	return fi.f.Mode
}
func (fi fileInfo) ModTime() time.Time { return fi.f.ModTime }
func (fi fileInfo) IsDir() bool        { return fi.f.Dir }
func (fi fileInfo) Sys() any           { return fi.f }
