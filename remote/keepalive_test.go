package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

// freezingProxy forwards TCP connections to a backend until frozen; then
// the connections it carries stay open but pass no more bytes, like a
// network path that went silent. New connections are forwarded again.
type freezingProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	frozen  []chan struct{}
}

func newFreezingProxy(t *testing.T, backend string) *freezingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, backend: backend}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			freeze := make(chan struct{})
			p.mu.Lock()
			p.frozen = append(p.frozen, freeze)
			p.mu.Unlock()
			t.Cleanup(func() { c.Close(); b.Close() })
			go pump(c, b, freeze)
			go pump(b, c, freeze)
		}
	}()
	return p
}

// pump copies src to dst until freeze is closed, then drops everything.
func pump(dst, src net.Conn, freeze chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-freeze:
			io.Copy(io.Discard, src)
			return
		default:
		}
		if n > 0 {
			dst.Write(buf[:n])
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// freeze silences every connection made so far.
func (p *freezingProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frozen {
		close(f)
	}
	p.frozen = nil
}

func (p *freezingProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// TestKeepaliveDetectsSilentConnection: a command in flight on a connection
// whose network path went silent fails with ErrConnectionLost once three
// keepalives go unanswered (instead of hanging until its context ends),
// and the next call re-dials.
func TestKeepaliveDetectsSilentConnection(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	proxy := newFreezingProxy(t, s.Addr())
	e.trust(sshtest.KnownHostsLine("127.0.0.1:"+strconv.Itoa(proxy.port()), s.HostKey()))
	o := e.opts(s)
	o.Port = proxy.port()
	o.KeepAlive = 50 * time.Millisecond
	c := e.dial(o)
	if _, _, err := run(t, c, "true", ""); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx(t), "sleep 30", nil, nil, nil) }()
	// Freeze once the server has the command (so it is in flight).
	for deadline := time.Now().Add(20 * time.Second); !slices.Contains(s.Commands(), "sleep 30"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server never received the command")
		}
	}
	proxy.freeze()
	err := <-done
	if !errors.Is(err, remote.ErrConnectionLost) {
		t.Fatalf("command on a silent connection = %v, want ErrConnectionLost", err)
	}
	if out, _, err := run(t, c, "echo back", ""); err != nil || out != "back\n" {
		t.Fatalf("run after keepalive failure: %q %v", out, err)
	}
}

// TestKeepaliveCountsAnyTraffic: a server that never answers a keepalive
// but keeps sending data is alive (as with OpenSSH's ServerAliveCountMax,
// any traffic counts). The command waits until the client has sent a
// keepalive (withheld), then its output trickles in for at least 10
// keepalive intervals; it completes, and on the same connection.
func TestKeepaliveCountsAnyTraffic(t *testing.T) {
	const (
		interval = 100 * time.Millisecond
		lines    = 50
		gap      = interval / 5 // lines*gap = 10 intervals at least
	)
	var srv atomic.Pointer[sshtest.Server]
	e := newEnv(t)
	s := e.server(sshtest.Config{
		WithholdKeepaliveReplies: true,
		Exec: func(ctx context.Context, cmd string, _ io.Reader, stdout, stderr io.Writer) (int, bool) {
			if cmd != "trickle" {
				return 0, false
			}
			// Silent until a keepalive went unanswered.
			for deadline := time.Now().Add(20 * time.Second); srv.Load().Keepalives() == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					fmt.Fprintln(stderr, "no keepalive received")
					return 2, true
				}
			}
			for i := range lines {
				fmt.Fprintf(stdout, "line %d\n", i)
				select {
				case <-ctx.Done():
					return 1, true
				case <-time.After(gap):
				}
			}
			return 0, true
		},
	})
	srv.Store(s)
	e.trust(s.KnownHostsLine())
	o := e.opts(s)
	o.KeepAlive = interval
	c := e.dial(o)
	out, errOut, err := run(t, c, "trickle", "")
	if err != nil {
		t.Fatalf("trickling command with keepalive replies withheld = %v (stderr %q), want success", err, errOut)
	}
	if got := strings.Count(out, "\n"); got != lines {
		t.Fatalf("got %d lines of output, want %d", got, lines)
	}
	if s.Keepalives() == 0 {
		t.Fatal("the server received no keepalive")
	}
	if _, _, err := run(t, c, "true", ""); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Logins()); n != 1 {
		t.Fatalf("%d logins, want 1: the connection was dropped and re-dialled", n)
	}
}

// TestKeepaliveDropsServerThatSendsNothing: a server whose TCP connection
// is up but that answers no keepalive and sends nothing else is dead: the
// command in flight fails with ErrConnectionLost.
func TestKeepaliveDropsServerThatSendsNothing(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{WithholdKeepaliveReplies: true})
	e.trust(s.KnownHostsLine())
	o := e.opts(s)
	o.KeepAlive = 50 * time.Millisecond
	c := e.dial(o)
	err := c.Run(ctx(t), "sleep 30", nil, nil, nil)
	if !errors.Is(err, remote.ErrConnectionLost) {
		t.Fatalf("command on a connection that receives nothing = %v, want ErrConnectionLost", err)
	}
	if s.Keepalives() == 0 {
		t.Fatal("the server received no keepalive")
	}
}
