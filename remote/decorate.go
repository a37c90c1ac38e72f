package remote

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"time"

	"github.com/kmsctl/kmsctl/redact"
	"github.com/rs/zerolog"
)

// Redact returns a Conn that masks the secrets registered in r in the
// stdout and stderr of commands and in the messages of every error
// (including the Cmd and Stderr fields of an *ExitError). Secrets must
// still never be put in command lines: pass them on stdin or upload them.
// Traced command lines and errors are masked too when Trace is directly
// under or over Redact, so both of these orders are safe:
//
//	conn := remote.Trace(remote.Redact(remote.Become(client, "root"), r), log)
//	conn := remote.Redact(remote.Trace(client, log), r)
func Redact(c Conn, r *redact.Redactor) Conn {
	if t, ok := c.(*traceConn); ok && r != nil {
		t.mask = r.String
	}
	return &redactConn{inner: c, r: r}
}

type redactConn struct {
	inner Conn
	r     *redact.Redactor
}

// mask masks s; Trace uses it when stacked directly over Redact.
func (c *redactConn) mask(s string) string { return c.r.String(s) }

func (c *redactConn) err(err error) error {
	if err == nil {
		return nil
	}
	var xe *ExitError
	if errors.As(err, &xe) {
		xe.Cmd = c.r.String(xe.Cmd)
		xe.Stderr = c.r.String(xe.Stderr)
	}
	return &redactedError{msg: c.r.String(err.Error()), err: err}
}

// redactedError carries a masked message and the original chain (for
// errors.Is/As).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (c *redactConn) Host() string { return c.inner.Host() }
func (c *redactConn) Close() error { return c.inner.Close() }

func (c *redactConn) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	var ow, ew io.WriteCloser
	if stdout != nil {
		ow = c.r.Writer(stdout)
		stdout = ow
	}
	if stderr != nil {
		ew = c.r.Writer(stderr)
		stderr = ew
	}
	err := c.inner.Run(ctx, cmd, stdin, stdout, stderr)
	if ow != nil {
		ow.Close()
	}
	if ew != nil {
		ew.Close()
	}
	return c.err(err)
}

// runData is Run with stdout passed through unmasked: Become streams a
// Download through a command's stdout, and file data is not output.
func (c *redactConn) runData(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	var ew io.WriteCloser
	if stderr != nil {
		ew = c.r.Writer(stderr)
		stderr = ew
	}
	err := c.inner.Run(ctx, cmd, stdin, stdout, stderr)
	if ew != nil {
		ew.Close()
	}
	return c.err(err)
}

func (c *redactConn) Upload(ctx context.Context, p string, src io.Reader, known string, perm fs.FileMode, owner string) (string, error) {
	sum, err := c.inner.Upload(ctx, p, src, known, perm, owner)
	return sum, c.err(err)
}

// Download passes the file through unmasked: it is data, not output.
func (c *redactConn) Download(ctx context.Context, p string, dst io.Writer) error {
	return c.err(c.inner.Download(ctx, p, dst))
}

func (c *redactConn) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	fi, err := c.inner.Stat(ctx, p)
	return fi, c.err(err)
}

func (c *redactConn) Remove(ctx context.Context, p string) error {
	return c.err(c.inner.Remove(ctx, p))
}

func (c *redactConn) Checksum(ctx context.Context, p string) (string, error) {
	s, err := c.inner.Checksum(ctx, p)
	return s, c.err(err)
}

func (c *redactConn) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	nc, err := c.inner.DialTCP(ctx, addr)
	return nc, c.err(err)
}

// Trace returns a Conn that logs every operation at debug level: the
// command line (never stdin), its duration and exit status, or the
// operation, path and result. When c is a Redact Conn (or the result is
// wrapped directly by Redact), the logged command lines and errors are
// masked with its redactor.
func Trace(c Conn, log zerolog.Logger) Conn {
	t := &traceConn{inner: c, log: log, mask: func(s string) string { return s }}
	if m, ok := c.(interface{ mask(string) string }); ok {
		t.mask = m.mask
	}
	return t
}

type traceConn struct {
	inner Conn
	log   zerolog.Logger
	mask  func(string) string
}

func (c *traceConn) Host() string { return c.inner.Host() }
func (c *traceConn) Close() error { return c.inner.Close() }

// done logs the end of an operation.
func (c *traceConn) done(ev *zerolog.Event, start time.Time, err error, msg string) {
	ev = ev.Str("host", c.Host()).Dur("took", time.Since(start))
	if err != nil {
		ev = ev.Str("error", c.mask(err.Error()))
	}
	ev.Msg(msg)
}

func (c *traceConn) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	start := time.Now()
	err := c.inner.Run(ctx, cmd, stdin, stdout, stderr)
	ev := c.log.Debug().Str("cmd", c.mask(cmd)).Bool("stdin", stdin != nil)
	var xe interface{ ExitStatus() int }
	switch {
	case err == nil:
		ev = ev.Int("exit", 0)
	case errors.As(err, &xe):
		ev = ev.Int("exit", xe.ExitStatus())
	}
	c.done(ev, start, err, "run")
	return err
}

func (c *traceConn) Upload(ctx context.Context, p string, src io.Reader, known string, perm fs.FileMode, owner string) (string, error) {
	start := time.Now()
	sum, err := c.inner.Upload(ctx, p, src, known, perm, owner)
	c.done(c.log.Debug().Str("path", p).Str("mode", perm.String()).Str("owner", owner).Str("sha256", sum), start, err, "upload")
	return sum, err
}

func (c *traceConn) Download(ctx context.Context, p string, dst io.Writer) error {
	start := time.Now()
	err := c.inner.Download(ctx, p, dst)
	c.done(c.log.Debug().Str("path", p), start, err, "download")
	return err
}

func (c *traceConn) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	start := time.Now()
	fi, err := c.inner.Stat(ctx, p)
	c.done(c.log.Debug().Str("path", p), start, err, "stat")
	return fi, err
}

func (c *traceConn) Remove(ctx context.Context, p string) error {
	start := time.Now()
	err := c.inner.Remove(ctx, p)
	c.done(c.log.Debug().Str("path", p), start, err, "remove")
	return err
}

func (c *traceConn) Checksum(ctx context.Context, p string) (string, error) {
	start := time.Now()
	s, err := c.inner.Checksum(ctx, p)
	c.done(c.log.Debug().Str("path", p).Str("sha256", s), start, err, "checksum")
	return s, err
}

func (c *traceConn) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	start := time.Now()
	nc, err := c.inner.DialTCP(ctx, addr)
	c.done(c.log.Debug().Str("addr", addr), start, err, "tunnel")
	return nc, err
}
