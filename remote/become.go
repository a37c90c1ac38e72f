package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BecomeError reports that sudo refused to run a command without a
// password (or at all) for the login user.
type BecomeError struct {
	Host   string
	User   string // the become user
	Reason string // sudo's message
	Err    error
}

func (e *BecomeError) Error() string {
	return fmt.Sprintf("become %s on %s: %s: kmsctl runs sudo -n and never types a password; allow the login user to run commands as %s without a password (NOPASSWD in sudoers), or log in as that user and do not use become", e.User, e.Host, e.Reason, e.User)
}

// Unwrap returns the underlying *ExitError.
func (e *BecomeError) Unwrap() error { return e.Err }

// BecomeFailed reports true: the command never ran because sudo refused.
// Callers that cannot import this package (tasks) detect a BecomeError by
// this method before treating the wrapped exit status as the command's.
func (e *BecomeError) BecomeFailed() bool { return true }

// Become returns a Conn that runs every command as user through
// `sudo -n [-u USER] -- sh -c CMD` ("" or "root" means root, without -u).
// File operations are done as that user too: an upload streams through the
// stdin of a sudo command into a temp file next to the target, with the
// same temp file → fsync → sha256 check → chown/chmod → rename steps as
// (*Client).Upload, and is never staged anywhere else (see Upload).
func Become(c Conn, user string) Conn {
	if user == "" {
		user = "root"
	}
	return &becomeConn{inner: c, user: user}
}

type becomeConn struct {
	inner Conn
	user  string
}

// wrap turns cmd into the sudo command line.
func (b *becomeConn) wrap(cmd string) string {
	if b.user == "root" {
		return "sudo -n -- sh -c " + Quote(cmd)
	}
	return "sudo -n -u " + Quote(b.user) + " -- sh -c " + Quote(cmd)
}

func (b *becomeConn) Host() string { return b.inner.Host() }
func (b *becomeConn) Close() error { return b.inner.Close() }

// DialTCP opens the tunnel as the login user (sudo does not apply).
func (b *becomeConn) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	return b.inner.DialTCP(ctx, addr)
}

// dataRunner is implemented by Conns (Redact) that mask command output:
// runData runs a command whose stdout is file data, passed unmasked.
type dataRunner interface {
	runData(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error
}

// Run runs cmd as the become user.
func (b *becomeConn) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	return b.run(ctx, cmd, stdin, stdout, stderr, false)
}

// run runs cmd as the become user; data says stdout is file data (see
// dataRunner).
func (b *becomeConn) run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer, data bool) error {
	inner := b.inner.Run
	if d, ok := b.inner.(dataRunner); ok && data {
		inner = d.runData
	}
	err := inner(ctx, b.wrap(cmd), stdin, stdout, stderr)
	var xe *ExitError
	if errors.As(err, &xe) && xe.Status == 1 {
		for _, m := range []string{"a password is required", "a terminal is required", "is not in the sudoers file", "is not allowed to run sudo"} {
			if strings.Contains(xe.Stderr, m) {
				return &BecomeError{Host: b.Host(), User: b.user, Reason: "sudo: " + m, Err: err}
			}
		}
	}
	return err
}

// Upload writes src to target as the become user, root included: src is
// streamed through the stdin of a sudo command into a temp file that the
// become user creates next to target (mktemp: an unpredictable name,
// created exclusively, 0600 under umask 077), fsynced and hashed there; when
// its sha256 matches src's (known, when the caller knows it in advance), a second
// sudo command sets owner and mode and renames it over target, otherwise
// the temp file is removed. target is untouched on failure, and the temp
// file (or, of a plain upload, directory) of an upload of target that was
// cut off is removed by the next upload of target.
//
// No copy is ever staged elsewhere, such as in /tmp as the login user: a
// name there can be predicted (and pre-created, or replaced by a symlink)
// by any local user, and a file that SFTP creates with the server's umask
// is readable by them until its mode is set, long enough to open it. The
// data exists only in a 0600 file of the become user in the directory that
// will hold it: a user who cannot write to that directory can neither
// predict, pre-create, replace nor read it.
func (b *becomeConn) Upload(ctx context.Context, target string, src io.Reader, known string, perm fs.FileMode, owner string) (string, error) {
	if !strings.HasPrefix(target, "/") {
		return "", fmt.Errorf("upload %s on %s: path must be absolute", target, b.Host())
	}
	var write strings.Builder
	write.WriteString("set -e\numask 077\n")
	write.WriteString("prefix=" + Quote(tempPrefix(target)) + "\n")
	// The temp files, and the private temp directories of plain uploads
	// (Client.Upload), that interrupted uploads of target left.
	write.WriteString(`rm -rf -- "$prefix"*` + "\n")
	write.WriteString(`tmp=$(mktemp "${prefix}XXXXXXXXXXXXXXXX")` + "\n")
	write.WriteString(`trap 'rm -f -- "$tmp"' EXIT` + "\n")
	write.WriteString(`cat > "$tmp"` + "\n")
	write.WriteString(`sync -- "$tmp" 2>/dev/null || sync` + "\n")
	write.WriteString(`sum=$( { ` + SHA256Script + `; } < "$tmp")` + "\n")
	write.WriteString(`trap - EXIT` + "\n")
	write.WriteString(`printf '%s %s\n' "${sum%% *}" "$tmp"` + "\n")

	// A source whose sum is known is not hashed again.
	var h hash.Hash
	var sum string
	in := src
	if known != "" {
		sum = strings.ToLower(known)
	} else {
		h = sha256.New()
		in = io.TeeReader(src, h)
	}
	r := &eofSignal{r: in, eof: make(chan struct{})}
	var out strings.Builder
	if err := b.Run(ctx, write.String(), r, &limitWriter{w: &out, n: 4096}, nil); err != nil {
		return "", fmt.Errorf("upload %s as %s: %w", target, b.user, err)
	}
	// The command read stdin to its end before it answered.
	select {
	case <-r.eof:
	case <-time.After(5 * time.Second):
		return "", fmt.Errorf("upload %s as %s: the source was not read to its end", target, b.user)
	}
	if h != nil {
		sum = hex.EncodeToString(h.Sum(nil))
	}
	landed, tmp, ok := strings.Cut(strings.TrimSpace(out.String()), " ")
	if !ok || !strings.HasPrefix(tmp, tempPrefix(target)) {
		return "", fmt.Errorf("upload %s on %s as %s: unexpected output %q", target, b.Host(), b.user, truncate(out.String(), 200))
	}
	if landed != sum {
		b.Run(context.WithoutCancel(ctx), Command("rm", "-f", "--", tmp), nil, nil, nil)
		return "", fmt.Errorf("upload %s on %s as %s: checksum mismatch: sent sha256 %s but the temp file has %s; %s was left unchanged", target, b.Host(), b.user, sum, landed, target)
	}
	var install strings.Builder
	install.WriteString("set -e\n")
	install.WriteString("tmp=" + Quote(tmp) + "\n")
	install.WriteString(`trap 'rm -f -- "$tmp"' EXIT` + "\n")
	if owner != "" {
		install.WriteString(`chown -- ` + Quote(owner) + ` "$tmp"` + "\n")
	}
	install.WriteString(`chmod ` + octalMode(perm) + ` "$tmp"` + "\n")
	install.WriteString(`mv -f -- "$tmp" ` + Quote(target) + "\n")
	install.WriteString("trap - EXIT\n")
	if err := b.Run(ctx, install.String(), nil, nil, nil); err != nil {
		return "", fmt.Errorf("upload %s as %s: install: %w", target, b.user, err)
	}
	return sum, nil
}

// eofSignal closes eof when r has returned io.EOF.
type eofSignal struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func (e *eofSignal) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

// octalMode renders perm, with setuid/setgid/sticky, for chmod.
func octalMode(perm fs.FileMode) string {
	m := uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if perm&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if perm&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return fmt.Sprintf("%04o", m)
}

// notExist turns a "No such file" failure of a command into fs.ErrNotExist.
func notExist(err error, op, host string) error {
	var xe *ExitError
	if errors.As(err, &xe) && strings.Contains(xe.Stderr, "No such file") {
		return fmt.Errorf("%s on %s: %w", op, host, fs.ErrNotExist)
	}
	return err
}

// Download streams the file through `cat` run as the become user; a
// Redact Conn under it does not mask that stream (it is data, not output).
func (b *becomeConn) Download(ctx context.Context, p string, dst io.Writer) error {
	err := b.run(ctx, Command("cat", "--", p), nil, dst, nil, true)
	if err != nil {
		return notExist(fmt.Errorf("download %s: %w", p, err), "download "+p, b.Host())
	}
	return nil
}

// Stat describes p as seen by the become user (`stat -L`).
func (b *becomeConn) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	var out strings.Builder
	err := b.Run(ctx, Command("stat", "-L", "-c", "%f %s %Y", "--", p), nil, &limitWriter{w: &out, n: 256}, nil)
	if err != nil {
		return nil, notExist(fmt.Errorf("stat %s: %w", p, err), "stat "+p, b.Host())
	}
	fi, err := parseStat(out.String(), p)
	if err != nil {
		return nil, fmt.Errorf("stat %s on %s: %w", p, b.Host(), err)
	}
	return fi, nil
}

// Remove deletes the file at p as the become user (rm refuses directories).
func (b *becomeConn) Remove(ctx context.Context, p string) error {
	if err := b.Run(ctx, Command("rm", "--", p), nil, nil, nil); err != nil {
		return notExist(fmt.Errorf("remove %s: %w", p, err), "remove "+p, b.Host())
	}
	return nil
}

// Checksum hashes p (SHA256Script) as the become user.
func (b *becomeConn) Checksum(ctx context.Context, p string) (string, error) {
	return checksum(ctx, b, p)
}

// parseStat parses `stat -c '%f %s %Y'` output.
func parseStat(out, p string) (fs.FileInfo, error) {
	f := strings.Fields(out)
	if len(f) != 3 {
		return nil, fmt.Errorf("unexpected stat output %q", truncate(out, 100))
	}
	raw, err1 := strconv.ParseUint(f[0], 16, 32)
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	mtime, err3 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("unexpected stat output %q: %w", truncate(out, 100), err)
	}
	name := p
	if i := strings.LastIndexByte(strings.TrimRight(p, "/"), '/'); i >= 0 {
		name = strings.TrimRight(p, "/")[i+1:]
	}
	return &statInfo{name: name, size: size, mode: unixMode(uint32(raw)), mtime: time.Unix(mtime, 0)}, nil
}

// unixMode converts a st_mode to an fs.FileMode.
func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & 0o170000 {
	case 0o040000:
		mode |= fs.ModeDir
	case 0o120000:
		mode |= fs.ModeSymlink
	case 0o010000:
		mode |= fs.ModeNamedPipe
	case 0o140000:
		mode |= fs.ModeSocket
	case 0o020000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		mode |= fs.ModeDevice
	}
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

type statInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.size }
func (s *statInfo) Mode() fs.FileMode  { return s.mode }
func (s *statInfo) ModTime() time.Time { return s.mtime }
func (s *statInfo) IsDir() bool        { return s.mode.IsDir() }
func (s *statInfo) Sys() any           { return nil }
