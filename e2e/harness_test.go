//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
)

// TestHarnessWithOpenSSH checks the harness itself with the reference client: OpenSSH's ssh,
// given only the harness's ssh_config (pinned known_hosts, StrictHostKeyChecking yes), reaches
// each container as root and lands in the right one; a replaced container is refused by
// OpenSSH too. If this fails, the kmsctl tests' failures are the harness's, not kmsctl's.
func TestHarnessWithOpenSSH(t *testing.T) {
	l := NewLab(t, "one", "two")
	for _, n := range l.Names() {
		out, err := openssh(t, l, n, "hostname; cat /etc/machine-id")
		if err != nil {
			t.Fatalf("ssh %s: %v\n%s", n, err, out)
		}
		if got := strings.Fields(out); len(got) != 2 || got[0] != n {
			t.Errorf("ssh %s landed on %q", n, out)
		}
	}
	one, two := l.MustExec("one", "cat /etc/machine-id"), l.MustExec("two", "cat /etc/machine-id")
	if one == two || one == "" {
		t.Errorf("containers share machine-id %q", one)
	}
	if out := l.MustExec("one", "ls /etc/ssh/ | grep ssh_host_ || true"); strings.TrimSpace(out) != "ssh_host_ed25519_key\nssh_host_ed25519_key.pub" {
		t.Errorf("container host keys are not exactly the harness's one key:\n%s", out)
	}

	l.CopyIn("one", "/opt/e2e/sub/hello", 0o640, []byte("hello\n"))
	if out := l.MustExec("one", "stat -c '%a %U' /opt/e2e/sub/hello && cat /opt/e2e/sub/hello"); out != "640 root\nhello" {
		t.Errorf("CopyIn: got %q", out)
	}

	before := *l.Host("two")
	after := l.Replace("two")
	out, err := openssh(t, l, "two", "true")
	if err == nil || !strings.Contains(out, "REMOTE HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("OpenSSH accepted the replaced container (err %v):\n%s", err, out)
	}
	// The same name, hostname, IP and port; another container and host key.
	if after.IP != before.IP || after.Port != before.Port || after.ID == before.ID || bytes.Equal(after.HostKey.Marshal(), before.HostKey.Marshal()) {
		t.Errorf("replaced: IP %s -> %s, port %d -> %d, id %s -> %s, host key changed %v", before.IP, after.IP, before.Port, after.Port,
			before.ID, after.ID, !bytes.Equal(after.HostKey.Marshal(), before.HostKey.Marshal()))
	}
	if got := strings.TrimSpace(l.MustExec("two", "hostname; ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1")); got != "two\n"+before.IP {
		t.Errorf("replaced container: hostname and address %q, want two and %s", got, before.IP)
	}

	// Removed for good: gone from the lab and from Docker; restored with the same IP.
	gone := *l.Host("one")
	l.Remove("one")
	if names := l.Names(); len(names) != 1 || names[0] != "two" || len(l.Removed()) != 1 {
		t.Errorf("after Remove(one): names %v, removed %v", names, l.Removed())
	}
	if _, err := l.docker("inspect", gone.ID); err == nil {
		t.Errorf("container %s still exists after Remove", gone.Container)
	}
	back := l.Restore("one")
	if back.IP != gone.IP || back.Port != gone.Port || len(l.Removed()) != 0 {
		t.Errorf("restored: IP %s -> %s, port %d -> %d, removed %v", gone.IP, back.IP, gone.Port, back.Port, l.Removed())
	}
}

// openssh runs `ssh -F <harness ssh_config> host command` and returns its combined output.
func openssh(t *testing.T, l *Lab, host, command string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatalf("the harness check needs OpenSSH's ssh client (apt-get install openssh-client): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-F", l.SSHConfig, "-o", "BatchMode=yes", host, command)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}
