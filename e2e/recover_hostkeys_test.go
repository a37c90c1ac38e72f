//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kmsctl/kmsctl/e2e/lab/labkit"
	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
)

// refused runs kmsctl with the recover lab's inventory (or inv) and args, and wants exit 4,
// want in its output and every host as it was (the snapshot before and after).
func (r *recoverLab) refused(ctx context.Context, t *testing.T, inv, want string, args ...string) result {
	t.Helper()
	if inv == "" {
		inv = r.inventory
	}
	snap := r.snapshot(ctx, t)
	res := kmsctl(t, r.c.l, append([]string{"-i", inv}, args...)...)
	if res.code != exitRefused {
		t.Errorf("want exit %d (refused)\n%s", exitRefused, res)
	}
	if !strings.Contains(res.stdout+res.stderr, want) {
		t.Errorf("the refusal does not say %q:\n%s", want, res)
	}
	after := r.snapshot(ctx, t)
	for _, n := range r.names {
		if snap[n] != after[n] {
			t.Errorf("%s changed by a refused run:\nbefore:\n%s\nafter:\n%s", n, snap[n], after[n])
		}
	}
	return res
}

// refusals runs, with kms2 dead (its Key Manager killed and stopped, its data kept), every
// refusal of recover node's preflight that the cases before do not: the survivors' HSM keys
// differ; the HSM key to install is not the cluster's; every node named (no survivor left);
// kms_storage_path a system directory; a file missing on kms2 with no source; kms2's service
// active while its API is silent (a wedged process), without --force. Each exits 4, says why
// and leaves every host unchanged. kms2 stays dead.
func (r *recoverLab) refusals(ctx context.Context, t *testing.T) {
	l := r.c.l
	l.MustExec("kms2", "systemctl kill --signal=SIGKILL minkms && systemctl stop minkms")
	r.waitDown(ctx, t, "kms2")
	node := []string{"recover", "node", "kms2", "--yes"}

	t.Run("the survivors' HSM keys differ", func(t *testing.T) {
		other := r.otherHSMKey(t)
		l.MustExec("kms3", "cp -p /etc/default/minkms /root/minkms.env.orig && "+
			"sed -i 's|^MINIO_KMS_HSM_KEY=.*|MINIO_KMS_HSM_KEY="+other.Text()+"|' /etc/default/minkms")
		defer l.MustExec("kms3", "mv /root/minkms.env.orig /etc/default/minkms")
		r.refused(ctx, t, "", "the survivors' HSM keys differ", node...)
	})
	t.Run("the HSM key to install is not the cluster's", func(t *testing.T) {
		other := filepath.Join(l.Dir, "other-hsm.key")
		if err := os.WriteFile(other, []byte(r.otherHSMKey(t).Text()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		inv := r.inventoryWith(t, "other-hsm-inventory.yml", func(s string) string {
			return strings.Replace(s, filepath.Join(l.Dir, "hsm.key"), other, 1)
		})
		r.refused(ctx, t, inv, "is not the survivors'", node...)
	})
	t.Run("every node named: no survivor left", func(t *testing.T) {
		r.refused(ctx, t, "", "no survivor answers", "recover", "node", "kms1", "kms2", "kms3", "--yes")
	})
	t.Run("kms_storage_path is a system directory", func(t *testing.T) {
		inv := r.inventoryWith(t, "etc-storage-inventory.yml", func(s string) string {
			return strings.Replace(s, "  vars:\n", "  vars:\n    kms_storage_path: /etc\n", 1)
		})
		r.refused(ctx, t, inv, "/etc", node...)
	})
	t.Run("a file missing on kms2 with no source", func(t *testing.T) {
		l.MustExec("kms2", "mv /usr/local/bin/minkms /root/minkms.moved")
		defer l.MustExec("kms2", "mv /root/minkms.moved /usr/local/bin/minkms")
		r.refused(ctx, t, "", "kms_binary_src", node...)
	})
	t.Run("kms2 wedged: service active, API silent, no --force", func(t *testing.T) {
		l.MustExec("kms2", "systemctl start minkms")
		r.waitUp(ctx, t, "kms2")
		l.MustExec("kms2", "systemctl kill --signal=SIGSTOP minkms")
		defer l.MustExec("kms2", "systemctl kill --signal=SIGKILL minkms; systemctl stop minkms")
		r.waitDown(ctx, t, "kms2")
		r.refused(ctx, t, "", "is active on it", node...)
	})
}

// replaced replaces kms2's container by a new machine with the same name, address and port, a
// new SSH host key and an empty disk. recover node is refused (exit 4, every host and every
// known_hosts file unchanged) without the new key's fingerprint, with --accept-new-host-keys
// and with a wrong fingerprint, naming the new one and the --expect-host-key form; with it,
// kms2 is rebuilt (files from the inventory's sources and the peer), its new key recorded in
// kmsctl's own known_hosts only, and a later run trusts it without the flag. check proves the
// cluster whole through the API.
func (r *recoverLab) replaced(ctx context.Context, t *testing.T, check func(*testing.T, ...string)) {
	l := r.c.l
	h := l.Replace("kms2")
	// What the new machine's provisioning gives it: the service's user (recover node installs
	// the Key Manager's files, not the system's users).
	l.MustExec("kms2", "useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin minkms-user")
	r.waitDown(ctx, t, "kms2")
	fp := ssh.FingerprintSHA256(h.HostKey)
	userKH := string(mustRead(t, l.KnownHosts))
	own := filepath.Join(l.Dir, "home", ".local", "state", "kmsctl", "known_hosts")
	ownBefore, _ := os.ReadFile(own)
	newLine := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port)))}, h.HostKey)
	untouched := func(t *testing.T, what string) {
		t.Helper()
		if string(mustRead(t, l.KnownHosts)) != userKH {
			t.Errorf("%s changed the user's known_hosts (kms_ssh_known_hosts)", what)
		}
		if b, _ := os.ReadFile(own); string(b) != string(ownBefore) {
			t.Errorf("%s changed kmsctl's own known_hosts:\n%s", what, b)
		}
	}
	wrong := ssh.FingerprintSHA256(r.c.l.Host("kms1").HostKey)
	for _, extra := range [][]string{nil, {"--accept-new-host-keys"}, {"--expect-host-key", "kms2=" + wrong}} {
		t.Run(fmt.Sprintf("refused with %v", extra), func(t *testing.T) {
			res := r.refused(ctx, t, r.sources, fp, append([]string{"recover", "node", "kms2", "--yes"}, extra...)...)
			if !strings.Contains(res.stdout+res.stderr, "--expect-host-key kms2="+fp) {
				t.Errorf("the refusal does not show --expect-host-key kms2=%s:\n%s", fp, res)
			}
			untouched(t, "a refused recover node")
		})
	}
	if t.Failed() {
		return
	}

	res := kmsctl(t, l, "-i", r.sources, "recover", "node", "kms2", "--expect-host-key", "kms2="+fp, "--yes")
	if res.code != exitOK {
		t.Fatalf("recover node kms2 --expect-host-key kms2=%s: want exit 0\n%s", fp, res)
	}
	if string(mustRead(t, l.KnownHosts)) != userKH {
		t.Errorf("recover node changed the user's known_hosts (kms_ssh_known_hosts)")
	}
	b, err := os.ReadFile(own)
	if err != nil || !slices.Contains(strings.Split(string(b), "\n"), newLine) {
		t.Errorf("kmsctl's own known_hosts lacks %q: %q, %v", newLine, b, err)
	}
	if p := kmsctl(t, l, "-i", r.sources, "ping"); p.code != exitOK {
		t.Errorf("a later run without --expect-host-key: want exit 0\n%s", p)
	}
	r.leaks(t, "recover node's output", res.stdout+res.stderr)

	// The harness's own view (its tunnels) learns the new key; the API proves the cluster.
	l.WriteKnownHosts()
	r.redial(ctx, t)
	check(t, "kms2")
}

// gone removes kms3's container for good: recover node removes its ID (the survivors no
// longer list it), so that a write through a survivor works again, and exits 3 saying how to
// finish; the old ciphertext (before's) still decrypts on kms2.
func (r *recoverLab) gone(ctx context.Context, t *testing.T, before seeded) {
	l := r.c.l
	id := r.idOf(ctx, t, "kms3")
	l.Remove("kms3")
	r.waitDown(ctx, t, "kms3")
	res := kmsctl(t, l, "-i", r.inventory, "recover", "node", "kms3", "--yes")
	if res.code != exitUnreachable {
		t.Errorf("recover node of a host that is gone: want exit %d\n%s", exitUnreachable, res)
	}
	for _, want := range []string{"To finish", "kmsctl recover node kms3", "provision a replacement"} {
		if !strings.Contains(res.stderr+res.stdout, want) {
			t.Errorf("the message does not say %q:\n%s", want, res)
		}
	}
	for _, n := range []string{"kms1", "kms2"} {
		v := kms.View(ctx, r.c.client, labkit.Endpoint(n))
		if v.Err != nil {
			t.Fatalf("%s: %v", n, v.Err)
		}
		if _, ok := v.Lists(labkit.Endpoint("kms3")); ok || slices.Contains(v.DownIDs, id) {
			t.Errorf("%s still lists kms3 (node %d): %s", n, id, v)
		}
	}
	name := "after-gone-" + randHex(4)
	cl := r.clientOf(t, "kms1")
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		err := cl.CreateKey(wctx, "", name)
		if err == nil {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("writes do not come back after kms3's ID was removed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pt, err := r.clientOf(t, "kms2").Decrypt(ctx, "", before.keys[0], before.version, before.ciphertext, nil); err != nil || string(pt) != string(before.plaintext) {
		t.Errorf("kms2: decrypt the ciphertext made before the failures: %q, %v", pt, err)
	}
	r.leaks(t, "recover node's output", res.stdout+res.stderr)
}

// idOf is node's ID as node itself reports it.
func (r *recoverLab) idOf(ctx context.Context, t *testing.T, node string) uint32 {
	t.Helper()
	v := kms.View(ctx, r.c.client, labkit.Endpoint(node))
	if v.Err != nil {
		t.Fatalf("%s: %v", node, v.Err)
	}
	return v.ID
}

// waitUp waits until every other node sees node up.
func (r *recoverLab) waitUp(ctx context.Context, t *testing.T, node string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		seen := 0
		for _, n := range r.names {
			if n == node {
				continue
			}
			v := kms.View(ctx, r.c.client, labkit.Endpoint(n))
			if id, ok := v.Lists(labkit.Endpoint(node)); v.Err == nil && ok && slices.Contains(v.UpIDs, id) {
				seen++
			}
		}
		if seen == len(r.names)-1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute the other nodes do not all see %s up", node)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// otherHSMKey is a new HSM key, not the cluster's.
func (r *recoverLab) otherHSMKey(t *testing.T) hsm.Key {
	t.Helper()
	var s [32]byte
	if _, err := rand.Read(s[:]); err != nil {
		t.Fatal(err)
	}
	return hsm.New(s)
}

// inventoryWith writes the recover inventory changed by edit as name in the lab directory.
func (r *recoverLab) inventoryWith(t *testing.T, name string, edit func(string) string) string {
	t.Helper()
	b := string(mustRead(t, r.inventory))
	s := edit(b)
	if s == b {
		t.Fatalf("%s: the edit changed nothing in\n%s", name, b)
	}
	p := filepath.Join(r.c.l.Dir, name)
	writeTestFile(t, p, s)
	return p
}

// redial connects the lab's tunnels and client again (a node has a new host key).
func (r *recoverLab) redial(ctx context.Context, t *testing.T) {
	t.Helper()
	r.tun.Close()
	var err error
	if r.tun, err = labkit.DialTunnels(ctx, r.c.l.SSHConfig, r.names); err != nil {
		t.Fatal(err)
	}
	r.c.redial(ctx, t)
}
