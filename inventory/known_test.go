package inventory

import (
	"math"
	"strings"
	"testing"
)

// TestKnownValueChecks: each known variable's value check at its edges, as
// a vars file written by a user decodes it. want is "" for a value that is
// accepted, else the start of the problem.
func TestKnownValueChecks(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, c := range []struct{ name, yaml, want string }{
		// Ports: 1 to 65535; a number too large for any integer type is
		// not an integer, not a wrapped-around one.
		{VarPort, "1", ""},
		{VarPort, "65535", ""},
		{VarPort, `"22"`, ""},
		{VarPort, "0", "port 0 out of range"},
		{VarPort, "65536", "port 65536 out of range"},
		{VarPort, "18446744073709551615", "must be a port number, got a number"},
		{VarPort, "[22]", "must be a port number, got a list"},
		{VarGroupPriority, "18446744073709551615", "must be an integer, got a number"},
		// Booleans: 1 and 0 as Ansible allows, no other number.
		{VarBecome, "1", ""},
		{VarBecome, "0", ""},
		{VarBecome, "2", "must be a boolean, got a number"},
		{VarBecome, "[yes]", "must be a boolean, got a list"},
		// Addresses: a DNS name is at most 253 characters.
		{VarHost, long(253), ""},
		{VarHost, long(254), "invalid address"},
		// Login names: at most 64 characters.
		{VarUser, long(64), ""},
		{VarUser, long(65), "invalid user name"},
		{VarKMSUser, long(65), "invalid user name"},
		// Local paths: any string without control characters (a space is fine).
		{VarPrivateKeyFile, `"~/my keys/id_ed25519"`, ""},
		{VarCAFile, `"/etc/ca\u0001.pem"`, "path contains control characters"},
		{VarKnownHosts, `"a\u007fb"`, "path contains control characters"},
		{VarCAFile, "5", "must be a string, got a number"},
		{VarPrivateKeyFile, `""`, "must not be empty"},
		// kms_api: direct or ssh.
		{VarAPI, "direct", ""},
		{VarAPI, "ssh", ""},
		{VarAPI, "tls", `must be direct or ssh, got "tls"`},
		// Pinned host keys: a key or a non-empty list of keys, each
		// "TYPE BASE64 [COMMENT]"; the bad one is named by its place.
		{VarSSHHostKeys, "ssh-ed25519 AAAA", ""},
		{VarSSHHostKeys, "[ssh-ed25519 AAAA, ecdsa-sha2-nistp256 AAAA host]", ""},
		{VarSSHHostKeys, "[]", "empty list of host keys"},
		{VarSSHHostKeys, "5", "must be a list of host keys, got a number"},
		{VarSSHHostKeys, "[ssh-ed25519 AAAA, 5]", "must be a list of keys (strings), got an element that is a number"},
		{VarSSHHostKeys, "[ssh-ed25519 AAAA, ssh-ed25519]", `key 2 is not in authorized_keys format: want "TYPE BASE64 [COMMENT]"`},
		{VarSSHHostKeys, "[AAAA ssh-ed25519]", `key 1 is not in authorized_keys format: "AAAA" is not a key type`},
		{VarSSHHostKeys, "[ssh-ed25519 not-base64!]", "key 1 is not in authorized_keys format: the key data after ssh-ed25519 is not base64"},
		// Proxy jumps: each hop names a host, with or without user@.
		{VarProxyJump, "admin@bastion:2222,jump2", ""},
		{VarProxyJump, `"bastion,@"`, `invalid proxy jump hop "@"`},
		{VarProxyJump, "admin@", `invalid proxy jump hop "admin@"`},
		{VarProxyJump, "bastion,-oProxyCommand=x", `invalid proxy jump hop "-oProxyCommand=x"`},
		// systemd unit names: at most 255 characters, no shell or option syntax.
		// Cluster names: a simple name, at most 64 characters.
		{VarCluster, "kms-eu.1", ""},
		{VarCluster, long(64), ""},
		{VarCluster, long(65), "invalid cluster name"},
		{VarCluster, `"../kms"`, "invalid cluster name"},
		{VarCluster, `".kms"`, "invalid cluster name"},
		{VarCluster, `"kms eu"`, "invalid cluster name"},
		{VarCluster, `""`, "must not be empty"},
		{VarCluster, "5", "must be a string, got a number"},
		{VarService, long(255), ""},
		{VarService, long(256), "invalid systemd unit name"},
		{VarService, `"minkms;reboot"`, "invalid systemd unit name"},
		{VarService, `"-minkms"`, "invalid systemd unit name"},
		{VarService, "5", "must be a string, got a number"},
		// Endpoints: host:port with a host.
		{VarEndpoint, "kms1.example:7373", ""},
		{VarEndpoint, `":7373"`, `must be host:port, got ":7373"`},
		{VarAPIAddress, "kms1.example", `must be host:port, got "kms1.example"`},
		// Key commands: words without control characters, the first not empty.
		{VarAPIKeyCommand, `"pass show 'kms/api key'"`, ""},
		{VarAPIKeyCommand, `"pass show\u0001"`, "command contains control characters"},
		{VarHSMKeyCommand, `[pass, "show\u007f"]`, "command contains control characters"},
		{VarHSMKeyCommand, `["", show]`, "command contains control characters or starts with an empty word"},
	} {
		_, err := ParseVars("v.yml", []byte(c.name+": "+c.yaml+"\n"))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %s refused: %v", c.name, c.yaml, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: %s accepted, want %q", c.name, c.yaml, c.want)
		case c.want != "" && !strings.HasPrefix(err.Error(), "v.yml:1:") || c.want != "" && !strings.Contains(err.Error(), c.name+": "+c.want):
			t.Errorf("%s: %s: %v\nwant %q", c.name, c.yaml, err, c.want)
		}
	}
}

// TestBecomeNumbers: ansible_become 1 and 0 mean true and false.
func TestBecomeNumbers(t *testing.T) {
	inv := mustParse(t, "all:\n  hosts:\n    on:\n      ansible_become: 1\n    off:\n      ansible_become: 0\n")
	for host, want := range map[string]bool{"on": true, "off": false} {
		h, err := inv.Resolve(host, nil)
		if err != nil || h.SSH.Become != want {
			t.Errorf("%s: become = %v, %v; want %v", host, h.SSH.Become, err, want)
		}
	}
}

// TestAsIntInt64: an int64 (what the YAML decoder yields for integers on a
// 32-bit platform) is an integer when it fits in 32 bits, and is refused,
// not truncated, otherwise.
func TestAsIntInt64(t *testing.T) {
	for v, ok := range map[int64]bool{0: true, math.MaxInt32: true, math.MinInt32: true, math.MaxInt32 + 1: false, math.MinInt32 - 1: false} {
		n, got := asInt(v)
		if got != ok || ok && int64(n) != v {
			t.Errorf("asInt(int64(%d)) = %d, %v; want ok %v", v, n, got, ok)
		}
	}
	for v, ok := range map[uint64]bool{math.MaxInt32: true, math.MaxInt32 + 1: false} {
		n, got := asInt(v)
		if got != ok || ok && uint64(n) != v {
			t.Errorf("asInt(uint64(%d)) = %d, %v; want ok %v", v, n, got, ok)
		}
	}
}

// TestSuggestKnown: a kms_* or ansible_* name at most two edits from a
// known variable is a likely misspelling of the nearest one; at equal
// distance the alphabetically first is named, every time; three edits away
// is another variable.
func TestSuggestKnown(t *testing.T) {
	for name, want := range map[string]string{
		"kms_storge_path": VarStoragePath,
		"kms_portxy":      VarKMSPort,
		"kms_portxyz":     "",
		"ansible_usr":     VarUser,
		"my_kms_port":     "",
		VarKMSPort:        "",
	} {
		if got := suggestKnown(name); got != want {
			t.Errorf("suggestKnown(%q) = %q, want %q", name, got, want)
		}
	}
	// ansible_post is one edit from both ansible_host and ansible_port:
	// the map of known variables is iterated in a random order, so ask
	// often enough to see any order.
	for range 64 {
		if got := suggestKnown("ansible_post"); got != VarHost {
			t.Fatalf("suggestKnown(ansible_post) = %q, want %s (the first of the nearest, by name)", got, VarHost)
		}
	}
}

// TestLegacySpellingPrecedence: when a setting is written under both its
// names at the same precedence, the current Ansible name wins over the
// legacy one; a legacy name set at a higher precedence still wins.
func TestLegacySpellingPrecedence(t *testing.T) {
	inv := mustParse(t, `
all:
  vars:
    ansible_ssh_user: legacy-group
  hosts:
    both:
      ansible_ssh_user: legacy
      ansible_user: current
      ansible_ssh_port: 2200
      ansible_port: 2222
    over:
      ansible_ssh_user: legacy-host
  children:
    g:
      vars:
        ansible_user: group
      hosts:
        over:
`)
	h, err := inv.Resolve("both", nil)
	if err != nil || h.SSH.User != "current" || h.SSH.Port != 2222 {
		t.Errorf("both: user %q port %d, %v; want current, 2222", h.SSH.User, h.SSH.Port, err)
	}
	h, err = inv.Resolve("over", nil)
	if err != nil || h.SSH.User != "legacy-host" {
		t.Errorf("over: user %q, %v; want legacy-host (host vars over group vars)", h.SSH.User, err)
	}
}

// TestBadSecretNameOnCommandLine: a -e KEY=VALUE whose malformed key looks
// like a secret is named by its place among the -e arguments, not echoed.
func TestBadSecretNameOnCommandLine(t *testing.T) {
	_, err := ParseExtraVars([]string{"a=1", "b=2", "my-api_key=hunter2"})
	if err == nil || strings.Contains(err.Error(), "my-api_key") || strings.Contains(err.Error(), "hunter2") ||
		!strings.Contains(err.Error(), "parse -e argument 3: KEY must be made of letters") {
		t.Errorf("ParseExtraVars: %v", err)
	}
}

// TestClusterName: kms_cluster names a host's cluster; without it the
// cluster is kms.
func TestClusterName(t *testing.T) {
	inv := mustParse(t, "all:\n  hosts:\n    a:\n    b:\n      kms_cluster: kms-eu\n")
	for host, want := range map[string]string{"a": DefaultCluster, "b": "kms-eu"} {
		h, err := inv.Resolve(host, nil)
		if err != nil || h.KMS.Cluster != want {
			t.Errorf("%s: cluster = %q, %v; want %q", host, h.KMS.Cluster, err, want)
		}
	}
}
