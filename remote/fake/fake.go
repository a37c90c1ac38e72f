// Package fake is the in-memory stand-in for a connection to one host (the
// remote.Conn method set, which is tasks.Conn's) that kmsctl's tests use:
// one fake, held to the real client's behaviour by the conformance suite of
// package remote (restic's mem backend is the model).
//
// The fake host has a file system (directories and regular files with mode,
// owner and group), used by Upload, Download, Stat, Remove and Checksum and
// by the commands it emulates: the command lines kmsctl's modules send
// (stat -c, chmod, chown, chgrp, mkdir, rm, rmdir, touch, mv, find, sync, true,
// false, echo, lists joined by &&, cd, the checksum script, and systemctl on
// the host's systemd units), answered as the real commands answer them. Any other command line
// must be scripted with Expect or ExpectMatch (expectations are consulted
// first, so they also override emulated commands); an unexpected command
// fails the test unless AllowUnscripted was called. Tunnels (DialTCP) reach
// the ports set with ForwardPort or SetDialTCP. Every call is recorded, with
// its standard input, for assertions.
package fake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Kind names the operation of a recorded Call.
type Kind string

// The kinds of recorded calls, one per method of the connection.
const (
	KindRun      Kind = "run"
	KindUpload   Kind = "upload"
	KindDownload Kind = "download"
	KindStat     Kind = "stat"
	KindRemove   Kind = "remove"
	KindChecksum Kind = "checksum"
	KindDialTCP  Kind = "dialtcp"
	KindClose    Kind = "close"
)

// Call is one recorded operation.
type Call struct {
	Kind    Kind
	Command string      // KindRun: the command line
	Stdin   []byte      // KindRun: everything read from stdin; KindUpload: the bytes read from src
	Path    string      // file operations: the remote path
	Perm    fs.FileMode // KindUpload: the requested mode
	Owner   string      // KindUpload: the requested owner
	Addr    string      // KindDialTCP: the address dialled
	Err     error       // the error returned, if any
}

// String describes the call in one line: the command line of a run, else
// the kind and the path or address ("upload /etc/minkms/config.yaml").
func (c Call) String() string {
	switch c.Kind {
	case KindRun:
		return c.Command
	case KindDialTCP:
		return string(c.Kind) + " " + c.Addr
	case KindClose:
		return string(c.Kind)
	}
	return string(c.Kind) + " " + c.Path
}

// Conn is a fake connection to one host. It is safe for concurrent use.
// The zero value is not usable: call New.
type Conn struct {
	t    testing.TB
	host string

	mu           sync.Mutex
	expectations []*Expectation
	unscripted   bool // AllowUnscripted
	calls        []Call
	files        map[string]*File // by clean absolute path; "/" always exists
	user, group  string           // who commands and uploads run as
	units        map[string]*Unit // systemd units by full name
	ports        map[string]string
	unreachable  bool
	closed       bool
	dial         func(ctx context.Context, addr string) (net.Conn, error)
}

// New returns a fake connection to host, whose commands run as root. Its
// file system holds the directories of a Key Manager host kmsctl writes to
// (/etc/default, /etc/minkms, /etc/systemd/system, /home, /mnt, /opt, /root,
// /srv, /tmp, /usr/local/bin, /var/lib), owned by root, mode 0755; it has
// no systemd units. At the end of the test it fails the test for every
// expectation that was not met (see Expectation.Times).
func New(t testing.TB, host string) *Conn {
	c := &Conn{t: t, host: host, user: "root", group: "root",
		files: map[string]*File{"/": {Mode: 0o755, Owner: "root", Group: "root", Dir: true}},
		units: map[string]*Unit{}, ports: map[string]string{}}
	for _, d := range skeleton {
		c.mustMkdirAll(d)
	}
	t.Cleanup(c.verify)
	return c
}

// AllowUnscripted makes command lines that no expectation matches and the
// fake does not emulate succeed silently (exit status 0, no output) instead
// of failing the test: for tests about something else than the commands.
func (c *Conn) AllowUnscripted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unscripted = true
}

// Expectation scripts the answer to matching command lines. By default it
// must match at least once and answers exit status 0 with no output.
type Expectation struct {
	c       *Conn
	exact   string
	re      *regexp.Regexp
	stdout  string
	stderr  string
	code    int
	do      func(ctx context.Context, cmd string, stdin []byte) (stdout, stderr string, code int, err error)
	err     error
	hang    bool
	min     int
	max     int // -1 = no limit
	matched int
}

// Expect scripts the exact command line cmd.
func (c *Conn) Expect(cmd string) *Expectation {
	return c.add(&Expectation{exact: cmd})
}

// ExpectMatch scripts every command line matching the regular expression
// re (unanchored, as regexp.MatchString; use ^...$ to anchor). An invalid
// expression fails the test immediately.
func (c *Conn) ExpectMatch(re string) *Expectation {
	rx, err := regexp.Compile(re)
	if err != nil {
		c.t.Fatalf("fake %s: ExpectMatch(%q): %v", c.host, re, err)
	}
	return c.add(&Expectation{re: rx})
}

func (c *Conn) add(e *Expectation) *Expectation {
	e.c, e.min, e.max = c, 1, -1
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expectations = append(c.expectations, e)
	return e
}

// Stdout sets what the command writes to stdout.
func (e *Expectation) Stdout(s string) *Expectation { e.set(func() { e.stdout = s }); return e }

// Stderr sets what the command writes to stderr.
func (e *Expectation) Stderr(s string) *Expectation { e.set(func() { e.stderr = s }); return e }

// Exit sets the command's exit status; non-zero makes Run return an *ExitError.
func (e *Expectation) Exit(code int) *Expectation { e.set(func() { e.code = code }); return e }

// Times requires exactly n matching commands; the expectation stops matching
// after the n-th.
func (e *Expectation) Times(n int) *Expectation { e.set(func() { e.min, e.max = n, n }); return e }

// AnyTimes allows any number of matching commands, including none.
func (e *Expectation) AnyTimes() *Expectation { e.set(func() { e.min, e.max = 0, -1 }); return e }

// Do answers the command with f, given everything read from stdin. It
// overrides Stdout, Stderr and Exit. f may change the fake's files (SetFile,
// DeleteFile) to model the command's effect.
func (e *Expectation) Do(f func(stdin []byte) (stdout, stderr string, code int)) *Expectation {
	return e.DoContext(func(_ context.Context, _ string, stdin []byte) (string, string, int, error) {
		stdout, stderr, code := f(stdin)
		return stdout, stderr, code, nil
	})
}

// DoCommand is Do for answers that depend on the command line (with
// ExpectMatch): f gets the command line and stdin.
func (e *Expectation) DoCommand(f func(cmd string, stdin []byte) (stdout, stderr string, code int)) *Expectation {
	return e.DoContext(func(_ context.Context, cmd string, stdin []byte) (string, string, int, error) {
		stdout, stderr, code := f(cmd, stdin)
		return stdout, stderr, code, nil
	})
}

// DoContext is DoCommand for answers that need the command's context (to
// block until it ends, say) or fail without running the command: a non-nil
// err is returned by Run as it is, and the output is then discarded.
func (e *Expectation) DoContext(f func(ctx context.Context, cmd string, stdin []byte) (stdout, stderr string, code int, err error)) *Expectation {
	e.set(func() { e.do = f })
	return e
}

// Fail makes Run return err without running the command (for example to
// simulate a connection lost mid-command).
func (e *Expectation) Fail(err error) *Expectation { e.set(func() { e.err = err }); return e }

// Hang makes Run write the scripted Stdout and Stderr, then block until its
// context ends and return an error wrapping the context's error: a command
// that never finishes on its own.
func (e *Expectation) Hang() *Expectation { e.set(func() { e.hang = true }); return e }

func (e *Expectation) set(f func()) {
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	f()
}

// String describes the expectation for failure messages.
func (e *Expectation) String() string {
	what := fmt.Sprintf("%q", e.exact)
	if e.re != nil {
		what = "match " + e.re.String()
	}
	limit := fmt.Sprintf("%d..", e.min)
	if e.max >= 0 {
		limit += fmt.Sprint(e.max)
	}
	return fmt.Sprintf("%s (matched %d, want %s times)", what, e.matched, limit)
}

func (e *Expectation) matches(cmd string) bool {
	if e.max >= 0 && e.matched >= e.max {
		return false
	}
	if e.re != nil {
		return e.re.MatchString(cmd)
	}
	return e.exact == cmd
}

// verify fails the test for every expectation matched too few times.
func (c *Conn) verify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.expectations {
		if e.matched < e.min {
			c.t.Errorf("fake %s: expected command not run: %s", c.host, e)
		}
	}
}

// SetUnreachable makes every later call fail with an *UnreachableError
// (or, with false, work again).
func (c *Conn) SetUnreachable(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unreachable = v
}

// SetDialTCP sets what DialTCP does; by default it fails.
func (c *Conn) SetDialTCP(f func(ctx context.Context, addr string) (net.Conn, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dial = f
}

// Calls returns every recorded call, in order.
func (c *Conn) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.calls...)
}

// Commands returns the command line of every recorded Run, in order.
func (c *Conn) Commands() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, call := range c.calls {
		if call.Kind == KindRun {
			out = append(out, call.Command)
		}
	}
	return out
}

// record appends call and returns its error, for one-line returns.
func (c *Conn) record(call Call) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
	return call.Err
}

// gate returns the error every call gets before doing anything: closed
// connection, unreachable host or a finished context.
func (c *Conn) gate(ctx context.Context, op string) error {
	c.mu.Lock()
	closed, unreachable := c.closed, c.unreachable
	c.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%s on %s: %w", op, c.host, ErrClosed)
	case unreachable:
		return &UnreachableError{Host: c.host, Op: op}
	case ctx.Err() != nil:
		return fmt.Errorf("%s on %s: %w", op, c.host, context.Cause(ctx))
	}
	return nil
}

// Host returns the host name given to New.
func (c *Conn) Host() string { return c.host }

// Run answers cmd from the first expectation that matches it, else runs it
// on the fake host when the fake emulates it (see the package comment). An
// unexpected command fails the test and returns an *UnexpectedError (or,
// after AllowUnscripted, succeeds silently).
func (c *Conn) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	call := Call{Kind: KindRun, Command: cmd}
	if err := c.gate(ctx, "run command"); err != nil {
		call.Err = err
		return c.record(call)
	}
	if stdin != nil {
		b, err := io.ReadAll(stdin)
		call.Stdin = b
		if err != nil {
			call.Err = fmt.Errorf("run command on %s: read stdin: %w", c.host, err)
			return c.record(call)
		}
	}

	c.mu.Lock()
	var e *Expectation
	for _, x := range c.expectations {
		if x.matches(cmd) {
			e = x
			break
		}
	}
	if e == nil {
		r, emulated := c.emulate(cmd)
		unscripted := c.unscripted
		var list []string
		for _, x := range c.expectations {
			list = append(list, "  "+x.String())
		}
		c.mu.Unlock()
		switch {
		case emulated && r.unsupported != "":
			c.t.Errorf("fake %s: cannot emulate %q: %s; script it with Expect", c.host, cmd, r.unsupported)
		case emulated:
			return c.finish(call, cmd, r.stdout, r.stderr, r.code, stdout, stderr)
		case unscripted:
			return c.record(call)
		default:
			c.t.Errorf("fake %s: unexpected command %q (neither expected nor emulated)\nexpectations:\n%s", c.host, cmd, strings.Join(list, "\n"))
		}
		call.Err = &UnexpectedError{Host: c.host, Cmd: cmd}
		return c.record(call)
	}
	e.matched++
	out, errOut, code, do, fail, hang := e.stdout, e.stderr, e.code, e.do, e.err, e.hang
	c.mu.Unlock()

	switch {
	case fail != nil:
		call.Err = fail
		return c.record(call)
	case hang:
		write(stdout, out)
		write(stderr, errOut)
		<-ctx.Done()
		call.Err = fmt.Errorf("run command on %s: %w", c.host, context.Cause(ctx))
		return c.record(call)
	case do != nil:
		var err error
		if out, errOut, code, err = do(ctx, cmd, call.Stdin); err != nil {
			call.Err = err
			return c.record(call)
		}
	}
	return c.finish(call, cmd, out, errOut, code, stdout, stderr)
}

// finish writes a command's output, records the call and returns its error:
// an *ExitError for a non-zero status.
func (c *Conn) finish(call Call, cmd, out, errOut string, code int, stdout, stderr io.Writer) error {
	write(stdout, out)
	write(stderr, errOut)
	if code != 0 {
		call.Err = &ExitError{Host: c.host, Cmd: cmd, Status: code, Stderr: errOut}
	}
	return c.record(call)
}

// write writes s to w unless w is nil (a discarded stream).
func write(w io.Writer, s string) {
	if w != nil {
		io.WriteString(w, s)
	}
}

// Upload first removes what interrupted uploads of p left next to it, as
// the real client does: files ".<base>.kmsctl-tmp-*" and directories
// ".<base>.kmsctl-tmp-<16 hex digits>" with the files in them. It then
// reads src and, only if reading succeeds to EOF, replaces the file
// at p with it, as the real client does (a new file, renamed over p): mode
// perm, owned by owner ("user" or "user:group") or else by the fake's user
// (SetUser). A failing src, or content whose sha256 is not known (the sum
// declared in advance, when not ""), leaves the previous file untouched. It
// returns the hex sha256 of the content. p must be absolute, its directory
// must exist (else the error matches fs.ErrNotExist), and p must not be a
// directory.
func (c *Conn) Upload(ctx context.Context, p string, src io.Reader, known string, perm fs.FileMode, owner string) (string, error) {
	call := Call{Kind: KindUpload, Path: p, Perm: perm, Owner: owner}
	op := "upload " + p
	if err := c.gate(ctx, op); err != nil {
		call.Err = err
		return "", c.record(call)
	}
	if !path.IsAbs(p) {
		call.Err = fmt.Errorf("%s on %s: path must be absolute", op, c.host)
		return "", c.record(call)
	}
	c.mu.Lock()
	err := c.removeStaleTemps(cleanPath(p))
	c.mu.Unlock()
	if err != nil {
		call.Err = fmt.Errorf("%s on %s: %w", op, c.host, err)
		return "", c.record(call)
	}
	var buf bytes.Buffer
	_, err = io.Copy(&buf, src)
	call.Stdin = buf.Bytes()
	if err != nil {
		call.Err = fmt.Errorf("%s on %s: read source: %w", op, c.host, err)
		return "", c.record(call)
	}
	if err := ctx.Err(); err != nil {
		call.Err = fmt.Errorf("%s on %s: %w", op, c.host, err)
		return "", c.record(call)
	}
	if got := sum(buf.Bytes()); known != "" && strings.ToLower(known) != got {
		call.Err = fmt.Errorf("%s on %s: checksum mismatch: the source was declared with sha256 %s but has %s; %s was left unchanged", op, c.host, strings.ToLower(known), got, p)
		return "", c.record(call)
	}
	p = cleanPath(p)
	c.mu.Lock()
	err = c.checkParent(p)
	switch old, ok := c.files[p]; {
	case err != nil:
		err = fmt.Errorf("%s on %s: %w", op, c.host, &fs.PathError{Op: "create temp file in", Path: path.Dir(p), Err: err})
	case ok && old.Dir:
		err = fmt.Errorf("%s on %s: rename temp file over target: %s is a directory", op, c.host, p)
	default:
		f := &File{Content: buf.String(), Mode: perm, Owner: c.user, Group: c.group, ModTime: time.Now()}
		f.Owner, f.Group = chownSpec(owner, f.Owner, f.Group)
		c.files[p] = f
	}
	c.mu.Unlock()
	if err != nil {
		call.Err = err
		return "", c.record(call)
	}
	return sum(buf.Bytes()), c.record(call)
}

// lookup returns the entry at p or an error matching fs.ErrNotExist.
func (c *Conn) lookup(op, p string) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.lookupPath(cleanPath(p))
	if err != nil {
		return File{}, fmt.Errorf("%s on %s: %w", op, c.host, &fs.PathError{Op: op, Path: p, Err: err})
	}
	return *f, nil
}

// Download writes the content of the file at p to dst.
func (c *Conn) Download(ctx context.Context, p string, dst io.Writer) error {
	call := Call{Kind: KindDownload, Path: p}
	if call.Err = c.gate(ctx, "download "+p); call.Err != nil {
		return c.record(call)
	}
	f, err := c.lookup("download", p)
	switch {
	case err != nil:
	case f.Dir:
		err = fmt.Errorf("download %s on %s: %w", p, c.host, &fs.PathError{Op: "read", Path: p, Err: errIsDir})
	default:
		if _, werr := io.WriteString(dst, f.Content); werr != nil {
			err = fmt.Errorf("download %s on %s: %w", p, c.host, werr)
		}
	}
	call.Err = err
	return c.record(call)
}

// Stat describes the file or directory at p.
func (c *Conn) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	call := Call{Kind: KindStat, Path: p}
	if call.Err = c.gate(ctx, "stat "+p); call.Err != nil {
		return nil, c.record(call)
	}
	f, err := c.lookup("stat", p)
	call.Err = err
	if err != nil {
		return nil, c.record(call)
	}
	return fileInfo{name: path.Base(p), f: f}, c.record(call)
}

// Remove deletes the file at p; a missing file yields fs.ErrNotExist, and
// a directory is refused.
func (c *Conn) Remove(ctx context.Context, p string) error {
	call := Call{Kind: KindRemove, Path: p}
	if call.Err = c.gate(ctx, "remove "+p); call.Err != nil {
		return c.record(call)
	}
	f, err := c.lookup("remove", p)
	switch {
	case err != nil:
		call.Err = err
	case f.Dir:
		call.Err = fmt.Errorf("remove %s on %s: is a directory (only files are removed)", p, c.host)
	default:
		c.DeleteFile(p)
	}
	return c.record(call)
}

// Checksum returns the hex sha256 of the file at p.
func (c *Conn) Checksum(ctx context.Context, p string) (string, error) {
	call := Call{Kind: KindChecksum, Path: p}
	if call.Err = c.gate(ctx, "checksum "+p); call.Err != nil {
		return "", c.record(call)
	}
	f, err := c.lookup("checksum", p)
	switch {
	case err != nil:
		call.Err = err
	case f.Dir:
		call.Err = fmt.Errorf("checksum %s on %s: is a directory, not a file", p, c.host)
	default:
		return sum([]byte(f.Content)), c.record(call)
	}
	return "", c.record(call)
}

// ForwardPort makes DialTCP to addr (as seen from the host, "127.0.0.1:7373")
// connect to target, a TCP address on this machine (a test's listener).
func (c *Conn) ForwardPort(addr, target string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ports[addr] = target
}

// DialTCP connects to the port set for addr with ForwardPort, else calls
// the function set with SetDialTCP; with neither, the connection is
// refused, as the real client reports a closed port.
func (c *Conn) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	call := Call{Kind: KindDialTCP, Addr: addr}
	if call.Err = c.gate(ctx, "tunnel to "+addr); call.Err != nil {
		return nil, c.record(call)
	}
	c.mu.Lock()
	dial, target, forwarded := c.dial, c.ports[addr], c.ports[addr] != ""
	c.mu.Unlock()
	var nc net.Conn
	switch {
	case forwarded:
		var d net.Dialer
		nc, call.Err = d.DialContext(ctx, "tcp", target)
		if call.Err != nil {
			call.Err = fmt.Errorf("tunnel to %s on %s: %w", addr, c.host, call.Err)
		}
	case dial != nil:
		nc, call.Err = dial(ctx, addr)
	default:
		call.Err = fmt.Errorf("tunnel to %s on %s: connect failed (dial tcp %s: connect: connection refused)", addr, c.host, addr)
	}
	return nc, c.record(call)
}

// Close marks the connection closed; later calls fail with ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.record(Call{Kind: KindClose})
}

// Reopen makes a closed fake usable again, as a new connection to the same
// host would be: files, units, expectations and recorded calls stay.
func (c *Conn) Reopen() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = false
}

// ErrClosed is returned (wrapped) by calls on a closed fake.
var ErrClosed = errors.New("fake connection closed")
