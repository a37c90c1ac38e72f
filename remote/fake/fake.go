// Package fake is a scripted, in-memory stand-in for a connection to one
// host (the tasks.Conn method set) for unit tests. Commands must be scripted
// with Expect or ExpectMatch; an unexpected command fails the test. Files
// live in an in-memory filesystem used by Upload, Download, Stat, Remove and
// Checksum. Every call is recorded for assertions.
package fake

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
	"regexp"
	"sort"
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

// File is one file of the in-memory filesystem.
type File struct {
	Content string
	Mode    fs.FileMode // permission bits (and special bits)
	Owner   string      // "user[:group]" as uploaded or set; "" = unknown
	ModTime time.Time
}

// Conn is a scripted fake connection to one host. It is safe for concurrent
// use. The zero value is not usable: call New.
type Conn struct {
	t    testing.TB
	host string

	mu           sync.Mutex
	expectations []*Expectation
	calls        []Call
	files        map[string]File
	unreachable  bool
	closed       bool
	dial         func(ctx context.Context, addr string) (net.Conn, error)
}

// New returns a fake connection to host. At the end of the test it fails
// the test for every expectation that was not met (see Expectation.Times).
func New(t testing.TB, host string) *Conn {
	c := &Conn{t: t, host: host, files: map[string]File{}}
	t.Cleanup(c.verify)
	return c
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
	do      func(cmd string, stdin []byte) (stdout, stderr string, code int)
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
	e.set(func() {
		e.do = func(_ string, stdin []byte) (string, string, int) { return f(stdin) }
	})
	return e
}

// DoCommand is Do for answers that depend on the command line (with
// ExpectMatch): f gets the command line and stdin.
func (e *Expectation) DoCommand(f func(cmd string, stdin []byte) (stdout, stderr string, code int)) *Expectation {
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

// SetFile creates or replaces the file at p.
func (c *Conn) SetFile(p, content string, mode fs.FileMode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.files[p]
	c.files[p] = File{Content: content, Mode: mode, Owner: old.Owner, ModTime: time.Now()}
}

// SetFileOwner sets the owner of the existing file at p.
func (c *Conn) SetFileOwner(p, owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.files[p]; ok {
		f.Owner = owner
		c.files[p] = f
	}
}

// DeleteFile removes p from the in-memory filesystem, if present.
func (c *Conn) DeleteFile(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.files, p)
}

// File returns the file at p and whether it exists.
func (c *Conn) File(p string) (File, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.files[p]
	return f, ok
}

// Files returns a copy of the in-memory filesystem.
func (c *Conn) Files() map[string]File {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]File, len(c.files))
	for k, v := range c.files {
		m[k] = v
	}
	return m
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

// Run answers cmd from the first expectation that matches it. An unexpected
// command fails the test and returns an *UnexpectedError.
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
		list := make([]string, len(c.expectations))
		for i, x := range c.expectations {
			list[i] = "  " + x.String()
		}
		c.mu.Unlock()
		c.t.Errorf("fake %s: unexpected command %q\nexpectations:\n%s", c.host, cmd, strings.Join(list, "\n"))
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
		if stdout != nil {
			io.WriteString(stdout, out)
		}
		if stderr != nil {
			io.WriteString(stderr, errOut)
		}
		<-ctx.Done()
		call.Err = fmt.Errorf("run command on %s: %w", c.host, context.Cause(ctx))
		return c.record(call)
	case do != nil:
		out, errOut, code = do(cmd, call.Stdin)
	}
	if stdout != nil {
		io.WriteString(stdout, out)
	}
	if stderr != nil {
		io.WriteString(stderr, errOut)
	}
	if code != 0 {
		call.Err = &ExitError{Host: c.host, Cmd: cmd, Status: code, Stderr: errOut}
	}
	return c.record(call)
}

// Upload reads src and, only if reading succeeds to EOF, replaces the file
// at p with it, with mode perm and owner (owner "" keeps the previous
// owner). A failing src leaves the previous file untouched. It returns the
// hex sha256 of the content. p must be absolute.
func (c *Conn) Upload(ctx context.Context, p string, src io.Reader, perm fs.FileMode, owner string) (string, error) {
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
	var buf bytes.Buffer
	_, err := io.Copy(&buf, src)
	call.Stdin = buf.Bytes()
	if err != nil {
		call.Err = fmt.Errorf("%s on %s: read source: %w", op, c.host, err)
		return "", c.record(call)
	}
	if err := ctx.Err(); err != nil {
		call.Err = fmt.Errorf("%s on %s: %w", op, c.host, err)
		return "", c.record(call)
	}
	c.mu.Lock()
	old := c.files[p]
	if owner == "" {
		owner = old.Owner
	}
	c.files[p] = File{Content: buf.String(), Mode: perm, Owner: owner, ModTime: time.Now()}
	c.mu.Unlock()
	return sum(buf.Bytes()), c.record(call)
}

// lookup returns the file at p or an error matching fs.ErrNotExist.
func (c *Conn) lookup(op, p string) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.files[p]
	if !ok {
		return File{}, fmt.Errorf("%s on %s: %w", op, c.host, &fs.PathError{Op: op, Path: p, Err: fs.ErrNotExist})
	}
	return f, nil
}

// Download writes the content of the file at p to dst.
func (c *Conn) Download(ctx context.Context, p string, dst io.Writer) error {
	call := Call{Kind: KindDownload, Path: p}
	if call.Err = c.gate(ctx, "download "+p); call.Err != nil {
		return c.record(call)
	}
	f, err := c.lookup("download", p)
	if err == nil {
		if _, werr := io.WriteString(dst, f.Content); werr != nil {
			err = fmt.Errorf("download %s on %s: %w", p, c.host, werr)
		}
	}
	call.Err = err
	return c.record(call)
}

// Stat describes the file at p.
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

// Remove deletes the file at p; a missing file yields fs.ErrNotExist.
func (c *Conn) Remove(ctx context.Context, p string) error {
	call := Call{Kind: KindRemove, Path: p}
	if call.Err = c.gate(ctx, "remove "+p); call.Err != nil {
		return c.record(call)
	}
	if _, call.Err = c.lookup("remove", p); call.Err == nil {
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
	call.Err = err
	if err != nil {
		return "", c.record(call)
	}
	return sum([]byte(f.Content)), c.record(call)
}

// DialTCP calls the function set with SetDialTCP.
func (c *Conn) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	call := Call{Kind: KindDialTCP, Addr: addr}
	if call.Err = c.gate(ctx, "tunnel to "+addr); call.Err != nil {
		return nil, c.record(call)
	}
	c.mu.Lock()
	dial := c.dial
	c.mu.Unlock()
	if dial == nil {
		call.Err = fmt.Errorf("tunnel to %s via %s: fake has no dialer (use SetDialTCP)", addr, c.host)
		return nil, c.record(call)
	}
	nc, err := dial(ctx, addr)
	call.Err = err
	return nc, c.record(call)
}

// Close marks the connection closed; later calls fail with ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.record(Call{Kind: KindClose})
}

// Paths returns the paths of the in-memory files, sorted.
func (c *Conn) Paths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := make([]string, 0, len(c.files))
	for p := range c.files {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// fileInfo is the fs.FileInfo of an in-memory file.
type fileInfo struct {
	name string
	f    File
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return int64(len(fi.f.Content)) }
func (fi fileInfo) Mode() fs.FileMode  { return fi.f.Mode }
func (fi fileInfo) ModTime() time.Time { return fi.f.ModTime }
func (fi fileInfo) IsDir() bool        { return false }
func (fi fileInfo) Sys() any           { return fi.f }

// ErrClosed is returned (wrapped) by calls on a closed fake.
var ErrClosed = errors.New("fake connection closed")
