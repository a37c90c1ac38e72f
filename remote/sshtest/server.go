// Package sshtest is an in-process SSH + SFTP server for tests. It listens on
// 127.0.0.1:0, runs exec requests with /bin/sh -c as the current user on the
// real filesystem, serves the "sftp" subsystem with github.com/pkg/sftp
// (plus fsync@openssh.com), forwards direct-tcpip channels (so it can act as a
// ProxyJump bastion or a tunnel end), can simulate `sudo -n`, and can cut or
// drop connections on demand to test failure handling.
package sshtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// SudoMode selects how the server treats command lines that start with sudo.
type SudoMode int

const (
	// SudoNone runs sudo command lines as written (with the real sudo, if any).
	SudoNone SudoMode = iota
	// SudoAllow simulates passwordless sudo: `sudo -n [-u USER] [--] CMD` runs
	// CMD as the current user.
	SudoAllow
	// SudoPasswordRequired simulates sudo that needs a password: every sudo
	// command line fails with "sudo: a password is required" and exit status 1.
	SudoPasswordRequired
)

// ExecFunc intercepts a command line before the server runs it. It sees the
// raw command line as received. Returning handled=false lets the server run
// the command as usual (stdin is then still unread). ctx is cancelled when the
// client signals the command or closes the session.
type ExecFunc func(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (status int, handled bool)

// Config describes a test server. The zero value is usable only for
// connections that need no authentication, which never succeed: set
// AuthorizedKeys or Password.
type Config struct {
	// HostKey is the server's host key; nil generates an ed25519 key.
	HostKey ssh.Signer
	// HostCert, when set, is presented instead of the bare host key. It must
	// certify HostKey's public key (see CA.SignHost).
	HostCert *ssh.Certificate
	// AuthorizedKeys are the client public keys accepted for public key auth.
	AuthorizedKeys []ssh.PublicKey
	// Password, when not empty, is accepted for password auth.
	Password string
	// Users, when not empty, are the only user names accepted; by default any
	// user name is accepted.
	Users []string
	// Env is added to the environment of every command ("KEY=value").
	Env []string
	// Dir is the working directory of commands and the base of relative SFTP
	// paths; empty means the test process's working directory.
	Dir string
	// Shell runs command lines as Shell -c CMD; empty means /bin/sh.
	Shell string
	// Sudo selects how command lines starting with sudo are treated.
	Sudo SudoMode
	// Exec, when set, is offered every command line first.
	Exec ExecFunc
	// MaxSessions bounds the session channels (commands and SFTP) open at
	// once on one connection, like OpenSSH's MaxSessions: 0 means OpenSSH's
	// default of 10, a negative value means no limit. A session beyond the
	// limit is refused as OpenSSH does ("administratively prohibited").
	MaxSessions int
	// NoFsync hides the fsync@openssh.com SFTP extension, like an old or
	// non-OpenSSH server.
	NoFsync bool
	// WithholdKeepaliveReplies leaves keepalive@openssh.com requests
	// unanswered, like a server whose replies are stuck behind bulk data on
	// a loaded machine: the connection otherwise works as usual.
	WithholdKeepaliveReplies bool
}

// Server is a running test server. All methods are safe for concurrent use.
type Server struct {
	cfg     Config
	sshCfg  *ssh.ServerConfig
	hostKey ssh.PublicKey
	ln      net.Listener
	wg      sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	conns      map[net.Conn]struct{}
	commands   []string
	ops        []Op
	logins     []string
	tunnels    []string
	keepalives int   // keepalive@openssh.com requests received
	cutAfter   int64 // armed byte budget for the next SFTP write stream; -1 = disarmed
	corrupt    bool  // flip a byte of the next SFTP WRITE payload
}

// Start starts a server on 127.0.0.1:0 and registers t.Cleanup(s.Close).
// It fails the test when the server cannot start.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("start ssh test server: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server on 127.0.0.1:0. Callers must Close it; tests should
// prefer Start.
func New(cfg Config) (*Server, error) {
	if cfg.HostKey == nil {
		k, err := newEd25519Signer()
		if err != nil {
			return nil, err
		}
		cfg.HostKey = k
	}
	if cfg.Shell == "" {
		cfg.Shell = "/bin/sh"
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 10
	}
	s := &Server{cfg: cfg, hostKey: cfg.HostKey.PublicKey(), conns: map[net.Conn]struct{}{}, cutAfter: -1}
	s.sshCfg = &ssh.ServerConfig{
		PublicKeyCallback: s.checkPublicKey,
		ServerVersion:     "SSH-2.0-OpenSSH_9.2p1 sshtest",
	}
	if cfg.Password != "" {
		s.sshCfg.PasswordCallback = s.checkPassword
	}
	hostSigner := cfg.HostKey
	if cfg.HostCert != nil {
		cs, err := ssh.NewCertSigner(cfg.HostCert, cfg.HostKey)
		if err != nil {
			return nil, fmt.Errorf("use host certificate: %w", err)
		}
		hostSigner = cs
	}
	s.sshCfg.AddHostKey(hostSigner)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the listening address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port returns the listening TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// HostKey returns the server's host public key (the bare key, also when a
// certificate is presented).
func (s *Server) HostKey() ssh.PublicKey { return s.hostKey }

// KnownHostsLine returns a known_hosts line pinning this server's host key
// for its address ("[127.0.0.1]:PORT ssh-ed25519 ...").
func (s *Server) KnownHostsLine() string { return KnownHostsLine(s.Addr(), s.hostKey) }

// Commands returns every exec command line received, in order, exactly as
// the client sent it.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Ops returns the file operations (SFTP requests) and command lines the
// server received, in order of arrival: the order a client sent them on
// one connection. A request is recorded when it arrives, whether or not it
// then succeeds.
func (s *Server) Ops() []Op {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Op(nil), s.ops...)
}

// Keepalives returns the number of keepalive@openssh.com requests
// received on all connections (answered or withheld).
func (s *Server) Keepalives() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keepalives
}

// Logins returns the user name of every successful authentication, in order.
func (s *Server) Logins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

// Tunnels returns the "host:port" target of every direct-tcpip channel
// opened, in order (whether or not the dial succeeded).
func (s *Server) Tunnels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tunnels...)
}

// CutAfterBytes arms a one-shot cut: the next SFTP session that writes file
// data gets n bytes of WRITE payload through to the filesystem, and the TCP
// connection carrying it is closed when the next WRITE would exceed n.
func (s *Server) CutAfterBytes(n int64) {
	if n < 0 {
		n = 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cutAfter = n
}

// CorruptNextWrite arms a one-shot corruption: one byte of the next SFTP
// WRITE payload (of any session) is flipped before it reaches the file, so
// the data that lands differs from what the client sent.
func (s *Server) CorruptNextWrite() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt = true
}

// takeCorrupt claims the armed corruption, if any.
func (s *Server) takeCorrupt() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.corrupt
	s.corrupt = false
	return c
}

// takeCut claims the armed cut budget, if any.
func (s *Server) takeCut() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cutAfter < 0 {
		return 0, false
	}
	n := s.cutAfter
	s.cutAfter = -1
	return n, true
}

// DropConnections closes every open client connection now. The server keeps
// accepting new connections.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Close stops accepting, drops every connection, kills running commands and
// waits for all server goroutines to finish. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.ln.Close()
	s.DropConnections()
	s.wg.Wait()
}

// recordOp records op, with a snapshot of its path when it is an SFTP op.
func (s *Server) recordOp(op Op) {
	if op.Kind != OpExec {
		op = snapshot(op)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = append(s.ops, op)
}

func (s *Server) record(list *[]string, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*list = append(*list, v)
}

func (s *Server) userAllowed(user string) bool {
	if len(s.cfg.Users) == 0 {
		return true
	}
	for _, u := range s.cfg.Users {
		if u == user {
			return true
		}
	}
	return false
}

func (s *Server) checkPublicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if !s.userAllowed(meta.User()) {
		return nil, fmt.Errorf("user %q not allowed", meta.User())
	}
	want := key.Marshal()
	for _, k := range s.cfg.AuthorizedKeys {
		if string(k.Marshal()) == string(want) {
			return &ssh.Permissions{}, nil
		}
	}
	return nil, errors.New("public key not authorized")
}

func (s *Server) checkPassword(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	if !s.userAllowed(meta.User()) {
		return nil, fmt.Errorf("user %q not allowed", meta.User())
	}
	if string(password) != s.cfg.Password {
		return nil, errors.New("wrong password")
	}
	return &ssh.Permissions{}, nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// serveConn runs one client connection until it ends.
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(c, s.sshCfg)
	if err != nil {
		return
	}
	defer sconn.Close()
	s.record(&s.logins, sconn.User())

	var wg sync.WaitGroup
	defer wg.Wait()
	gone := make(chan struct{}) // closed when the connection has ended
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := range reqs {
			// keepalive@openssh.com and every other global request: OpenSSH
			// answers keepalives; we answer true to them (unless withholding
			// keepalive replies) and false otherwise.
			if r.Type == "keepalive@openssh.com" {
				s.mu.Lock()
				s.keepalives++
				s.mu.Unlock()
				if s.cfg.WithholdKeepaliveReplies {
					continue
				}
			}
			if r.WantReply {
				r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}()
	var smu sync.Mutex
	sessions := 0 // open session channels
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			smu.Lock()
			full := s.cfg.MaxSessions > 0 && sessions >= s.cfg.MaxSessions
			if !full {
				sessions++
			}
			smu.Unlock()
			if full {
				nc.Reject(ssh.Prohibited, "open failed")
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				smu.Lock()
				sessions--
				smu.Unlock()
				continue
			}
			// The slot is freed before the server closes the channel, so a
			// client that saw a command end can open a new session at once.
			release := sync.OnceFunc(func() {
				smu.Lock()
				sessions--
				smu.Unlock()
			})
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer release()
				s.serveSession(c, releasingChannel{ch, release}, creqs)
			}()
		case "direct-tcpip":
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serveDirectTCPIP(nc, gone)
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, "unsupported channel type "+nc.ChannelType())
		}
	}
	// The connection is gone: make sure sessions and tunnels notice.
	c.Close()
	close(gone)
}

// releasingChannel frees its session slot when closed.
type releasingChannel struct {
	ssh.Channel
	release func()
}

func (c releasingChannel) Close() error {
	c.release()
	return c.Channel.Close()
}

// serveDirectTCPIP forwards one direct-tcpip channel to its target.
func (s *Server) serveDirectTCPIP(nc ssh.NewChannel, gone <-chan struct{}) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	addr := net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))
	s.record(&s.tunnels, addr)
	tc, err := net.Dial("tcp", addr)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		tc.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(tc, ch)
		if cw, ok := tc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		io.Copy(ch, tc)
		ch.CloseWrite()
		done <- struct{}{}
	}()
	for n := 0; n < 2; {
		select {
		case <-done:
			n++
		case <-gone:
			// The SSH connection ended: unblock both copies.
			tc.Close()
			ch.Close()
			gone = nil
		}
	}
	ch.Close()
	tc.Close()
}
