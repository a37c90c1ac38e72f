//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestPingPinnedHosts: kmsctl reaches every container through the host keys pinned in the
// harness's known_hosts, both by ssh_config alias and by user@host:port on the command line,
// and refuses a host whose key is not pinned, naming its SHA256 fingerprint.
func TestPingPinnedHosts(t *testing.T) {
	l := NewLab(t, "node1", "node2", "node3")

	r := kmsctl(t, l, append([]string{"ping", "--ssh-config", l.SSHConfig}, l.Names()...)...)
	if r.code != exitOK {
		t.Fatalf("ping by ssh_config alias: want exit %d, got %d\n%s", exitOK, r.code, r)
	}

	// The JSON recap counts one ok ping per host.
	r = kmsctl(t, l, append([]string{"ping", "--output", "json", "--ssh-config", l.SSHConfig}, l.Names()...)...)
	if r.code != exitOK {
		t.Fatalf("ping --output json: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	recap := jsonRecap(t, r.stdout)
	for _, n := range l.Names() {
		if c := recap[n]; c.OK != 1 || c.Unreachable != 0 || c.Failed != 0 {
			t.Errorf("JSON recap for %s: %+v, want ok=1 and nothing unreachable or failed", n, c)
		}
	}

	args := []string{"ping", "--known-hosts", l.KnownHosts, "--private-key", l.ClientKey}
	for _, n := range l.Names() {
		args = append(args, "root@"+l.Addr(n))
	}
	r = kmsctl(t, l, args...)
	if r.code != exitOK {
		t.Fatalf("ping by root@127.0.0.1:PORT: want exit %d, got %d\n%s", exitOK, r.code, r)
	}

	// A malformed host argument is a usage error, not an unreachable host.
	r = kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "root@127.0.0.1:notaport")
	if r.code != exitUsage {
		t.Errorf("ping of a malformed host: want exit %d, got %d\n%s", exitUsage, r.code, r)
	}

	// Negative control: the same host with a known_hosts file that does not pin it.
	empty := l.Dir + "/known_hosts.empty"
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r = kmsctl(t, l, "ping", "--known-hosts", empty, "--private-key", l.ClientKey, "root@"+l.Addr("node1"))
	if r.code != exitUnreachable {
		t.Fatalf("ping with the key not pinned: want exit %d, got %d\n%s", exitUnreachable, r.code, r)
	}
	if fp := ssh.FingerprintSHA256(l.Host("node1").HostKey); !strings.Contains(r.stderr, fp) {
		t.Errorf("unknown host key error does not name the fingerprint %s:\n%s", fp, r.stderr)
	}
}

// TestPingReplacedHostRefused: a container replaced by a new one with the same name and port
// (so a new host key) is refused with the host-key-changed error naming known_hosts file:line,
// while the other host still answers; a killed host is unreachable until started again.
func TestPingReplacedHostRefused(t *testing.T) {
	l := NewLab(t, "alpha", "beta")

	r := kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "alpha", "beta")
	if r.code != exitOK {
		t.Fatalf("ping before replacement: want exit %d, got %d\n%s", exitOK, r.code, r)
	}

	oldPort := l.SSHPort("alpha")
	line := knownHostsLine(t, l.KnownHosts, fmt.Sprintf("[127.0.0.1]:%d,", oldPort))
	h := l.Replace("alpha")
	if h.Port != oldPort {
		t.Fatalf("replacement of alpha got port %d, not its old port %d: cannot test a changed key", h.Port, oldPort)
	}

	r = kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "alpha")
	if r.code != exitUnreachable {
		t.Fatalf("ping of the replaced host: want exit %d, got %d\n%s", exitUnreachable, r.code, r)
	}
	for _, want := range []string{"host key for", "changed", fmt.Sprintf("%s:%d", l.KnownHosts, line)} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("host-key-changed error lacks %q:\n%s", want, r.stderr)
		}
	}

	// One bad host does not hide the good one: both named, exit 3; the good one alone, exit 0.
	r = kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "beta")
	if r.code != exitOK {
		t.Fatalf("ping of the untouched host: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	r = kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "alpha", "beta")
	if r.code != exitUnreachable {
		t.Fatalf("ping of both: want exit %d, got %d\n%s", exitUnreachable, r.code, r)
	}

	// A killed host is unreachable; started again (same port, same key) it answers again.
	l.Kill("beta")
	r = kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "beta")
	if r.code != exitUnreachable {
		t.Fatalf("ping of the killed host: want exit %d, got %d\n%s", exitUnreachable, r.code, r)
	}
	port := l.SSHPort("beta")
	l.Start("beta")
	if l.SSHPort("beta") != port {
		t.Errorf("beta's SSH port moved from %d to %d across kill/start", port, l.SSHPort("beta"))
	}
	r = kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "beta")
	if r.code != exitOK {
		t.Fatalf("ping of the restarted host: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
}

// TestPingThroughBastion: a target whose sshd only lets root in from the bastion's address is
// reached through the bastion (ssh_config ProxyJump, target addressed by its Docker-network IP),
// and is refused when addressed directly. Two hops are also covered.
func TestPingThroughBastion(t *testing.T) {
	l := NewLab(t, "bastion", "hop2", "target")

	// target admits root only from hop2 and from bastion; hop2 admits root only from bastion.
	allowOnly(t, l, "target", l.IP("bastion"), l.IP("hop2"))
	allowOnly(t, l, "hop2", l.IP("bastion"))

	r := kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "target")
	if r.code != exitUnreachable {
		t.Fatalf("direct ping of the bastion-only target: want exit %d, got %d\n%s", exitUnreachable, r.code, r)
	}

	l.AddJumpAlias("target-via-bastion", "target", "bastion")
	r = kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "target-via-bastion")
	if r.code != exitOK {
		t.Fatalf("ping through the bastion: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	want := "Accepted publickey for root from " + l.IP("bastion") + " "
	if out := l.MustExec("target", "journalctl -u ssh --no-pager"); !strings.Contains(out, want) {
		t.Errorf("target's sshd log has no %q: the jump was not used\n%s", want, out)
	}

	// Two hops: bastion -> hop2 (by its lab IP) -> target (by its lab IP).
	l.AddJumpAlias("hop2-ip", "hop2", "")
	l.AddJumpAlias("target-via-hop2", "target", "bastion,hop2-ip")
	r = kmsctl(t, l, "ping", "--ssh-config", l.SSHConfig, "target-via-hop2")
	if r.code != exitOK {
		t.Fatalf("ping through two jumps: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	want = "Accepted publickey for root from " + l.IP("hop2") + " "
	if out := l.MustExec("target", "journalctl -u ssh --no-pager"); !strings.Contains(out, want) {
		t.Errorf("target's sshd log has no %q: the second hop was not used\n%s", want, out)
	}
}

// recapCounts is one host's line of the JSON recap event.
type recapCounts struct {
	OK          int `json:"ok"`
	Changed     int `json:"changed"`
	Unreachable int `json:"unreachable"`
	Failed      int `json:"failed"`
}

// jsonRecap returns the per-host counts of the "recap" event in kmsctl's JSON output
// (one JSON object per line).
func jsonRecap(t *testing.T, stdout string) map[string]recapCounts {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		var ev struct {
			Event string                 `json:"event"`
			Recap map[string]recapCounts `json:"recap"`
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("kmsctl --output json printed a line that is not JSON: %v\n%s", err, line)
		}
		if ev.Event == "recap" {
			return ev.Recap
		}
	}
	t.Fatalf("no recap event in kmsctl's JSON output:\n%s", stdout)
	return nil
}

// allowOnly makes name's sshd admit root only from the given addresses and waits until the
// harness's direct connection (from the Docker gateway) is refused.
func allowOnly(t *testing.T, l *Lab, name string, ips ...string) {
	t.Helper()
	var users []string
	for _, ip := range ips {
		users = append(users, "root@"+ip)
	}
	l.MustExec(name, "echo 'AllowUsers "+strings.Join(users, " ")+"' >/etc/ssh/sshd_config.d/20-e2e-allow.conf && systemctl reload ssh")
	l.WaitAuthRefused(name)
}

// knownHostsLine returns the 1-based line of the first line in file starting with prefix.
func knownHostsLine(t *testing.T, file, prefix string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, prefix) {
			return i + 1
		}
	}
	t.Fatalf("no line starting with %q in %s", prefix, file)
	return 0
}
