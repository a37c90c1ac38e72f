package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/tasks"
)

// target is how to reach one host: from the inventory's SSH settings or
// from a HOST argument on the command line.
type target struct {
	// Name is the host as shown in output (the inventory name or the argument).
	Name string
	// Alias is what ssh_config Host patterns are matched against.
	Alias         string
	HostName      string
	Port          int
	User          string
	IdentityFiles []string
	KnownHosts    []string
	PinnedKeys    []string
	ProxyJump     string
	Become        bool
	BecomeUser    string
}

// inventoryTarget describes an inventory host from its resolved SSH settings.
func inventoryTarget(c inventory.SSHSettings) target {
	t := target{
		Name: c.Host, Alias: c.Host, Port: c.Port, User: c.User,
		PinnedKeys: c.SSHHostKeys, ProxyJump: c.ProxyJump,
		Become: c.Become, BecomeUser: c.BecomeUser,
	}
	if c.Address != "" && c.Address != c.Host {
		t.HostName = c.Address
	}
	if c.PrivateKeyFile != "" {
		t.IdentityFiles = []string{c.PrivateKeyFile}
	}
	if c.KnownHostsFile != "" {
		t.KnownHosts = []string{c.KnownHostsFile}
	}
	return t
}

// parseHostArg parses a HOST argument: [user@]host[:port], with IPv6
// addresses in brackets ([::1]:2222), or an ssh_config alias.
func parseHostArg(s string) (target, error) {
	t := target{Name: s}
	rest := s
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		t.User, rest = rest[:i], rest[i+1:]
		if t.User == "" {
			return t, fmt.Errorf("host %q: empty user before @", s)
		}
	}
	host := rest
	if strings.HasPrefix(rest, "[") || strings.Count(rest, ":") == 1 {
		h, p, err := net.SplitHostPort(rest)
		if err != nil {
			if strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") {
				h = strings.Trim(rest, "[]")
			} else {
				return t, fmt.Errorf("host %q: want [user@]host[:port]: %v", s, err)
			}
		} else {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return t, fmt.Errorf("host %q: port %q is not a number from 1 to 65535", s, p)
			}
			t.Port = n
		}
		host = h
	}
	if host == "" {
		return t, fmt.Errorf("host %q: empty host name", s)
	}
	t.Alias = host
	return t, nil
}

// dialer connects to targets with the global SSH flags.
type dialer struct {
	o options
	// inv resolves delegate_to hosts outside the plays (nil: no inventory).
	inv             *inventory.Inventory
	stateKnownHosts string
	logger          zerolog.Logger
	red             *redact.Redactor

	mu sync.Mutex
	// hostKeyErrs are the host key refusals of the run, by host name.
	hostKeyErrs map[string]*remote.HostKeyError
}

// hostKeyErrors returns the hosts whose host key was refused in this run.
func (d *dialer) hostKeyErrors() map[string]*remote.HostKeyError {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.hostKeyErrs)
}

// options returns the remote.Options for t. Inventory and argument values
// win over the flags, which are defaults (as in Ansible, where inventory
// connection variables override -u and --private-key).
func (d *dialer) options(t target) remote.Options {
	ro := remote.Options{
		Alias:           t.Alias,
		HostName:        t.HostName,
		Port:            t.Port,
		User:            t.User,
		IdentityFiles:   t.IdentityFiles,
		SSHConfigFile:   d.o.SSHConfig,
		KnownHostsFiles: append(append([]string(nil), t.KnownHosts...), d.o.KnownHosts...),
		PinnedKeys:      t.PinnedKeys,
		StateKnownHosts: d.stateKnownHosts,
		AcceptNew:       d.o.AcceptNew,
		ExpectedKeys:    d.o.ExpectHostKeys[t.Name],
		ProxyJump:       t.ProxyJump,
		Logger:          d.logger,
	}
	if ro.User == "" {
		ro.User = d.o.User
	}
	if d.o.PrivateKey != "" {
		ro.IdentityFiles = append(ro.IdentityFiles, d.o.PrivateKey)
	}
	return ro
}

// connect is the engine's Connect: it dials h from the resolved host the
// command put in h.Target (an inventory.Host or a parsed HOST argument),
// without resolving it again.
func (d *dialer) connect(ctx context.Context, h tasks.Host) (tasks.Conn, error) {
	t, err := d.target(h)
	if err != nil {
		return nil, err
	}
	return d.dial(ctx, t)
}

// target returns how to reach h. A host without a Target is a delegate_to
// host outside the plays, known by name only: an inventory host, resolved
// here (the engine connects to a host once per run), else an ssh_config
// alias or [user@]host[:port] as for ping.
func (d *dialer) target(h tasks.Host) (target, error) {
	switch v := h.Target.(type) {
	case inventory.Host:
		return inventoryTarget(v.SSH), nil
	case target:
		return v, nil
	case nil:
		if d.inv != nil && d.inv.HasHost(h.Name) {
			ih, err := d.inv.Resolve(h.Name, d.o.ExtraVars)
			if err != nil {
				return target{}, fmt.Errorf("resolve host %s: %w", h.Name, err)
			}
			return inventoryTarget(ih.SSH), nil
		}
		t, err := parseHostArg(h.Name)
		if err != nil {
			return target{}, fmt.Errorf("delegate host: %w", err)
		}
		return t, nil
	}
	return target{}, fmt.Errorf("connect to %s: no SSH settings in a %T", h.Name, h.Target)
}

// dial connects to t.
func (d *dialer) dial(ctx context.Context, t target) (tasks.Conn, error) {
	ro := d.options(t)
	c, err := remote.Dial(ctx, ro)
	if err != nil {
		var hk *remote.HostKeyError
		if errors.As(err, &hk) {
			d.mu.Lock()
			if d.hostKeyErrs == nil {
				d.hostKeyErrs = map[string]*remote.HostKeyError{}
			}
			d.hostKeyErrs[t.Name] = hk
			d.mu.Unlock()
		}
		return nil, err
	}
	// Commands are traced at debug level (the run log, and stderr with
	// -vv); secrets are masked in captured output and traced commands.
	return remote.Redact(remote.Trace(c, ro.Logger), d.red), nil
}

// become runs a connection's commands as user (sudo -n), for the engine.
func become(c tasks.Conn, user string) tasks.Conn { return remote.Become(c, user) }
