//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestInventoryPingAndPlayCopy: with an inventory of two containers (pinned by the inventory's
// kms_ssh_known_hosts), `kmsctl ping` without hosts pings them all, and `kmsctl play` with copy
// tasks puts a 5 MiB file and a templated file on each host (checked inside the containers);
// a second run changes nothing.
func TestInventoryPingAndPlayCopy(t *testing.T) {
	l := NewLab(t, "node1", "node2")
	payload, sum := randomFile(t, l.Dir, 5<<20, 3)

	inventory := writeInventory(t, l)
	playbook := filepath.Join(l.Dir, "copy.yml")
	writeTestFile(t, playbook, `- name: e2e copy
  hosts: all
  gather_facts: false
  tasks:
    - name: push payload
      copy:
        src: `+payload+`
        dest: /srv/payload.bin
        mode: "0640"
    - name: push greeting
      copy:
        content: "hello {{ inventory_hostname }}\n"
        dest: /srv/hello.txt
        mode: "0644"
`)

	r := kmsctl(t, l, "-i", inventory, "ping")
	if r.code != exitOK {
		t.Fatalf("ping of the inventory: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	for _, n := range l.Names() {
		if !strings.Contains(r.stdout, n) {
			t.Errorf("ping of the inventory does not mention %s:\n%s", n, r.stdout)
		}
	}

	r = kmsctl(t, l, "-i", inventory, "play", playbook)
	if r.code != exitOK {
		t.Fatalf("first play: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	for _, n := range l.Names() {
		got := strings.Fields(l.MustExec(n, "sha256sum /srv/payload.bin && stat -c %a /srv/payload.bin && cat /srv/hello.txt"))
		want := []string{sum, "/srv/payload.bin", "640", "hello", n}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s after play: got %q, want %q", n, got, want)
		}
	}

	r = kmsctl(t, l, "-i", inventory, "play", playbook)
	if r.code != exitOK {
		t.Fatalf("second play: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	for _, n := range l.Names() {
		if !regexp.MustCompile(`(?m)^` + n + `\s*: ok=2 changed=0 unreachable=0 failed=0`).MatchString(r.stdout) {
			t.Errorf("second play changed something on %s (want ok=2 changed=0 in the recap):\n%s", n, r.stdout)
		}
	}
}

// TestPlayServiceWithSystemd: `kmsctl play` installs a unit file and starts and enables it with
// the service module against the container's real systemd; a second run changes nothing; a
// unit stopped behind kmsctl's back is started again by the next run.
func TestPlayServiceWithSystemd(t *testing.T) {
	l := NewLab(t, "svc1")
	inventory := writeInventory(t, l)
	playbook := filepath.Join(l.Dir, "service.yml")
	writeTestFile(t, playbook, `- name: e2e service
  hosts: all
  gather_facts: false
  tasks:
    - name: unit file
      copy:
        content: |
          [Unit]
          Description=kmsctl e2e demo service
          [Service]
          ExecStart=/bin/sleep infinity
          [Install]
          WantedBy=multi-user.target
        dest: /etc/systemd/system/kmsctl-e2e.service
        mode: "0644"
    - name: running and enabled
      service:
        name: kmsctl-e2e.service
        state: started
        enabled: true
        daemon_reload: true
`)
	state := func() string {
		out, _ := l.Exec("svc1", "systemctl is-active kmsctl-e2e.service; systemctl is-enabled kmsctl-e2e.service")
		return strings.Join(strings.Fields(out), " ")
	}

	r := kmsctl(t, l, "-i", inventory, "play", playbook)
	if r.code != exitOK {
		t.Fatalf("first play: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	if got := state(); got != "active enabled" {
		t.Fatalf("after the first play the unit is %q, want active enabled", got)
	}
	r = kmsctl(t, l, "-i", inventory, "play", playbook)
	if r.code != exitOK {
		t.Fatalf("second play: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	if !regexp.MustCompile(`(?m)^svc1\s*: ok=2 changed=0 unreachable=0 failed=0`).MatchString(r.stdout) {
		t.Errorf("second play changed something (want ok=2 changed=0 in the recap):\n%s", r.stdout)
	}

	l.MustExec("svc1", "systemctl stop kmsctl-e2e.service")
	if got := state(); got != "inactive enabled" {
		t.Fatalf("after systemctl stop the unit is %q, want inactive enabled", got)
	}
	r = kmsctl(t, l, "-i", inventory, "play", playbook)
	if r.code != exitOK {
		t.Fatalf("third play: want exit %d, got %d\n%s", exitOK, r.code, r)
	}
	if !regexp.MustCompile(`(?m)^svc1\s*: ok=2 changed=1 unreachable=0 failed=0`).MatchString(r.stdout) {
		t.Errorf("third play did not report the restart as one change:\n%s", r.stdout)
	}
	if got := state(); got != "active enabled" {
		t.Errorf("after the third play the unit is %q, want active enabled", got)
	}
}

// writeInventory writes an inventory of the lab's hosts (root, the lab's client key, pinned
// by the lab's known_hosts) and returns its path.
func writeInventory(t *testing.T, l *Lab) string {
	t.Helper()
	var inv strings.Builder
	fmt.Fprintf(&inv, "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: %s\n    kms_ssh_known_hosts: %s\n  hosts:\n",
		l.ClientKey, l.KnownHosts)
	for _, n := range l.Names() {
		fmt.Fprintf(&inv, "    %s:\n      ansible_host: 127.0.0.1\n      ansible_port: %d\n", n, l.SSHPort(n))
	}
	inventory := filepath.Join(l.Dir, "inventory.yml")
	writeTestFile(t, inventory, inv.String())
	return inventory
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
