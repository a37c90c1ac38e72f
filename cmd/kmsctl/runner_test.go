package main

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/playbooks"
	"github.com/kmsctl/kmsctl/tasks"
)

// TestConnectUsesResolvedHost: the engine's Connect dials a host from the
// resolved value in its Target and never resolves the host again: given
// kms1 resolved with kms2's port, it reaches kms2's server even though the
// inventory says otherwise. A host with no Target (a delegate_to host
// outside the plays) is resolved from the inventory.
func TestConnectUsesResolvedHost(t *testing.T) {
	l := newLab(t, "")
	o := options{Inventories: []string{l.inventory}, InventoryExplicit: true, Forks: 1, Output: "text", SSHConfig: "none"}
	inv, err := loadInventory(o, false)
	if err != nil {
		t.Fatal(err)
	}
	te := testEnv(t)
	r, err := newRunner(te.env, o, "test", inv, newRegistry(te.env, o), false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.s.finish(nil)
	ctx := context.Background()
	runTrue := func(h tasks.Host) {
		t.Helper()
		c, err := r.engine.Connect(ctx, h)
		if err != nil {
			t.Fatalf("connect %s: %v", h.Name, err)
		}
		defer c.Close()
		if err := c.Run(ctx, "true", nil, nil, nil); err != nil {
			t.Fatalf("run on %s: %v", h.Name, err)
		}
	}

	kms1, err := inv.Resolve("kms1", nil)
	if err != nil {
		t.Fatal(err)
	}
	kms1.SSH.Port = l.servers["kms2"].Port()
	runTrue(playbooks.TaskHost(kms1))
	if got := l.servers["kms1"].Commands(); len(got) != 0 {
		t.Errorf("kms1's server ran %q: Connect resolved kms1 again from the inventory", got)
	}
	if got := l.servers["kms2"].Commands(); !slices.Equal(got, []string{"true"}) {
		t.Errorf("kms2's server ran %q, want true", got)
	}

	runTrue(tasks.Host{Name: "kms1"})
	if got := l.servers["kms1"].Commands(); !slices.Equal(got, []string{"true"}) {
		t.Errorf("a host known by name only: kms1's server ran %q, want true", got)
	}
}

// TestPlayRefusesUnusableHostSettings: a host of the play whose inventory
// settings kmsctl cannot honour is refused with the rest of the input,
// before any host is touched (it used to surface as that host being
// unreachable while the others ran).
func TestPlayRefusesUnusableHostSettings(t *testing.T) {
	l := newLab(t, "        kms3:\n          ansible_connection: local\n")
	pb := writePlaybook(t, "- hosts: kms\n  tasks:\n    - command: touch {{ dir }}.ran\n")
	te := testEnv(t)
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none"); code != exit.Usage {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.Usage, te.out, te.errOut)
	}
	if want := "host kms3: ansible_connection: connection type local is not supported"; !strings.Contains(te.errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, te.errOut)
	}
	if strings.Contains(te.out.String(), "PLAY") {
		t.Errorf("a play started:\n%s", te.out)
	}
	for h, d := range l.dirs {
		if _, err := os.Stat(d + ".ran"); err == nil {
			t.Errorf("%s was touched", h)
		}
	}
}

// TestPlayRefusesUnparsablePinnedKey: a pinned host key of the right shape
// that the SSH transport cannot parse is refused before any host is touched
// (the inventory checks only the shape; it holds no SSH code).
func TestPlayRefusesUnparsablePinnedKey(t *testing.T) {
	l := newLab(t, "        kms3:\n          kms_ssh_host_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\"]\n")
	pb := writePlaybook(t, "- hosts: kms\n  tasks:\n    - command: touch {{ dir }}.ran\n")
	te := testEnv(t)
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none"); code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, te.out, te.errOut)
	}
	if want := "host kms3: kms_ssh_host_keys: parse pinned host key 1"; !strings.Contains(te.errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, te.errOut)
	}
	if !regexp.MustCompile(`inventory\.yml:\d+:\d+: host kms3`).MatchString(te.errOut.String()) {
		t.Errorf("stderr does not say where the key is (FILE:LINE:COL):\n%s", te.errOut)
	}
	for h, srv := range l.servers {
		if got := srv.Commands(); len(got) > 0 {
			t.Errorf("%s ran %q before the key was checked", h, got)
		}
	}
}
