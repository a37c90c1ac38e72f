package remote_test

import (
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
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
