package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// stderrTailSize is how much of a command's stderr an *ExitError keeps.
const stderrTailSize = 4096

// Run runs cmd with the login user's shell on the host, in its own session
// on the shared connection (one exec request: no wrapping, no extra round
// trip). At most Options.MaxSessions-1 commands run at once; more wait.
// stdin, stdout and stderr may be nil. A non-zero exit yields an
// *ExitError; a connection that dies meanwhile yields a *LostError and the
// command is not re-run. Cancelling ctx sends SIGKILL to the command,
// closes its session, kills what is left of it (see killMarked) and
// returns an error wrapping ctx.Err().
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	select {
	case c.runSlots <- struct{}{}:
		defer func() { <-c.runSlots }()
	case <-ctx.Done():
		return fmt.Errorf("run command on %s: %w", c.host, context.Cause(ctx))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run command on %s: %w", c.host, err)
	}
	sc, sess, err := c.session(ctx)
	if err != nil {
		return err
	}
	defer sess.Close()

	// The gates stop late writes into the caller's writers once Run returned.
	outGate := &gate{w: orDiscard(stdout)}
	errTail := &tail{max: stderrTailSize}
	errGate := &gate{w: io.MultiWriter(orDiscard(stderr), errTail)}
	defer outGate.close()
	defer errGate.close()
	sess.Stdout = outGate
	sess.Stderr = errGate
	var stdinPipe io.WriteCloser
	if stdin != nil {
		// A pipe rather than sess.Stdin: Wait must not wait for stdin to
		// reach EOF when the command exits without reading all of it.
		if stdinPipe, err = sess.StdinPipe(); err != nil {
			return fmt.Errorf("run command on %s: stdin: %w", c.host, err)
		}
	}
	// Mark the command's environment (no reply wanted: no round trip), so
	// that a cancelled command can be found when sshd refuses to signal it.
	runID := randomSuffix()
	sess.SendRequest("env", false, ssh.Marshal(struct{ Name, Value string }{runMarker, runID}))
	if err := sess.Start(cmd); err != nil {
		if sc.waitDead(100 * time.Millisecond) {
			return &LostError{Host: c.host, Op: "start command", Err: err}
		}
		return fmt.Errorf("start command on %s: %w", c.host, err)
	}
	if stdinPipe != nil {
		go func() {
			io.Copy(stdinPipe, stdin)
			stdinPipe.Close()
		}()
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Signal(ssh.SIGKILL)
		sess.Close()
		c.killMarked(sc, runID)
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
		return fmt.Errorf("run command on %s: %w", c.host, context.Cause(ctx))
	}
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		xe := &ExitError{Host: c.host, Cmd: cmd, Status: ee.ExitStatus(), Signal: ee.Signal(), Stderr: errTail.String()}
		if xe.Signal != "" {
			xe.Status = -1
		}
		return xe
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run command on %s: %w", c.host, context.Cause(ctx))
	}
	if sc.waitDead(time.Second) {
		return &LostError{Host: c.host, Op: "run command", Err: err}
	}
	return fmt.Errorf("run command on %s: %w", c.host, err)
}

// runMarker is the environment variable that marks the processes of one
// Run. It is an LC_* name because sshd's usual AcceptEnv (Debian, RHEL)
// passes LANG and LC_*; setlocale ignores unknown LC_ names.
const runMarker = "LC_KMSCTL_RUN"

// killMarked kills, in a new session, every process whose environment
// carries the marker of a cancelled Run. OpenSSH refuses signal requests
// on sessions that are not privilege-separated (root logins) and leaves a
// command running when its channel closes, so the signal alone is not
// enough. Best effort, bounded by a few seconds; Linux /proc only.
func (c *Client) killMarked(sc *sshConn, runID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sess, err := newSession(ctx, sc)
	if err != nil {
		c.log.Debug().Err(err).Msg("open session to kill a cancelled command")
		return
	}
	defer sess.Close()
	cmd := "pids=$(grep -lzx " + Quote(runMarker+"="+runID) + " /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); " +
		`[ -z "$pids" ] || kill -KILL $pids 2>/dev/null; true`
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err := <-done:
		if err != nil {
			c.log.Debug().Err(err).Msg("kill a cancelled command")
		}
	case <-ctx.Done():
	case <-sc.dead:
	}
}

// session opens a session on the live connection. When the connection
// turns out dead before the session opened (so nothing ran), it re-dials
// once and tries again.
func (c *Client) session(ctx context.Context) (*sshConn, *ssh.Session, error) {
	for attempt := 0; ; attempt++ {
		sc, err := c.conn(ctx)
		if err != nil {
			return nil, nil, err
		}
		sess, err := newSession(ctx, sc)
		if err == nil {
			return sc, sess, nil
		}
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("open session on %s: %w", c.host, context.Cause(ctx))
		}
		if !sc.waitDead(100*time.Millisecond) || attempt > 0 {
			if sc.isDead() {
				return nil, nil, &LostError{Host: c.host, Op: "open session", Err: err}
			}
			return nil, nil, fmt.Errorf("open session on %s: %w", c.host, err)
		}
	}
}

// newSession opens a session, giving up when ctx ends or the connection dies.
func newSession(ctx context.Context, sc *sshConn) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := sc.client.NewSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
	case <-sc.dead:
	}
	go func() {
		if r := <-ch; r.s != nil {
			r.s.Close()
		}
	}()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, ErrConnectionLost
}

// gate passes writes to w until closed, then discards them.
type gate struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
