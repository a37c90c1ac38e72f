//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exitLocked is kmsctl's exit code when another run holds the cluster's lock or lease.
const exitLocked = 5

// leaseFromTwoBastions: a run holding the cluster (a play with kms_remove_node, skipped, held at
// its first task by a gate file on kms1) has its lease in /var/lib/kmsctl on every node; a
// kmsctl with another state directory (another bastion: its local lock does not see the first)
// is refused with exit 5 naming the holder and touches nothing; its `lock status` and `status`
// show the lease; when the first run ends, no lease is left on any node.
func leaseFromTwoBastions(t *testing.T, c *minkmsCluster, r *recoverLab) {
	const gate = "/tmp/kmsctl-e2e-lease-gate"
	const file = "/var/lib/kmsctl/lease-kms.json"
	c.l.MustExec("kms1", "rm -f "+gate)
	dir := t.TempDir()
	pb := filepath.Join(dir, "hold.yml")
	mark := "/tmp/kmsctl-e2e-lease-mark"
	c.l.MustExec("kms1", "rm -f "+mark)
	if err := os.WriteFile(pb, []byte(`- hosts: kms1
  tasks:
    - name: wait for the gate
      shell: while [ ! -e `+gate+` ]; do sleep 0.1; done
    - name: mark
      command: touch `+mark+`
    - kms_remove_node:
        id: 99
      when: false
`), 0o600); err != nil {
		t.Fatal(err)
	}
	first := make(chan result, 1)
	go func() { first <- kmsctlState(t, c.l, filepath.Join(dir, "bastion1"), "-i", r.inventory, "play", pb) }()
	defer func() {
		c.l.MustExec("kms1", "touch "+gate)
		res := <-first
		if res.code != exitOK {
			t.Errorf("the first run: want exit 0\n%s", res)
		}
		for _, n := range r.names {
			if out := c.l.MustExec(n, "ls -A /var/lib/kmsctl 2>/dev/null; true"); strings.TrimSpace(out) != "" {
				t.Errorf("%s: lease left after the run: %s", n, out)
			}
		}
		c.l.MustExec("kms1", "rm -f "+gate+" "+mark)
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(c.l.MustExec("kms1", "cat "+file+" 2>/dev/null; true"), "wait for the gate") {
		if time.Now().After(deadline) {
			t.Fatal("the first run's lease never named its step")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range r.names {
		out := c.l.MustExec(n, "stat -c '%a %U' "+file+"; cat "+file)
		if !strings.HasPrefix(out, "644 root\n") || !strings.Contains(out, `"command": "kmsctl play `+pb+`"`) {
			t.Errorf("%s: the lease: %s", n, out)
		}
		r.leaks(t, n+"'s lease", out)
	}

	second := filepath.Join(dir, "bastion2")
	res := kmsctlState(t, c.l, second, "-i", r.inventory, "play", pb)
	if res.code != exitLocked || !strings.Contains(res.stderr, "cluster kms is leased on kms1 by ") ||
		!strings.Contains(res.stderr, "`kmsctl play "+pb+"`, at \"wait for the gate\" on kms1") {
		t.Fatalf("the second bastion: want exit %d naming the holder\n%s", exitLocked, res)
	}
	if out := c.l.MustExec("kms1", "ls "+mark+" 2>&1; true"); !strings.Contains(out, "No such file") {
		t.Errorf("a task ran while the lease was held: %s", out)
	}
	res = kmsctlState(t, c.l, second, "-i", r.inventory, "lock", "status")
	if res.code != exitOK || !strings.Contains(res.stdout, "cluster kms: leases on the nodes:") {
		t.Fatalf("lock status from the second bastion\n%s", res)
	}
	for _, n := range r.names {
		if !strings.Contains(res.stdout, "  "+n+": leased by ") {
			t.Errorf("lock status does not show %s's lease\n%s", n, res)
		}
	}
	res = kmsctlState(t, c.l, second, "-i", r.inventory, "status")
	if res.code != exitOK || !strings.Contains(res.stdout, "LEASED: cluster kms is leased on kms1 by ") {
		t.Errorf("status from the second bastion does not show the lease\n%s", res)
	}
}
