package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// Defaults used when neither Options nor ssh_config say otherwise.
const (
	defaultPort           = 22
	defaultConnectTimeout = 15 * time.Second
	defaultKeepAlive      = 15 * time.Second
	defaultMaxSessions    = 10 // OpenSSH sshd's MaxSessions default
	systemSSHConfig       = "/etc/ssh/ssh_config"
	systemKnownHosts      = "/etc/ssh/ssh_known_hosts"
)

// endpoint is one SSH server to connect to, fully resolved from Options and
// ssh_config.
type endpoint struct {
	alias          string // as the user named it (Host patterns match this)
	hostName       string
	port           int
	user           string
	identityFiles  []string // explicit files (ssh_config, Options), ~ expanded
	defaultIDs     bool     // identityFiles are the ~/.ssh defaults: missing ones are skipped silently
	identitiesOnly bool
	connectTimeout time.Duration
	keepAlive      time.Duration // keepalive interval (Options, ServerAliveInterval, 15s)
	knownHosts     []string      // user + global (+ extra + state) known_hosts files, in order
	proxyJump      []jumpSpec
}

// addr returns host:port for dialing and for known_hosts lookups.
func (e *endpoint) addr() string { return net.JoinHostPort(e.hostName, strconv.Itoa(e.port)) }

// jumpSpec is one ProxyJump hop as written: [user@]host[:port].
type jumpSpec struct {
	user string
	host string
	port int
}

// sshConfig is the set of parsed ssh_config files, searched in order; the
// first value found for a key wins, as in OpenSSH.
type sshConfig struct {
	files []*ssh_config.Config
	names []string
}

// loadSSHConfig reads the ssh_config files selected by name ("" = the user's
// ~/.ssh/config and /etc/ssh/ssh_config, "none" = none, else that file only,
// as ssh -F does).
func loadSSHConfig(name, home string) (*sshConfig, error) {
	c := &sshConfig{}
	var paths []string
	required := false
	switch name {
	case "none":
		return c, nil
	case "":
		paths = []string{filepath.Join(home, ".ssh", "config"), systemSSHConfig}
	default:
		paths = []string{expandHome(name, home)}
		required = true
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) && !required {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read ssh config: %w", err)
		}
		cfg, err := ssh_config.DecodeBytes(b)
		if err != nil {
			return nil, fmt.Errorf("parse ssh config %s: %w", p, err)
		}
		c.files = append(c.files, cfg)
		c.names = append(c.names, p)
	}
	return c, nil
}

// get returns the first value of key for alias, and the file it came from.
func (c *sshConfig) get(alias, key string) (string, string, error) {
	for i, f := range c.files {
		v, err := f.Get(alias, key)
		if err != nil {
			return "", "", fmt.Errorf("ssh config %s: %s: %w", c.names[i], key, err)
		}
		if v != "" {
			return v, c.names[i], nil
		}
	}
	return "", "", nil
}

// getAll returns every value of key for alias across all files.
func (c *sshConfig) getAll(alias, key string) ([]string, error) {
	var all []string
	for i, f := range c.files {
		v, err := f.GetAll(alias, key)
		if err != nil {
			return nil, fmt.Errorf("ssh config %s: %s: %w", c.names[i], key, err)
		}
		all = append(all, v...)
	}
	return all, nil
}

// resolve computes the endpoint for o.Alias from o and the ssh_config files.
// Options fields, when set, override ssh_config, as command-line flags do
// for ssh.
func resolve(o Options, cfg *sshConfig, home string) (*endpoint, error) {
	alias := o.Alias
	if alias == "" {
		alias = o.HostName
	}
	if alias == "" {
		return nil, errors.New("no host given")
	}
	e := &endpoint{alias: alias}
	get := func(key string) (string, string, error) { return cfg.get(alias, key) }

	if v, file, err := get("StrictHostKeyChecking"); err != nil {
		return nil, err
	} else if s := strings.ToLower(v); s == "no" || s == "off" {
		return nil, fmt.Errorf("%s sets \"StrictHostKeyChecking %s\" for %s: kmsctl never connects without verifying the host key; remove that setting for this host, and pin the key in the inventory (kms_ssh_host_keys), add it to a known_hosts file, or use --accept-new-host-keys for a host you are provisioning", file, v, alias)
	}

	// HostName.
	e.hostName = o.HostName
	if e.hostName == "" {
		v, _, err := get("HostName")
		if err != nil {
			return nil, err
		}
		e.hostName = strings.NewReplacer("%h", alias, "%%", "%").Replace(v)
	}
	if e.hostName == "" {
		e.hostName = alias
	}

	// Port.
	e.port = o.Port
	if e.port == 0 {
		v, file, err := get("Port")
		if err != nil {
			return nil, err
		}
		if v != "" {
			p, err := strconv.Atoi(v)
			if err != nil || p <= 0 || p > 65535 {
				return nil, fmt.Errorf("%s: invalid Port %q for %s", file, v, alias)
			}
			e.port = p
		}
	}
	if e.port == 0 {
		e.port = defaultPort
	}

	// User.
	e.user = o.User
	if e.user == "" {
		v, _, err := get("User")
		if err != nil {
			return nil, err
		}
		e.user = v
	}
	if e.user == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("find local user name for %s (set a user in the inventory or ssh config): %w", alias, err)
		}
		e.user = u.Username
	}

	// Identities.
	ids, err := cfg.getAll(alias, "IdentityFile")
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if strings.EqualFold(id, "none") {
			continue
		}
		e.identityFiles = append(e.identityFiles, expandTokens(id, home, e))
	}
	for _, id := range o.IdentityFiles {
		e.identityFiles = append(e.identityFiles, expandHome(id, home))
	}
	if len(ids) == 0 && len(o.IdentityFiles) == 0 {
		e.defaultIDs = true
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			e.identityFiles = append(e.identityFiles, filepath.Join(home, ".ssh", n))
		}
	}
	if v, _, err := get("IdentitiesOnly"); err != nil {
		return nil, err
	} else {
		e.identitiesOnly = strings.EqualFold(v, "yes")
	}

	// ConnectTimeout.
	e.connectTimeout = o.ConnectTimeout
	if e.connectTimeout == 0 {
		v, file, err := get("ConnectTimeout")
		if err != nil {
			return nil, err
		}
		if v != "" {
			s, err := strconv.Atoi(v)
			if err != nil || s < 0 {
				return nil, fmt.Errorf("%s: invalid ConnectTimeout %q for %s", file, v, alias)
			}
			e.connectTimeout = time.Duration(s) * time.Second
		}
	}
	if e.connectTimeout == 0 {
		e.connectTimeout = defaultConnectTimeout
	}

	// Keepalive interval.
	e.keepAlive = o.KeepAlive
	if e.keepAlive == 0 {
		v, file, err := get("ServerAliveInterval")
		if err != nil {
			return nil, err
		}
		if v != "" {
			s, err := strconv.Atoi(v)
			if err != nil || s < 0 {
				return nil, fmt.Errorf("%s: invalid ServerAliveInterval %q for %s", file, v, alias)
			}
			e.keepAlive = time.Duration(s) * time.Second
		}
	}
	if e.keepAlive <= 0 {
		e.keepAlive = defaultKeepAlive
	}

	// Known hosts: user files, global files, the inventory's, kmsctl's own.
	userKH, _, err := get("UserKnownHostsFile")
	if err != nil {
		return nil, err
	}
	if userKH == "" {
		userKH = "~/.ssh/known_hosts ~/.ssh/known_hosts2"
	}
	globalKH, _, err := get("GlobalKnownHostsFile")
	if err != nil {
		return nil, err
	}
	if globalKH == "" {
		globalKH = systemKnownHosts + " /etc/ssh/ssh_known_hosts2"
	}
	for _, f := range append(strings.Fields(userKH), strings.Fields(globalKH)...) {
		if f == "none" || f == "/dev/null" {
			continue
		}
		e.knownHosts = append(e.knownHosts, expandTokens(f, home, e))
	}
	for _, f := range o.KnownHostsFiles {
		e.knownHosts = append(e.knownHosts, expandHome(f, home))
	}
	if o.StateKnownHosts != "" {
		e.knownHosts = append(e.knownHosts, expandHome(o.StateKnownHosts, home))
	}

	// ProxyJump.
	jump := o.ProxyJump
	if jump == "" {
		v, file, err := get("ProxyJump")
		if err != nil {
			return nil, err
		}
		jump = v
		if jump == "" {
			pc, _, err := get("ProxyCommand")
			if err != nil {
				return nil, err
			}
			if pc != "" && !strings.EqualFold(pc, "none") {
				return nil, fmt.Errorf("%s: ProxyCommand is set for %s but kmsctl supports only ProxyJump: replace it with \"ProxyJump bastion\" (or set ProxyJump none)", file, alias)
			}
		}
	}
	if jump != "" && !strings.EqualFold(jump, "none") {
		hops, err := parseProxyJump(jump)
		if err != nil {
			return nil, fmt.Errorf("ProxyJump for %s: %w", alias, err)
		}
		e.proxyJump = hops
	}
	return e, nil
}

// parseProxyJump splits "user@host:port,host2,ssh://u@h3:2222" into hops.
func parseProxyJump(s string) ([]jumpSpec, error) {
	var hops []jumpSpec
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(h), "ssh://"))
		if h == "" {
			return nil, fmt.Errorf("empty hop in %q", s)
		}
		var j jumpSpec
		if i := strings.LastIndexByte(h, '@'); i >= 0 {
			j.user, h = h[:i], h[i+1:]
		}
		host, port := h, ""
		if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
			var err error
			host, port, err = net.SplitHostPort(h)
			if err != nil {
				return nil, fmt.Errorf("hop %q: %w", h, err)
			}
		}
		if port != "" {
			p, err := strconv.Atoi(port)
			if err != nil || p <= 0 || p > 65535 {
				return nil, fmt.Errorf("hop %q: invalid port", h)
			}
			j.port = p
		}
		if host == "" {
			return nil, fmt.Errorf("hop %q has no host", h)
		}
		j.host = host
		hops = append(hops, j)
	}
	return hops, nil
}

// expandHome replaces a leading ~ with home.
func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

// expandTokens expands ~ and the ssh_config tokens %d %h %r %u %p %n %%.
func expandTokens(p, home string, e *endpoint) string {
	p = expandHome(p, home)
	if !strings.Contains(p, "%") {
		return p
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	return strings.NewReplacer("%%", "%", "%d", home, "%h", e.hostName, "%r", e.user,
		"%u", local, "%p", strconv.Itoa(e.port), "%n", e.alias).Replace(p)
}
