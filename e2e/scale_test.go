//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kms"
)

// TestScaleMinkms runs `kmsctl scale remove`, `kmsctl provision` and `kmsctl scale add` with
// the real binary on the shared three-node lab (issue 12, proof 3), each outcome checked
// through the Key Manager API over SSH tunnels: kms3, a healthy member, is decommissioned,
// after which the two others list only each other, hold every key and accept writes, kms3's
// service is stopped and no file anywhere in its container holds the lab's HSM key (grep of
// the whole file system, the key on grep's stdin); provision kms3 installs it again with the
// service stopped, and a second provision changes nothing; scale add kms3 makes it a member
// again: every node lists three members, kms3 lists every key and decrypts a ciphertext made
// before. No secret shows in kmsctl's output.
func TestScaleMinkms(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("TestScaleMinkms wall time %s", time.Since(start).Round(time.Millisecond)) }()
	c := sharedCluster(t)
	r := newRecoverLab(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The node files provision installs on kms3, from the lab's own (the teardown removes them).
	certs := filepath.Join(c.l.Dir, "certs")
	inv, err := os.ReadFile(r.inventory)
	if err != nil {
		t.Fatal(err)
	}
	withSrc := strings.Replace(string(inv), "        kms3:\n",
		fmt.Sprintf("        kms3:\n          kms_binary_src: %s\n          kms_ca_src: %s\n          kms_tls_cert_src: %s\n          kms_tls_key_src: %s\n",
			filepath.Join(c.l.Dir, "minkms"), filepath.Join(certs, "ca.crt"), filepath.Join(certs, "kms3.crt"), filepath.Join(certs, "kms3.key")), 1)
	inventory := filepath.Join(c.l.Dir, "scale-inventory.yml")
	writeTestFile(t, inventory, withSrc)

	before := c.seed(ctx, t, "scale", 3, "scale remove")
	keys := before.keys
	run := func(t *testing.T, args ...string) result {
		t.Helper()
		res := kmsctl(t, c.l, append([]string{"-i", inventory}, args...)...)
		r.leaks(t, strings.Join(args[:2], " ")+"'s output", res.stdout+res.stderr)
		return res
	}
	// members checks that each of nodes lists exactly want through its own API, and
	// holds every key.
	members := func(t *testing.T, want []string, nodes ...string) {
		t.Helper()
		for _, n := range nodes {
			cl := r.clientOf(t, n)
			v := kms.View(ctx, cl, n+":7373")
			var got []string
			for _, ep := range v.Members {
				got = append(got, strings.TrimSuffix(ep, ":7373"))
			}
			slices.Sort(got)
			if v.Err != nil || !slices.Equal(got, want) {
				t.Errorf("%s lists %v (%v), want %v", n, got, v.Err, want)
			}
			if listed := keyNames(ctx, t, cl); !containsAll(listed, keys) {
				t.Errorf("%s lists keys %v, want %v among them", n, listed, keys)
			}
		}
	}

	t.Run("scale remove kms3", func(t *testing.T) {
		res := run(t, "scale", "remove", "kms3", "--yes")
		if res.code != exitOK || !strings.Contains(res.stdout, "REMOVED kms3") {
			t.Fatalf("scale remove kms3: want exit 0\n%s", res)
		}
		members(t, []string{"kms1", "kms2"}, "kms1", "kms2")
		if _, _, err := r.clientOf(t, "kms1").Encrypt(ctx, "", keys[1], []byte("write after"), nil); err != nil {
			t.Errorf("kms1 after the removal: %v", err)
		}
		if out, _ := c.l.Exec("kms3", "systemctl is-active minkms"); strings.TrimSpace(out) == "active" {
			t.Error("kms3's service is still active")
		}
		if held := filesHolding(t, c.l, "kms3", c.hsmKey.Text()[len("hsm:aes256:"):]); len(held) > 0 {
			t.Errorf("files of kms3 still hold the HSM key: %v", held)
		}
		for _, p := range []string{"/etc/default/minkms", "/etc/minkms", "/usr/local/bin/minkms", "/etc/systemd/system/minkms.service", storagePath} {
			if out, _ := c.l.Exec("kms3", "test -e "+p+" && echo present"); strings.Contains(out, "present") {
				t.Errorf("kms3: %s is still there", p)
			}
		}
	})

	t.Run("provision kms3 twice", func(t *testing.T) {
		res := run(t, "provision", "kms3")
		if res.code != exitOK || !strings.Contains(res.stdout, "PROVISIONED kms3") {
			t.Fatalf("provision kms3: want exit 0\n%s", res)
		}
		if out, _ := c.l.Exec("kms3", "systemctl is-active minkms"); strings.TrimSpace(out) != "inactive" {
			t.Errorf("kms3's service after provision: %q, want inactive", out)
		}
		if out := c.l.MustExec("kms3", "stat -c '%a %U' /etc/default/minkms"); out != "600 root" {
			t.Errorf("kms3's env file: %q, want 600 root", out)
		}
		res = run(t, "provision", "kms3")
		m := regexp.MustCompile(`(?m)^kms3\s+: ok=\d+ changed=(\d+)`).FindStringSubmatch(res.stdout)
		if res.code != exitOK || m == nil || m[1] != "0" {
			t.Fatalf("second provision kms3: want exit 0 and changed=0\n%s", res)
		}
		if res := run(t, "provision", "kms1"); res.code != exitRefused || !strings.Contains(res.stdout, "kms1 is a running Key Manager") {
			t.Errorf("provision of a running member: want exit %d\n%s", exitRefused, res)
		}
	})

	t.Run("scale add kms3", func(t *testing.T) {
		res := run(t, "scale", "add", "kms3", "--yes")
		if res.code != exitOK || !strings.Contains(res.stdout, "ADDED kms3") {
			t.Fatalf("scale add kms3: want exit 0\n%s", res)
		}
		members(t, []string{"kms1", "kms2", "kms3"}, "kms1", "kms2", "kms3")
		if plain, err := r.clientOf(t, "kms3").Decrypt(ctx, "", keys[0], before.version, before.ciphertext, nil); err != nil || string(plain) != string(before.plaintext) {
			t.Errorf("decrypt through kms3: %q, %v", plain, err)
		}
	})
	c.healthy(t)
}

// filesHolding greps the whole file system of node's container (but /proc, /sys and /dev)
// for text, given on grep's standard input (never its argv), and returns the files holding it.
// Devices, FIFOs and sockets are skipped; files it cannot read (exit 2) are not searched.
func filesHolding(t *testing.T, l *Lab, node, text string) []string {
	t.Helper()
	out, err := l.dockerStdin([]byte(text+"\n"), "exec", "-i", l.Host(node).ID, "sh", "-c",
		"grep -rlsF -D skip -f /dev/stdin --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev / ; echo rc=$?")
	if err != nil {
		t.Fatalf("grep %s's file system: %v\n%s", node, err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !slices.Contains([]string{"rc=0", "rc=1", "rc=2"}, last) {
		t.Fatalf("grep %s's file system: %s", node, out)
	}
	return lines[:len(lines)-1]
}

// keyNames lists the keys of the default enclave through cl.
func keyNames(ctx context.Context, t *testing.T, cl *kms.Client) []string {
	t.Helper()
	var out []string
	for k, err := range cl.ListKeys(ctx, "", "") {
		if err != nil {
			t.Errorf("list keys: %v", err)
			return out
		}
		out = append(out, k.GetName())
	}
	return out
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
