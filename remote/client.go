package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
)

// Options says how to reach one host. The zero value of every field means
// "what ssh_config says, else OpenSSH's default".
type Options struct {
	Alias           string   // host as the user/inventory names it; ssh_config "Host" patterns match this
	HostName        string   // overrides ssh_config HostName (inventory ansible_host)
	Port            int      // 0 = ssh_config or 22
	User            string   // "" = ssh_config or current user
	IdentityFiles   []string // extra identity files (inventory / --private-key), tried with agent keys
	SSHConfigFile   string   // "" = ~/.ssh/config (+ /etc/ssh/ssh_config); "none" = no config file
	KnownHostsFiles []string // extra known_hosts files (inventory), read in addition to the user and global ones
	PinnedKeys      []string // authorized_keys-format host keys pinned in the inventory; when set, ONLY these are accepted
	StateKnownHosts string   // kmsctl's own known_hosts file: always read; written only in AcceptNew mode
	AcceptNew       bool     // trust an UNKNOWN key of the target by appending it to StateKnownHosts (never a changed/revoked one)
	// ExpectedKeys are SHA256 fingerprints ("SHA256:...") of the target's
	// new host key after a planned change (a replaced host): when set, ONLY
	// a key with one of them is accepted (known_hosts and PinnedKeys are
	// not asked, @revoked entries still refuse), and a key that known_hosts
	// does not already trust then replaces the host's entries in
	// StateKnownHosts. Other known_hosts files are never edited.
	ExpectedKeys    []string
	ProxyJump       string         // overrides ssh_config ProxyJump; "none" disables; comma-separated multi-hop "user@host:port,host2"
	ConnectTimeout  time.Duration  // per hop: TCP connect + handshake + auth; 0 = ssh_config ConnectTimeout or 15s
	KeepAlive       time.Duration  // liveness check interval; 3 in a row with nothing received from the server => dead (keepalive@openssh.com sent when silent); 0 = ssh_config ServerAliveInterval or 15s
	SFTPConcurrency int            // SFTP requests in flight per file transfer; 0 = sftpInFlight of the packet size
	SFTPPacketSize  int            // bytes per SFTP read/write request; 0 = chosen per server (see sftpPacketSize)
	MaxSessions     int            // session channels open at once on the connection (commands + the SFTP session); 0 = 10, sshd's default MaxSessions
	AgentSocket     string         // ssh-agent socket; "" = $SSH_AUTH_SOCK; "none" = do not use an agent
	Logger          zerolog.Logger // debug-level tracing goes here; the zero value discards
}

// Client is one reused SSH connection to a host (through its ProxyJump
// hops), with one lazily opened SFTP session. It is safe for concurrent use.
// A connection that died is re-dialled on the next call, with jittered,
// bounded back-off; an operation that was in flight when it died fails with
// a *LostError and is never repeated.
type Client struct {
	o    Options
	host string
	log  zerolog.Logger
	// runSlots bounds the commands running at once, so that they and the
	// SFTP session stay within the server's MaxSessions.
	runSlots chan struct{}

	mu     sync.Mutex // guards cur and closed; held while re-dialling
	cur    *sshConn
	closed bool
}

// Dial connects to the host o describes and verifies its host key. Errors
// that mean the host was not reached are *DialError (Unreachable() true),
// wrapping a *HostKeyError when the host key failed verification.
func Dial(ctx context.Context, o Options) (*Client, error) {
	c := &Client{o: o, host: o.Alias, log: o.Logger}
	if c.host == "" {
		c.host = o.HostName
	}
	maxSessions := o.MaxSessions
	if maxSessions <= 0 {
		maxSessions = defaultMaxSessions
	}
	c.runSlots = make(chan struct{}, max(maxSessions-1, 1)) // one is the SFTP session's
	sc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = sc
	return c, nil
}

// Host returns the host as the inventory names it.
func (c *Client) Host() string { return c.host }

// Close closes the connection. Operations in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cur != nil {
		c.cur.close()
		c.cur = nil
	}
	return nil
}

// errClosed is returned by calls on a closed Client.
var errClosed = errors.New("connection closed by kmsctl")

// Re-dial back-off bounds.
const (
	redialTries    = 3
	redialMinDelay = 200 * time.Millisecond
	redialMaxDelay = 2 * time.Second
)

// conn returns the live connection, re-dialling a dead one.
func (c *Client) conn(ctx context.Context) (*sshConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("use connection to %s: %w", c.host, errClosed)
	}
	if c.cur != nil && !c.cur.isDead() {
		return c.cur, nil
	}
	if c.cur != nil {
		c.log.Info().Str("host", c.host).Msg("ssh connection lost; reconnecting")
		c.cur.close()
		c.cur = nil
	}
	var err error
	delay := redialMinDelay
	for try := 1; try <= redialTries; try++ {
		if try > 1 {
			// Full jitter between delay/2 and delay.
			d := delay/2 + rand.N(delay/2+1)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("reconnect to %s: %w (last error: %w)", c.host, ctx.Err(), err)
			case <-t.C:
			}
			delay = min(delay*3, redialMaxDelay)
		}
		var sc *sshConn
		sc, err = c.dial(ctx)
		if err == nil {
			c.cur = sc
			return sc, nil
		}
		if permanent(err) {
			break
		}
		c.log.Debug().Str("host", c.host).Int("try", try).Err(err).Msg("reconnect failed")
	}
	return nil, err
}

// permanent reports whether a dial error will not go away by retrying
// (host key or authentication or configuration problems).
func permanent(err error) bool {
	var hk *HostKeyError
	var ae *authError
	var ce *configError
	return errors.As(err, &hk) || errors.As(err, &ae) || errors.As(err, &ce)
}

// authError marks an authentication failure.
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// configError marks an ssh_config or Options problem.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// dial makes one connection attempt through every hop.
func (c *Client) dial(ctx context.Context) (*sshConn, error) {
	sc, err := c.dialHops(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// Cancelled by the caller: not a verdict on the host.
			return nil, fmt.Errorf("connect to %s: %w", c.host, context.Cause(ctx))
		}
		return nil, &DialError{Host: c.host, Err: err}
	}
	go sc.keepalive(sc.keepAlive, c.log.With().Str("host", c.host).Logger())
	return sc, nil
}

func (c *Client) dialHops(ctx context.Context) (*sshConn, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, &configError{fmt.Errorf("find home directory: %w", err)}
	}
	cfg, err := loadSSHConfig(c.o.SSHConfigFile, home)
	if err != nil {
		return nil, &configError{err}
	}
	target, err := resolve(c.o, cfg, home)
	if err != nil {
		return nil, &configError{err}
	}
	agentSock := c.o.AgentSocket
	if agentSock == "" {
		agentSock = os.Getenv("SSH_AUTH_SOCK")
	} else if agentSock == "none" {
		agentSock = ""
	}

	sc := &sshConn{dead: make(chan struct{}), rx: &rxCounter{}}
	var dialFn func(ctx context.Context, network, addr string) (net.Conn, error)
	dialFn = (&net.Dialer{}).DialContext
	for _, j := range target.proxyJump {
		hop, err := resolve(Options{
			Alias: j.host, User: j.user, Port: j.port, ProxyJump: "none",
			IdentityFiles: c.o.IdentityFiles, KnownHostsFiles: c.o.KnownHostsFiles,
			StateKnownHosts: c.o.StateKnownHosts, ConnectTimeout: c.o.ConnectTimeout,
		}, cfg, home)
		if err != nil {
			sc.close()
			return nil, &configError{fmt.Errorf("ProxyJump hop %s: %w", j.host, err)}
		}
		hv, err := newHostKeyVerifier(hop.knownHosts, nil, nil, "", "", false, c.log)
		if err != nil {
			sc.close()
			return nil, &configError{err}
		}
		cl, err := c.handshake(ctx, dialFn, hop, hv, agentSock)
		if err != nil {
			sc.close()
			return nil, fmt.Errorf("via ProxyJump %s: %w", hop.alias, err)
		}
		sc.hops = append(sc.hops, cl)
		dialFn = cl.DialContext
	}
	v, err := newHostKeyVerifier(target.knownHosts, c.o.PinnedKeys, c.o.ExpectedKeys, c.host, expandHome(c.o.StateKnownHosts, home), c.o.AcceptNew, c.log)
	if err != nil {
		sc.close()
		return nil, &configError{err}
	}
	cl, err := c.handshake(ctx, sc.rx.dialer(dialFn), target, v, agentSock)
	if err != nil {
		sc.close()
		return nil, err
	}
	sc.client = cl
	sc.keepAlive = target.keepAlive
	go func() {
		cl.Wait()
		close(sc.dead)
	}()
	return sc, nil
}

// handshake connects to e with dialFn and runs the SSH handshake and
// authentication, all within e.connectTimeout.
func (c *Client) handshake(ctx context.Context, dialFn func(context.Context, string, string) (net.Conn, error), e *endpoint, v *hostKeyVerifier, agentSock string) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, e.connectTimeout)
	defer cancel()
	log := c.log.With().Str("host", e.alias).Str("addr", e.addr()).Str("user", e.user).Logger()
	log.Debug().Msg("ssh connect")

	auth, err := newAuthenticator(e, agentSock, log)
	if err != nil {
		return nil, &configError{err}
	}
	defer auth.close()

	conn, err := dialFn(ctx, "tcp", e.addr())
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) { // "dial tcp ADDR: ..." names the address already
			return nil, err
		}
		return nil, fmt.Errorf("dial %s: %w", e.addr(), err)
	}
	// The handshake has no context: bound it by a deadline and by closing
	// the connection when ctx ends.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d.Add(time.Second)) // backstop; the AfterFunc below normally fires first
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cfg := &ssh.ClientConfig{
		User:              e.user,
		Auth:              auth.methods(),
		HostKeyCallback:   v.callback,
		HostKeyAlgorithms: v.algorithms(e.addr()),
		ClientVersion:     "SSH-2.0-kmsctl",
	}
	sconn, chans, reqs, err := ssh.NewClientConn(conn, e.addr(), cfg)
	stopped := stop()
	if err == nil && !stopped {
		sconn.Close()
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			var hk *HostKeyError
			if !errors.As(err, &hk) {
				return nil, fmt.Errorf("ssh handshake with %s (connect timeout %v): %w", e.addr(), e.connectTimeout, context.Cause(ctx))
			}
		}
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, &authError{auth.explain(e.user, err)}
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", e.addr(), err)
	}
	conn.SetDeadline(time.Time{})
	log.Debug().Msg("ssh connected")
	return ssh.NewClient(sconn, chans, reqs), nil
}

// sshConn is one live SSH connection and what hangs off it.
type sshConn struct {
	client *ssh.Client
	hops   []*ssh.Client // ProxyJump connections, innermost last
	dead   chan struct{} // closed when client's connection ended
	// keepAlive is the interval of the liveness check (see keepalive).
	keepAlive time.Duration
	// rx counts the reads of the target's connection that returned bytes:
	// any traffic from the server is proof of life.
	rx *rxCounter

	sftpMu sync.Mutex
	sftp   *sftp.Client
	// sftpPacket and sftpInFlight are the SFTP session's request size and
	// requests in flight per file, chosen when it was opened.
	sftpPacket, sftpInFlight int
}

func (s *sshConn) isDead() bool {
	if s.client == nil {
		return true
	}
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

// waitDead reports whether the connection dies within d: an operation
// error may reach us just before the connection's end is noticed.
func (s *sshConn) waitDead(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.dead:
		return true
	case <-t.C:
		return false
	}
}

func (s *sshConn) close() {
	s.sftpMu.Lock()
	if s.sftp != nil {
		s.sftp.Close()
		s.sftp = nil
	}
	s.sftpMu.Unlock()
	if s.client != nil {
		s.client.Close()
	}
	for i := len(s.hops) - 1; i >= 0; i-- {
		s.hops[i].Close()
	}
}
