package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
	"github.com/kmsctl/kmsctl/playbooks"
)

// kmsctl runs a command against the lab's inventory.
func (l *recoverLab) kmsctl(t *testing.T, args ...string) (*testEnvT, int) {
	t.Helper()
	te := testEnv(t)
	code := te.run(t, append(append([]string{}, args...), "-i", l.inventory, "--ssh-config", "none")...)
	return te, code
}

// filesWithKey are the files under dir that hold the HSM key.
func (l *recoverLab) filesWithKey(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	payload := l.hsmKey.Text()[len("hsm:aes256:"):]
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), payload) {
				out = append(out, p)
			}
		}
		return nil
	})
	return out
}

// members is each running node's list of members, by the API.
func (l *recoverLab) members(t *testing.T, idx ...int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, i := range idx {
		v := kms.View(context.Background(), l.client(l.addrs[i]), l.addrs[i])
		if v.Err != nil {
			t.Fatalf("%s: %v", l.hosts[i], v.Err)
		}
		out[l.hosts[i]] = len(v.Members)
	}
	return out
}

var recapChanged = regexp.MustCompile(`(?m)^kms3\s+: ok=\d+ changed=(\d+)`)

// TestScaleRemoveProvisionAdd: scale remove kms3 of a healthy three-node
// cluster (check first: nothing changes) leaves two members, kms3 stopped
// and no file of it holding the HSM key; provision kms3 installs its files
// with the service stopped, a second provision changes nothing; scale add
// kms3 brings it back: every node lists three members and every key is
// there through kms3, proved through the API.
func TestScaleRemoveProvisionAdd(t *testing.T) {
	l := newRecoverLab(t)
	ctx := context.Background()
	c := l.client(l.addrs[0])
	for _, k := range []string{"k1", "k2"} {
		if err := c.CreateKey(ctx, "", k); err != nil {
			t.Fatal(err)
		}
	}
	ct, version, err := c.Encrypt(ctx, "", "k1", []byte("before"), nil)
	if err != nil {
		t.Fatal(err)
	}

	before := l.snapshot()
	te, code := l.kmsctl(t, "scale", "remove", "kms3", "--check")
	if code != 0 || !strings.Contains(te.out.String(), "CLUSTER:REMOVENODE node") || !strings.Contains(te.out.String(), "--check: nothing was changed") {
		t.Fatalf("scale remove --check: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if l.snapshot() != before {
		t.Fatal("scale remove --check changed files")
	}
	te, code = l.kmsctl(t, "scale", "remove", "kms3", "--check", "-o", "json")
	if code != 0 || !strings.Contains(te.out.String(), `"event":"scale_plan"`) || !strings.Contains(te.out.String(), `"phases":["remove","confirm","stop","teardown","wait"]`) ||
		strings.Contains(te.out.String(), "preflight: ok") {
		t.Fatalf("scale remove --check -o json: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if te, code := l.kmsctl(t, "scale", "remove", "kms3"); code != exit.Usage || !strings.Contains(te.errOut.String(), "--yes") {
		t.Fatalf("without --yes nor a terminal: exit %d\n%s", code, te.errOut)
	}
	te, code = l.kmsctl(t, "scale", "remove", "kms3", "--yes")
	out := te.out.String()
	if code != 0 || !strings.Contains(out, "REMOVED kms3") {
		t.Fatalf("scale remove kms3: exit %d\n%s\n%s", code, out, te.errOut)
	}
	if got := l.members(t, 0, 1); got["kms1"] != 2 || got["kms2"] != 2 {
		t.Errorf("members after scale remove: %v", got)
	}
	l.mu.Lock()
	running := l.nodes[2] != nil
	l.mu.Unlock()
	if running {
		t.Error("kms3's Key Manager still runs")
	}
	if got := l.filesWithKey(t, l.dirs[2]); len(got) > 0 {
		t.Errorf("files of kms3 still hold the HSM key: %v", got)
	}
	if _, err := os.Stat(filepath.Join(l.dirs[2], "minkms.env")); !os.IsNotExist(err) {
		t.Errorf("kms3's env file: %v", err)
	}
	if strings.Contains(out+te.errOut.String()+runLogs(t, te), l.hsmKey.Text()) {
		t.Error("the HSM key appears in the output or run log")
	}

	removed := l.snapshot()
	te, code = l.kmsctl(t, "scale", "add", "kms3", "--check")
	if code != 0 || !strings.Contains(te.out.String(), "1 provision") || !strings.Contains(te.out.String(), "--check: nothing was changed") {
		t.Fatalf("scale add --check: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if l.snapshot() != removed {
		t.Fatal("scale add --check changed files")
	}
	te, code = l.kmsctl(t, "provision", "kms3")
	if code != 0 || !strings.Contains(te.out.String(), "PROVISIONED kms3") {
		t.Fatalf("provision kms3: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	// One provision, one run: its preflight writes no run log or journal
	// of its own.
	if r := oneRun(t, te); r.Command != "provision kms3" || r.End == nil || r.End.ExitCode != 0 || r.End.Hosts != 1 {
		t.Errorf("the provision's run: %s, end %+v", r.Command, r.End)
	}
	if fi, err := os.Stat(filepath.Join(l.dirs[2], "minkms.env")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("env file after provision: %v, %v", fi, err)
	}
	l.mu.Lock()
	running = l.nodes[2] != nil
	l.mu.Unlock()
	if running {
		t.Error("provision started kms3's Key Manager")
	}
	provisioned := l.snapshot()
	te, code = l.kmsctl(t, "provision", "kms3")
	m := recapChanged.FindStringSubmatch(te.out.String())
	if code != 0 || m == nil || m[1] != "0" {
		t.Fatalf("second provision: exit %d, want changed=0\n%s\n%s", code, te.out, te.errOut)
	}
	if l.snapshot() != provisioned {
		t.Error("the second provision changed files")
	}

	// A former node's state left in the storage path: never started, refused.
	leftover := filepath.Join(l.dirs[2], "data", "old-state")
	if err := os.WriteFile(leftover, []byte("sealed"), 0o600); err != nil {
		t.Fatal(err)
	}
	withLeftover := l.snapshot()
	te, code = l.kmsctl(t, "scale", "add", "kms3", "--yes")
	if code != exit.Refused || !strings.Contains(te.out.String(), "storage path (kms_storage_path) of kms3 is not empty") {
		t.Fatalf("scale add onto a storage path with state: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	l.mu.Lock()
	running = l.nodes[2] != nil
	l.mu.Unlock()
	if running || l.snapshot() != withLeftover {
		t.Fatal("a refused scale add started kms3 or changed files")
	}
	if err := os.Remove(leftover); err != nil {
		t.Fatal(err)
	}
	te, code = l.kmsctl(t, "scale", "add", "kms3", "--yes")
	if code != 0 || !strings.Contains(te.out.String(), "ADDED kms3") {
		t.Fatalf("scale add kms3: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if got := l.members(t, 0, 1, 2); got["kms1"] != 3 || got["kms2"] != 3 || got["kms3"] != 3 {
		t.Errorf("members after scale add: %v", got)
	}
	c3 := l.client(l.addrs[2])
	if got := keyList(t, c3); strings.Join(got, ",") != "k1,k2" {
		t.Errorf("keys through kms3: %v", got)
	}
	if plain, err := c3.Decrypt(ctx, "", "k1", version, ct, nil); err != nil || string(plain) != "before" {
		t.Errorf("decrypt through kms3: %q, %v", plain, err)
	}
	te, code = l.kmsctl(t, "scale", "add", "kms3", "--yes")
	if code != 0 || !strings.Contains(te.out.String(), "kms3 is already a member") {
		t.Errorf("scale add of a member: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
}

// TestScaleRefusals: provision of a running member, scale remove and scale
// add while a member is down, and scale remove of a down member are
// refused (exit 4) with every host's files unchanged; usage errors exit 1.
func TestScaleRefusals(t *testing.T) {
	l := newRecoverLab(t)
	before := l.snapshot()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"provision", "kms1"}, exit.Refused, "kms1 is a running Key Manager: it answers as node"},
		{[]string{"provision", "kms1", "kms1"}, exit.Usage, "kms1 is named twice"},
		{[]string{"provision", "kms9"}, exit.Usage, "kms9 is not a host of the inventory"},
		{[]string{"scale", "remove", "kms1", "kms2", "--yes"}, exit.Usage, "name one host"},
		{[]string{"scale", "add", "kms9", "--yes"}, exit.Usage, "kms9 is not a host of group kms"},
	} {
		te, code := l.kmsctl(t, c.args...)
		if code != c.code || !strings.Contains(te.out.String()+te.errOut.String(), c.want) {
			t.Errorf("%v: exit %d, want %d and %q\n%s\n%s", c.args, code, c.code, c.want, te.out, te.errOut)
		}
		// A refused provision is one run, refused: its preflight
		// writes no run log or journal of its own.
		if c.code == exit.Refused {
			if r := oneRun(t, te); r.End == nil || r.End.ExitCode != exit.Refused {
				t.Errorf("%v: the run's end %+v, want refused", c.args, r.End)
			}
		}
	}
	l.kill(2)
	kmsimWaitDown(t, l, 2)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"scale", "remove", "kms3", "--yes"}, "does not answer as that member"},
		{[]string{"scale", "remove", "kms2", "--yes"}, "no member is ready for writes with every member up"},
		{[]string{"scale", "add", "kms3", "--yes"}, "is a member (node 2) that does not answer as such"},
	} {
		te, code := l.kmsctl(t, c.args...)
		if code != exit.Refused || !strings.Contains(te.out.String(), c.want) || !strings.Contains(te.out.String(), "nothing was changed") {
			t.Errorf("%v: exit %d, want %d and %q\n%s\n%s", c.args, code, exit.Refused, c.want, te.out, te.errOut)
		}
	}
	if got := l.snapshot(); got != before {
		t.Errorf("refused commands changed files:\n%s\n---\n%s", before, got)
	}
}

// kmsimWaitDown waits until node i is seen down by node 0.
func kmsimWaitDown(t *testing.T, l *recoverLab, i int) {
	t.Helper()
	c := l.client(l.addrs[0])
	kmsimtest.Eventually(t, l.hosts[i]+" seen down by "+l.hosts[0], func() error {
		v := kms.View(context.Background(), c, l.addrs[0])
		id, ok := v.Lists(l.addrs[i])
		if v.Err != nil || !ok || !slices.Contains(v.DownIDs, id) {
			return fmt.Errorf("%v", v)
		}
		return nil
	})
}

// TestScaleRemovePlaybookDecommissions: only scale-remove asks
// kms_remove_node for a decommission; recover-node's removal stays the
// dead-node edit.
func TestScaleRemovePlaybookDecommissions(t *testing.T) {
	reg := newRegistry(testEnv(t).env, options{})
	modes := func(name string) []any {
		pb, err := playbooks.Load(playbooks.BuiltinPrefix+name, reg)
		if err != nil {
			t.Fatal(err)
		}
		var out []any
		for _, p := range pb.Plays {
			for _, task := range p.Tasks {
				if task.Module == "kms_remove_node" {
					out = append(out, task.Args["mode"])
				}
			}
		}
		return out
	}
	if got := modes("recover-node"); len(got) != 1 || got[0] != nil {
		t.Errorf("recover-node's kms_remove_node modes: %v, want the default only", got)
	}
	if got := modes("scale-remove"); len(got) != 1 || got[0] != "decommission" {
		t.Errorf("scale-remove's kms_remove_node modes: %v", got)
	}
}

// TestProvisionNewHostKey: kms3 as a new host whose SSH key kmsctl does not know: provision
// fails naming its fingerprint (exit 3) and a wrong --expect-host-key is refused, each
// changing nothing; the right fingerprint provisions it and pins the key in kmsctl's own
// known_hosts, so that the next provision needs no flag.
func TestProvisionNewHostKey(t *testing.T) {
	l := newRecoverLab(t)
	l.kill(2)
	kh := regexp.MustCompile(`kms_ssh_known_hosts: (\S+)`).FindStringSubmatch(readTestFile(t, l.inventory))[1]
	var keep []string
	for _, line := range strings.Split(readTestFile(t, kh), "\n") {
		if line != "" && line != l.servers[2].KnownHostsLine() {
			keep = append(keep, line)
		}
	}
	writeTestFile(t, kh, strings.Join(keep, "\n")+"\n")
	fp := ssh.FingerprintSHA256(l.servers[2].HostKey())
	te := testEnv(t) // one state directory: kmsctl's own known_hosts
	provision := func(want int, flags ...string) string {
		t.Helper()
		before := len(te.errOut.String())
		if code := te.run(t, append([]string{"provision", "kms3", "-i", l.inventory, "--ssh-config", "none"}, flags...)...); code != want {
			t.Fatalf("provision kms3 %v: exit %d, want %d\n%s\n%s", flags, code, want, te.out, te.errOut)
		}
		return te.errOut.String()[before:]
	}
	before := l.snapshot()
	if msg := provision(exit.Unreachable); !strings.Contains(msg, fp) {
		t.Errorf("an unknown host key: the error does not name its fingerprint %s:\n%s", fp, msg)
	}
	provision(exit.Unreachable, "--expect-host-key", "kms3=SHA256:"+strings.Repeat("A", 43))
	if l.snapshot() != before {
		t.Fatal("a refused host key changed files")
	}
	provision(exit.OK, "--expect-host-key", "kms3="+fp)
	if _, err := os.Stat(filepath.Join(l.dirs[2], "minkms.env")); err != nil {
		t.Errorf("kms3 not provisioned: %v", err)
	}
	provision(exit.OK)
}
