//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/e2e/lab/labkit"
	"github.com/kmsctl/kmsctl/kms"
)

// TestMinkmsInstallAndCluster installs the Key Manager simulator as minkms.service on three
// fresh containers with the real kmsctl and e2e/lab/install-minkms.yml: the first play changes
// every host and leaves the service active; the second changes nothing; --check --diff shows
// a template change and makes none; after the service was
// stopped on one host, the play changes that host only and the service runs again. The HSM key
// (from a 0600 extra-vars file) never shows in kmsctl's output or run log, in any process's
// argv on the hosts, or in minkms's journal. Then the three nodes are joined into one cluster
// with the kms client through SSH tunnels, and every node reports 3 nodes and the same leader.
func TestMinkmsInstallAndCluster(t *testing.T) {
	// The shared lab's hosts with the Key Manager removed: this test installs and joins it
	// with the lab's own files and secrets, and leaves the cluster as every other test finds it.
	c := sharedFreshHosts(t)
	l := c.l
	names := l.Names()

	hsmKey := c.hsmKey.Text()
	hsmSecret := strings.TrimPrefix(hsmKey, "hsm:aes256:") // also caught without its prefix
	admin, certs := sharedAdmin()
	play, secrets := sharedInstallPlay(t)
	defer os.Remove(secrets)

	// Every process's argv, here and on the hosts, for the whole of kmsctl's runs; a canary
	// process with a marker in its argv proves the recorder sees short-lived processes.
	argv := RecordArgv()
	canary := "kmsctl-argv-canary-" + randHex(8)
	var runs []result
	playOK := func(what string) result {
		t.Helper()
		r := kmsctl(t, l, play...)
		runs = append(runs, r)
		if r.code != exitOK {
			t.Fatalf("%s: want exit %d, got %d\n%s", what, exitOK, r.code, r)
		}
		return r
	}
	changed := func(r result, host string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + host + `\s*: ok=\d+ changed=(\d+) unreachable=0 failed=0`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no recap line for %s:\n%s", host, r)
		}
		return m[1]
	}
	active := func(host string) {
		t.Helper()
		if out, err := l.Exec(host, "systemctl is-active minkms"); strings.TrimSpace(out) != "active" {
			t.Errorf("%s: minkms is %q after the play (%v)", host, strings.TrimSpace(out), err)
		}
	}

	r := playOK("first play")
	for _, n := range names {
		if c := changed(r, n); c == "0" {
			t.Errorf("first play changed nothing on %s", n)
		}
		active(n)
		if got := strings.TrimSpace(l.MustExec(n, "stat -c '%a %U' /etc/default/minkms /etc/minkms/certs/private.key")); got != "600 root\n600 minkms-user" {
			t.Errorf("%s: modes/owners of the env file and the private key: %q", n, got)
		}
		env := l.MustExec(n, "cat /etc/default/minkms") // the key reached the host, in the env file only
		if !strings.Contains(env, "MINIO_KMS_HSM_KEY="+hsmKey+"\n") {
			t.Errorf("%s: /etc/default/minkms does not hold the HSM key", n)
		}
	}

	r = playOK("second play")
	for _, n := range names {
		if c := changed(r, n); c != "0" {
			t.Errorf("second play changed %s on %s, want 0", c, n)
		}
	}

	// --check --diff with a changed template variable: the unit's diff is shown, the secret
	// env file's never, and nothing changes on the hosts.
	check := kmsctl(t, l, append([]string{"--check", "--diff"}, append(play, "-e", "minkms_limit_nofile=131072")...)...)
	runs = append(runs, check)
	if check.code != exitOK {
		t.Fatalf("--check --diff: want exit %d, got %d\n%s", exitOK, check.code, check)
	}
	if n := strings.Count(check.stdout, "+LimitNOFILE=131072\n"); n != len(names) {
		t.Errorf("--check --diff shows the unit's new LimitNOFILE %d times, want %d", n, len(names))
	}
	if strings.Contains(check.stdout, "MINIO_KMS_HSM_KEY") {
		t.Errorf("--check --diff shows the env file's content")
	}
	for _, n := range names {
		if got := strings.TrimSpace(l.MustExec(n, "grep LimitNOFILE /etc/systemd/system/minkms.service")); got != "LimitNOFILE=65536" {
			t.Errorf("%s: --check changed the unit: %q", n, got)
		}
	}

	l.MustExec("kms2", "systemctl stop minkms")
	if out, _ := l.Exec("kms2", "systemctl is-active minkms"); strings.TrimSpace(out) == "active" {
		t.Fatalf("kms2: minkms still active after systemctl stop")
	}
	r = playOK("play after stopping minkms on kms2")
	for _, n := range names {
		want := "0"
		if n == "kms2" {
			want = "1"
		}
		if c := changed(r, n); c != want {
			t.Errorf("play after stopping minkms on kms2: %s changed=%s, want %s\n%s", n, c, want, r.stdout)
		}
		active(n)
	}

	// The HSM key: not in kmsctl's output, nor in its run log, nor in argv or the journal on the hosts.
	leaks := func(where, s string) {
		t.Helper()
		if strings.Contains(s, hsmSecret) {
			t.Errorf("the HSM key appears in %s", where)
		}
	}
	for i, r := range runs {
		leaks(fmt.Sprintf("stdout of play %d", i+1), r.stdout)
		leaks(fmt.Sprintf("stderr of play %d", i+1), r.stderr)
	}
	state := filepath.Join(l.Dir, "home", ".local", "state")
	logged := 0
	err := filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		logged += len(b)
		leaks("kmsctl's state file "+p, string(b))
		return nil
	})
	if err != nil {
		t.Fatalf("read kmsctl's state dir: %v", err)
	}
	if logged == 0 {
		t.Errorf("kmsctl wrote no run log under %s (XDG_STATE_HOME): nothing to check", state)
	}
	// The marker is put together on the host, so only the 50 ms process carries it whole
	// (not docker exec's own, long-lived argv).
	l.MustExec("kms1", `m=kmsctl-argv-; sh -c 'sleep 0.05; true' "${m}`+strings.TrimPrefix(canary, "kmsctl-argv-")+`"`)
	sweeps := argv.Sweeps()
	cmdlines := argv.Stop()
	if !argv.Saw(canary) {
		t.Errorf("the argv recorder missed the canary process (%d sweeps of /proc): the secret check below proves nothing", sweeps)
	}
	for _, n := range names {
		if !argv.Saw("/usr/local/bin/minkms server /mnt/minio-kms --host " + n + ":7373") {
			t.Errorf("%s: the argv recorder saw no minkms server process", n)
		}
	}
	for _, c := range cmdlines {
		leaks("a process's argv during the runs ("+strings.SplitN(c, " ", 2)[0]+")", c)
	}
	t.Logf("argv recorder: exec events %v, %d sweeps of /proc, %d distinct command lines", argv.ExecEvents(), sweeps, len(cmdlines))
	for _, n := range names {
		journal := l.MustExec(n, "journalctl -u minkms --no-pager")
		if !strings.Contains(journal, "minkms") {
			t.Errorf("%s: empty minkms journal:\n%s", n, journal)
		}
		leaks(n+": journalctl -u minkms", journal)
	}
	if t.Failed() {
		return
	}
	if err := os.Remove(secrets); err != nil {
		t.Fatal(err)
	}

	// The Key Manager's side: one cluster of three through SSH tunnels, certificates verified.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tun, err := labkit.DialTunnels(ctx, l.SSHConfig, names)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	kc, err := labkit.NewClient(tun, filepath.Join(certs, "ca.crt"), admin, names)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	for _, v := range kms.Views(ctx, kc, labkit.Endpoints(names)) {
		if v.Err != nil || v.Up != 1 || v.ID != 0 {
			t.Fatalf("before joining, want every node alone as node 0: %s", v)
		}
	}
	if err := kms.Join(ctx, kc, labkit.Endpoint("kms1"), labkit.Endpoints([]string{"kms2", "kms3"}), time.Minute); err != nil {
		t.Fatal(err)
	}
	views, err := kms.WaitConverged(ctx, kc, labkit.Endpoints(names))
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, v := range views {
		t.Logf("%s", v)
		if v.Up != 3 || v.LeaderID != views[0].LeaderID {
			t.Errorf("view of %s: want 3 nodes up and leader %d: %s", v.Endpoint, views[0].LeaderID, v)
		}
		if v.Role == "Leader" {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("%d nodes report role Leader, want 1", leaders)
	}
	// Writes need all three nodes: one succeeds, and its key works.
	if err := kc.CreateKey(ctx, "", "e2e-key"); err != nil {
		t.Fatal(err)
	}
	ct, version, err := kc.Encrypt(ctx, "", "e2e-key", []byte("e2e"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := kc.Decrypt(ctx, "", "e2e-key", version, ct, nil); err != nil || !bytes.Equal(pt, []byte("e2e")) {
		t.Fatalf("decrypt: %q, %v", pt, err)
	}
	sharedInstalled(t)
}

func minkmsRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the e2e suite needs %s: %v (run `make build`)", path, err)
	}
	return b
}
