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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/e2e/lab/labkit"
	"github.com/kmsctl/kmsctl/kms"
)

// exitRefused is the CLI's exit code for a refusal that changed nothing.
const exitRefused = 4

// storagePath is the lab's kms_storage_path (the inventory's default).
const storagePath = "/mnt/minio-kms"

// TestRecoverNodeMinkms runs `kmsctl recover node` with the real binary against one lab of
// three containers running the Key Manager simulator as minkms.service, shared by every case
// and healthy between them. Each outcome is checked through the Key Manager API over SSH
// tunnels (views, keys, a ciphertext made before the failure), never only by kmsctl's word:
// a node seen up is refused (exit 4) with every host unchanged; one node killed and its
// storage wiped is recovered, with no secret in any argv, output, run log, journal or the
// node's journalctl; two nodes lost at once are recovered in one command from the one survivor,
// one with its config rendered from the built-in template, the other with its config, CA and
// binary copied from the survivor (kms_*_from: peer); every other refusal of the preflight
// leaves every host unchanged; a node replaced by a new machine with a new SSH host key is
// refused until its fingerprint is named, then recovered; a node whose machine is gone for
// good has its ID removed and writes come back (exit 3).
func TestRecoverNodeMinkms(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("TestRecoverNodeMinkms wall time %s", time.Since(start).Round(time.Millisecond)) }()
	c := sharedCluster(t)
	t.Logf("lab ready in %s", time.Since(start).Round(time.Millisecond))
	r := newRecoverLab(t, c)

	// Keys and a ciphertext made before any failure; every case checks them afterwards.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	before := c.seed(ctx, t, "before", 3, "the failure")
	check := func(t *testing.T, recovered ...string) {
		t.Helper()
		r.checkCluster(ctx, t, before, recovered)
	}

	t.Run("refused: kms2 is up", func(t *testing.T) {
		snap := r.snapshot(ctx, t)
		res := kmsctl(t, c.l, "-i", r.inventory, "recover", "node", "kms2", "--yes")
		if res.code != exitRefused {
			t.Fatalf("recover node of a live node: want exit %d\n%s", exitRefused, res)
		}
		if !strings.Contains(res.stderr+res.stdout, "kms2") {
			t.Errorf("the refusal does not name kms2:\n%s", res)
		}
		after := r.snapshot(ctx, t)
		for _, n := range r.names {
			if snap[n] != after[n] {
				t.Errorf("%s changed by a refused recover node:\nbefore:\n%s\nafter:\n%s", n, snap[n], after[n])
			}
		}
	})
	check(t)

	t.Run("a run's lease stops a second bastion", func(t *testing.T) { leaseFromTwoBastions(t, c, r) })

	t.Run("kms2 killed and its disk lost", func(t *testing.T) {
		// Every process's argv, here and on the hosts, for the whole failure and recovery; a
		// canary with a marker in its argv proves the recorder sees short-lived processes.
		argv := RecordArgv()
		canary := "kmsctl-argv-canary-" + randHex(8)
		since := strings.TrimSpace(c.l.MustExec("kms2", "date '+%Y-%m-%d %H:%M:%S'"))
		r.loseDisk(t, "kms2")
		r.waitDown(ctx, t, "kms2")
		res := kmsctl(t, c.l, "-i", r.inventory, "recover", "node", "kms2", "--yes")
		if res.code != exitOK {
			argv.Stop()
			t.Fatalf("recover node kms2: want exit 0\n%s", res)
		}
		check(t, "kms2")

		c.l.MustExec("kms1", `m=kmsctl-argv-; sh -c 'sleep 0.05; true' "${m}`+strings.TrimPrefix(canary, "kmsctl-argv-")+`"`)
		sweeps := argv.Sweeps()
		cmdlines := argv.Stop()
		if !argv.Saw(canary) {
			t.Errorf("the argv recorder missed the canary process (%d sweeps of /proc): the secret checks prove nothing", sweeps)
		}
		if !argv.Saw("recover node kms2 --yes") {
			t.Errorf("the argv recorder did not see kmsctl's own command line")
		}
		if !argv.Saw("/usr/local/bin/minkms server " + storagePath + " --host kms2:7373") {
			t.Errorf("the argv recorder saw no minkms server started on kms2")
		}
		t.Logf("argv recorder: exec events %v, %d sweeps of /proc, %d distinct command lines", argv.ExecEvents(), sweeps, len(cmdlines))
		for _, l := range cmdlines {
			r.leaks(t, "a process's argv", l)
		}
		r.leaks(t, "recover node's stdout", res.stdout)
		r.leaks(t, "recover node's stderr", res.stderr)
		r.leaksInState(t)
		m := regexp.MustCompile(`(?m)^run (\S+) \(its journal: kmsctl runs show `).FindStringSubmatch(res.stdout)
		if m == nil {
			t.Fatalf("recover node printed no run ID to look up:\n%s", res)
		}
		if ls := kmsctl(t, c.l, "runs", "ls"); ls.code != exitOK || !regexp.MustCompile(`(?m)^`+m[1]+` .* recover node kms2 +ok `).MatchString(ls.stdout) {
			t.Errorf("kmsctl runs ls does not list run %s of recover node kms2 as ok\n%s", m[1], ls)
		}
		shown := kmsctl(t, c.l, "runs", "show", m[1])
		if shown.code != exitOK || !strings.Contains(shown.stdout, "kms2") {
			t.Errorf("kmsctl runs show %s\n%s", m[1], shown)
		}
		r.leaks(t, "kmsctl runs show", shown.stdout+shown.stderr)
		for _, n := range r.names {
			journal := c.l.MustExec(n, fmt.Sprintf("journalctl -u minkms --no-pager --since '%s'", since))
			if n == "kms2" && !strings.Contains(journal, "minkms") {
				t.Errorf("kms2: empty minkms journal since the failure:\n%s", journal)
			}
			r.leaks(t, n+": journalctl -u minkms", journal)
		}
	})
	c.healthy(t)

	// kms2 lost its config too and the inventory names none: it is rendered from the built-in
	// template. kms3 lost its config, CA and binary, and the inventory copies them from a
	// peer (kms_*_from: peer): kms1, the one survivor, streamed through kmsctl.
	t.Run("kms2 and kms3 lost, recovered from kms1 alone", func(t *testing.T) {
		r.loseDisk(t, "kms2")
		r.loseDisk(t, "kms3")
		const config, ca, binary = "/etc/minkms/config.yaml", "/etc/minkms/certs/ca.crt", "/usr/local/bin/minkms"
		c.l.MustExec("kms2", "rm "+config)
		c.l.MustExec("kms3", "rm "+config+" "+ca+" "+binary)
		r.waitDown(ctx, t, "kms2", "kms3")
		inv, err := os.ReadFile(r.inventory)
		if err != nil {
			t.Fatal(err)
		}
		fromPeer := strings.Replace(string(inv), "        kms3:\n", "        kms3:\n          kms_config_from: peer\n          kms_ca_from: peer\n          kms_binary_from: peer\n", 1)
		if fromPeer == string(inv) {
			t.Fatalf("no host kms3 in the inventory:\n%s", inv)
		}
		peerInv := filepath.Join(c.l.Dir, "recover-from-peer.yml")
		writeTestFile(t, peerInv, fromPeer)
		res := kmsctl(t, c.l, "-i", peerInv, "recover", "node", "kms2", "kms3", "--yes")
		if res.code != exitOK {
			t.Fatalf("recover node kms2 kms3: want exit 0\n%s", res)
		}
		for _, want := range []string{"config rendered from the built-in templates/minkms.config.j2 (kms2 has none)",
			"binary copied from kms1 (" + binary + ", sha256-verified)", "config copied from kms1 (" + config + ", sha256-verified)",
			"CA certificate copied from kms1 (" + ca + ", sha256-verified)"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("the plan does not say %q\n%s", want, res.stdout)
			}
		}
		check(t, "kms2", "kms3")
		r.leaks(t, "recover node's output", res.stdout+res.stderr)
		rendered := c.l.MustExec("kms2", "cat "+config+"; stat -c '%a %U:%G' "+config)
		for _, want := range []string{"written by kmsctl from its built-in templates/minkms.config.j2", "identity: " + r.admin.Identity(),
			"key: /etc/minkms/certs/private.key", "ca: " + ca, "640 root:minkms-user"} {
			if !strings.Contains(rendered, want) {
				t.Errorf("kms2's rendered config lacks %q:\n%s", want, rendered)
			}
		}
		r.leaks(t, "kms2's rendered config", rendered)
		sums := "sha256sum " + config + " " + ca + " " + binary + " | cut -d' ' -f1; stat -c '%a %U:%G' " + config + " " + ca + " " + binary
		if peer, got := c.l.MustExec("kms1", sums), c.l.MustExec("kms3", sums); got != peer {
			t.Errorf("kms3's config, CA and binary are not kms1's:\nkms1:\n%s\nkms3:\n%s", peer, got)
		}
	})
	c.healthy(t)

	t.Run("refusals with kms2 dead", func(t *testing.T) { r.refusals(ctx, t) })
	t.Run("kms2 replaced by a new machine with a new host key", func(t *testing.T) { r.replaced(ctx, t, check) })
	c.healthy(t)
	t.Run("kms3 gone for good", func(t *testing.T) { r.gone(ctx, t, before) })
	// The lab restored for the tests after this one: kms3 created again, the cluster healed.
	sharedCluster(t)
}

// recoverLab is a minkmsCluster set up for recover node: an inventory that also names the
// HSM key file, and the secrets to look for.
type recoverLab struct {
	c         *minkmsCluster
	names     []string
	inventory string
	sources   string // inventory that also names every file's source, for a new machine
	ca        string
	admin     kms.APIKey
	tun       *labkit.Tunnels
	secrets   map[string]string // what it is -> the secret text
}

func newRecoverLab(t *testing.T, c *minkmsCluster) *recoverLab {
	t.Helper()
	r := &recoverLab{c: c, names: c.l.Names(), ca: filepath.Join(c.l.Dir, "certs", "ca.crt")}
	b, err := os.ReadFile(filepath.Join(c.l.Dir, "api.key"))
	if err != nil {
		t.Fatal(err)
	}
	if r.admin, err = kms.ParseAPIKey(strings.TrimSpace(string(b))); err != nil {
		t.Fatal(err)
	}
	hsmFile := filepath.Join(c.l.Dir, "hsm.key")
	if err := os.WriteFile(hsmFile, []byte(c.hsmKey.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := os.ReadFile(c.inventory)
	if err != nil {
		t.Fatal(err)
	}
	withHSM := strings.Replace(string(inv), "  vars:\n", "  vars:\n    kms_hsm_key_file: "+hsmFile+"\n", 1)
	if withHSM == string(inv) {
		t.Fatalf("the lab's inventory has no all.vars to add kms_hsm_key_file to:\n%s", inv)
	}
	r.inventory = filepath.Join(c.l.Dir, "recover-inventory.yml")
	writeTestFile(t, r.inventory, withHSM)
	// The same with every file of a node named for a new machine: its own certificate and
	// key from the lab's files, the binary, the CA and the config from the peer.
	certs := filepath.Join(c.l.Dir, "certs")
	sources := strings.Replace(withHSM, "  vars:\n", "  vars:\n    kms_binary_from: peer\n    kms_ca_from: peer\n    kms_config_from: peer\n", 1)
	for _, n := range r.names {
		ep := "          kms_endpoint: " + n + ":7373\n"
		if !strings.Contains(sources, ep) {
			t.Fatalf("the lab's inventory has no %q", ep)
		}
		sources = strings.Replace(sources, ep, ep+"          kms_tls_cert_src: "+filepath.Join(certs, n+".crt")+"\n          kms_tls_key_src: "+filepath.Join(certs, n+".key")+"\n", 1)
	}
	r.sources = filepath.Join(c.l.Dir, "recover-sources-inventory.yml")
	writeTestFile(t, r.sources, sources)
	// The secrets whole and their secret parts alone (after the scheme prefix).
	hsmText, apiText := c.hsmKey.Text(), r.admin.Secret()
	r.secrets = map[string]string{"the HSM key": hsmText, "the admin API key": apiText}
	if i := strings.LastIndex(hsmText, ":"); i >= 0 && len(hsmText)-i > 16 {
		r.secrets["the HSM key's secret part"] = hsmText[i+1:]
	}
	if i := strings.LastIndex(apiText, ":"); i >= 0 && len(apiText)-i > 16 {
		r.secrets["the admin API key's secret part"] = apiText[i+1:]
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r.tun, err = labkit.DialTunnels(ctx, c.l.SSHConfig, r.names); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.tun.Close() }) // the tunnels of the moment (redial replaces them)
	return r
}

// clientOf is a Key Manager client that talks to node alone.
func (r *recoverLab) clientOf(t *testing.T, node string) *kms.Client {
	t.Helper()
	cl, err := labkit.NewClient(r.tun, r.ca, r.admin, []string{node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// loseDisk kills node's Key Manager (SIGKILL), keeps it down (the unit restarts it on its
// own otherwise) and empties its storage directory: a lost disk.
func (r *recoverLab) loseDisk(t *testing.T, node string) {
	t.Helper()
	r.c.l.MustExec(node, "systemctl kill --signal=SIGKILL minkms && systemctl stop minkms && find "+storagePath+" -mindepth 1 -delete")
	if out := r.c.l.MustExec(node, "ls -A "+storagePath); out != "" {
		t.Fatalf("%s: storage not empty after the wipe: %q", node, out)
	}
}

// waitDown waits until every other node's view shows each of nodes down (or no longer
// up), which the preflight's proof of death needs.
func (r *recoverLab) waitDown(ctx context.Context, t *testing.T, nodes ...string) {
	t.Helper()
	var others []string
	for _, n := range r.names {
		if !slices.Contains(nodes, n) {
			others = append(others, labkit.Endpoint(n))
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		views := kms.Views(ctx, r.c.client, others)
		seen := 0
		for _, v := range views {
			if v.Err != nil {
				continue
			}
			down := 0
			for _, n := range nodes {
				id, ok := v.Lists(labkit.Endpoint(n))
				if ok && slices.Contains(v.DownIDs, id) && !slices.Contains(v.UpIDs, id) {
					down++
				}
			}
			if down == len(nodes) {
				seen++
			}
		}
		if seen == len(others) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute the survivors do not all see %v down: %v", nodes, views)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkCluster proves through the API that the cluster is whole again: every node answers,
// lists all three members and sees them up under one leader; each recovered node, asked
// alone, lists every key made before the failure and decrypts the ciphertext made before
// it (before); and a new key can be written through it.
func (r *recoverLab) checkCluster(ctx context.Context, t *testing.T, before seeded, recovered []string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	views, err := kms.WaitConverged(wctx, r.c.client, labkit.Endpoints(r.names))
	if err != nil {
		t.Fatalf("the cluster has not converged: %v\n%v", err, views)
	}
	for _, v := range views {
		for _, n := range r.names {
			if _, ok := v.Lists(labkit.Endpoint(n)); !ok {
				t.Errorf("%s does not list %s as a member: %v", v.Endpoint, n, v.Members)
			}
		}
		if len(v.Members) != len(r.names) {
			t.Errorf("%s lists %d members, want %d: %v", v.Endpoint, len(v.Members), len(r.names), v.Members)
		}
	}
	for _, n := range recovered {
		cl := r.clientOf(t, n)
		var listed []string
		for k, err := range cl.ListKeys(ctx, "", "") {
			if err != nil {
				t.Fatalf("%s: list keys: %v", n, err)
			}
			listed = append(listed, k.GetName())
		}
		for _, k := range before.keys {
			if !slices.Contains(listed, k) {
				t.Errorf("%s: key %s made before the failure is not listed (listed: %v)", n, k, listed)
			}
		}
		pt, err := cl.Decrypt(ctx, "", before.keys[0], before.version, before.ciphertext, nil)
		if err != nil || !bytes.Equal(pt, before.plaintext) {
			t.Errorf("%s: decrypt the ciphertext made before the failure: %q, %v", n, pt, err)
		}
		after := "after-" + n + "-" + randHex(4)
		if err := cl.CreateKey(ctx, "", after); err != nil {
			t.Errorf("%s: a write through the recovered node: %v", n, err)
		} else if err := cl.DeleteKey(ctx, "", after); err != nil {
			t.Errorf("%s: delete the key just written: %v", n, err)
		}
	}
}

// snapshot is each host's state that a refused recovery must leave alone: the storage
// directory (names, modes, owners, sizes), the sha256 of its files and the Key Manager's, the
// unit's state and main PID, kmsctl's lease directory, and the cluster as the node sees it.
func (r *recoverLab) snapshot(ctx context.Context, t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range r.names {
		s := r.c.l.MustExec(n, "find "+storagePath+" -printf '%p %m %u:%g %s\\n' | sort; "+
			"find "+storagePath+" /etc/minkms /etc/default/minkms /etc/systemd/system/minkms.service /usr/local/bin/minkms -type f -exec sha256sum {} + | sort -k2; "+
			"systemctl show -p ActiveState -p SubState -p UnitFileState -p MainPID -p NRestarts minkms; "+
			"ls -la --time-style=full-iso /var/lib/kmsctl 2>&1 || true")
		v := kms.View(ctx, r.c.client, labkit.Endpoint(n))
		if v.Err != nil {
			out[n] = s + "cluster status: no answer\n" // a dead node's
			continue
		}
		out[n] = s + fmt.Sprintf("id=%d members=%v up=%v down=%v\n", v.ID, v.Members, v.UpIDs, v.DownIDs)
	}
	return out
}

// leaks fails the test if s holds any of the secrets.
func (r *recoverLab) leaks(t *testing.T, where, s string) {
	t.Helper()
	for what, secret := range r.secrets {
		if strings.Contains(s, secret) {
			t.Errorf("%s appears in %s", what, where)
		}
	}
}

// leaksInState checks every file kmsctl wrote under its state directory (run logs, the
// journal of runs) for the secrets, and that there is something to check.
func (r *recoverLab) leaksInState(t *testing.T) {
	t.Helper()
	state := filepath.Join(r.c.l.Dir, "home", ".local", "state")
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
		r.leaks(t, "kmsctl's state file "+p, string(b))
		return nil
	})
	if err != nil {
		t.Fatalf("read kmsctl's state dir: %v", err)
	}
	if logged == 0 {
		t.Errorf("kmsctl wrote nothing under %s (XDG_STATE_HOME): nothing to check", state)
	}
}
