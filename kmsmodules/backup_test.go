package kmsmodules_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kmsmodules"
)

// populate creates an enclave (beside the default one) with two keys, a
// policy and an identity on n.
func (l *lab) populate(n *kmsim.Node) {
	l.t.Helper()
	c := l.client(n)
	waitReady(l.t, c, n.Host())
	ctx := l.t.Context()
	user, err := kms.GenerateAPIKey()
	if err != nil {
		l.t.Fatal(err)
	}
	for _, err := range []error{
		c.CreateEnclave(ctx, "tenant"),
		c.CreateKey(ctx, "tenant", "minio-1"),
		c.CreateKey(ctx, "tenant", "minio-2"),
		c.CreatePolicy(ctx, "tenant", &pb.CreatePolicyRequest{Name: "readers"}),
		c.CreateIdentity(ctx, "tenant", &pb.CreateIdentityRequest{Identity: user.Identity()}),
	} {
		if err != nil {
			l.t.Fatal(err)
		}
	}
}

// TestBackupRestoreVerify: a backup (snapshot and manifest, 0600, written
// atomically) restores onto a fresh node, which then holds exactly what the
// backup held and decrypts its canary; every module is idempotent and
// changes nothing in check mode.
func TestBackupRestoreVerify(t *testing.T) {
	l := newLab(t)
	src := l.start()
	l.populate(src)
	h := l.sshHost("kms1", src)
	dest := filepath.Join(t.TempDir(), "backups", "kms.db")
	args := map[string]any{"dest": dest}

	r, err := l.run("kms_backup", h, args, true)
	if err != nil || !r.Changed {
		t.Fatalf("check mode: %+v, %v", r, err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("check mode wrote the backup")
	}
	r, err = l.run("kms_backup", h, args, false)
	// Two keys and the canary key kms_backup created.
	if err != nil || !r.Changed || r.Data["keys"] != 3 || r.Data["enclaves"] != 2 || r.Data["policies"] != 1 || r.Data["identities"] != 1 || r.Data["canary"] != true {
		t.Fatalf("backup: %+v, %v", r, err)
	}
	if got := keyNames(t, l.client(src)); !slices.Contains(got, "default/kmsctl-canary") {
		t.Fatalf("no canary key on the node: %v", got)
	}
	for _, f := range []string{dest, dest + ".manifest.json"} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi, err)
		}
	}
	var m map[string]any
	if b, err := os.ReadFile(dest + ".manifest.json"); err != nil || json.Unmarshal(b, &m) != nil || m["canary"] == nil || m["sha256"] != r.Data["sha256"] ||
		m["hsm_fingerprint"] != l.hsmKey.Fingerprint() || m["canary"].(map[string]any)["key"] != "kmsctl-canary" {
		t.Errorf("manifest: %v %v", m, err)
	}
	if r, err := l.run("kms_backup", h, args, false); err != nil || r.Changed {
		t.Errorf("second backup: %+v, %v; want ok", r, err)
	}
	if r, err := l.run("kms_backup", h, map[string]any{"dest": dest, "force": true}, false); err != nil || !r.Changed {
		t.Errorf("forced backup: %+v, %v", r, err)
	}

	manifest := dest + ".manifest.json"
	if r, err := l.run("kms_verify", h, map[string]any{"manifest": manifest, "exact": true}, false); err != nil || r.Failed || r.Data["canary"] != true {
		t.Errorf("verify the source: %+v, %v", r, err)
	}

	// Restore onto a fresh node.
	fresh := l.start()
	fh := l.sshHost("kms9", fresh)
	if r, err := l.run("kms_verify", fh, map[string]any{"manifest": manifest}, false); !isVerification(err) || !r.Failed || !strings.Contains(r.Msg, "missing") {
		t.Errorf("verify a fresh node: %+v, %v; want a failure naming what is missing", r, err)
	}
	r, err = l.run("kms_restore", fh, map[string]any{"src": dest}, true)
	if err != nil || !r.Changed {
		t.Fatalf("restore, check mode: %+v, %v", r, err)
	}
	if got := keyNames(t, l.client(fresh)); len(got) != 0 {
		t.Fatalf("check mode restored: %v", got)
	}
	r, err = l.run("kms_restore", fh, map[string]any{"src": dest}, false)
	if err != nil || !r.Changed {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	if r, err := l.run("kms_verify", fh, map[string]any{"manifest": manifest, "exact": true}, false); err != nil || r.Failed || r.Data["canary"] != true {
		t.Errorf("verify the restored node: %+v, %v", r, err)
	}
	for _, check := range []bool{true, false} {
		if r, err := l.run("kms_restore", fh, map[string]any{"src": dest}, check); err != nil || r.Changed || !strings.Contains(r.Msg, "already holds exactly") {
			t.Errorf("second restore (check %v): %+v, %v", check, r, err)
		}
	}

	// The source grows: verify passes but names the extra key, fails with exact.
	if err := l.client(src).CreateKey(t.Context(), "tenant", "minio-3"); err != nil {
		t.Fatal(err)
	}
	r, err = l.run("kms_verify", h, map[string]any{"manifest": manifest}, false)
	if err != nil || r.Failed || len(r.Data["extra"].([]any)) != 1 {
		t.Errorf("verify a grown node: %+v, %v", r, err)
	}
	if r, err := l.run("kms_verify", h, map[string]any{"manifest": manifest, "exact": true}, false); !isVerification(err) || !r.Failed || !strings.Contains(r.Msg, "tenant/minio-3") {
		t.Errorf("verify exact on a grown node: %+v, %v", r, err)
	}
	// A canary that decrypts to other bytes fails the verification.
	var mm map[string]any
	b, _ := os.ReadFile(manifest)
	if err := json.Unmarshal(b, &mm); err != nil {
		t.Fatal(err)
	}
	mm["canary"].(map[string]any)["plaintext"] = "AAAA"
	b, _ = json.Marshal(mm)
	bad := filepath.Join(t.TempDir(), "bad.manifest.json")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := l.run("kms_verify", h, map[string]any{"manifest": bad}, false); !isVerification(err) || !r.Failed || r.Data["canary"] != false || !strings.Contains(r.Msg, "canary") {
		t.Errorf("verify with a wrong canary: %+v, %v", r, err)
	}
	// A restore after which the node does not hold what the manifest lists
	// (a key the snapshot lacks) fails its proof: a verification (exit 7).
	if err := json.Unmarshal(b, &mm); err != nil {
		t.Fatal(err)
	}
	enc := mm["objects"].(map[string]any)["enclaves"].([]any)[0].(map[string]any)
	enc["keys"] = append(enc["keys"].([]any), map[string]any{"name": "never-made", "version": 0})
	b, _ = json.Marshal(mm)
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	other := l.start()
	if _, err := l.run("kms_restore", l.sshHost("kms8", other), map[string]any{"src": dest, "manifest": bad}, false); !isVerification(err) || !strings.Contains(err.Error(), "never-made") {
		t.Errorf("restore of a snapshot that lacks a key its manifest lists: %v; want a verification error naming it", err)
	}
}

// TestRestoreRefusals: a restore onto a node holding other state is refused
// (exit 4) and changes nothing; a snapshot that is not the one its manifest
// describes is not sent.
func TestRestoreRefusals(t *testing.T) {
	l := newLab(t)
	src := l.start()
	l.populate(src)
	h := l.sshHost("kms1", src)
	dest := filepath.Join(t.TempDir(), "kms.db")
	if _, err := l.run("kms_backup", h, map[string]any{"dest": dest}, false); err != nil {
		t.Fatal(err)
	}
	used := l.start()
	c := l.client(used)
	waitReady(t, c, used.Host())
	if err := c.CreateEnclave(t.Context(), "other"); err != nil {
		t.Fatal(err)
	}
	uh := l.sshHost("kms2", used)
	for _, check := range []bool{true, false} {
		_, err := l.run("kms_restore", uh, map[string]any{"src": dest}, check)
		if err == nil || !isRefusal(err) || !strings.Contains(err.Error(), "is not clean") {
			t.Errorf("restore onto a node with state (check %v): %v; want a refusal", check, err)
		}
	}
	if got := enclaveNames(t, c); !slices.Equal(got, []string{"default", "other"}) {
		t.Errorf("a refused restore changed the node: %v", got)
	}

	// A tampered snapshot is not restored.
	f, err := os.OpenFile(dest, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("x"))
	f.Close()
	fresh := l.start()
	for _, check := range []bool{true, false} {
		if _, err := l.run("kms_restore", l.sshHost("kms3", fresh), map[string]any{"src": dest}, check); !isRefusal(err) || !strings.Contains(err.Error(), "not the one its manifest describes") {
			t.Errorf("a tampered snapshot (check %v): %v; want a refusal", check, err)
		}
	}
	if _, err := kmsmodules.CheckBackup(dest); !errors.Is(err, kmsmodules.ErrSnapshotMismatch) {
		t.Errorf("CheckBackup of a tampered snapshot: %v", err)
	}
	if got := keyNames(t, l.client(fresh)); len(got) != 0 {
		t.Errorf("a tampered snapshot was restored: %v", got)
	}
	if _, err := l.run("kms_restore", l.sshHost("kms3", fresh), map[string]any{"src": dest, "manifest": filepath.Join(t.TempDir(), "none.json")}, false); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("a missing manifest: %v", err)
	}
	// A node with another HSM key in its env file is refused.
	if _, err := l.run("kms_backup", h, map[string]any{"dest": dest, "force": true}, false); err != nil {
		t.Fatal(err)
	}
	fh := l.sshHost("kms3", fresh)
	var other [32]byte
	other[5] = 1
	fh.conn.SetFile(fh.node.EnvFile, "MINIO_KMS_HSM_KEY="+hsm.New(other).Text()+"\n", 0o600)
	for _, check := range []bool{true, false} {
		_, err := l.run("kms_restore", fh, map[string]any{"src": dest}, check)
		if err == nil || !isRefusal(err) || !strings.Contains(err.Error(), l.hsmKey.Fingerprint()) || !strings.Contains(err.Error(), hsm.New(other).Fingerprint()) {
			t.Errorf("restore onto a node with another HSM key (check %v): %v; want a refusal naming both fingerprints", check, err)
		}
	}
	if got := keyNames(t, l.client(fresh)); len(got) != 0 {
		t.Errorf("a refused restore changed the node: %v", got)
	}
	// Without the env file there is no fingerprint to compare: no backup, no restore.
	fh.conn.DeleteFile(fh.node.EnvFile)
	if _, err := l.run("kms_restore", fh, map[string]any{"src": dest}, false); err == nil || !strings.Contains(err.Error(), "read the env file") {
		t.Errorf("restore without the node's env file: %v", err)
	}
	h.conn.DeleteFile(h.node.EnvFile)
	if _, err := l.run("kms_backup", h, map[string]any{"dest": dest, "force": true}, false); err == nil || !strings.Contains(err.Error(), "read the env file") {
		t.Errorf("backup without the node's env file: %v", err)
	}
}

func enclaveNames(t *testing.T, c *kms.Client) []string {
	t.Helper()
	var out []string
	for e, err := range c.ListEnclaves(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.GetName())
	}
	return out
}

// keyNames lists every key of every enclave.
func keyNames(t *testing.T, c *kms.Client) []string {
	t.Helper()
	var out []string
	for _, e := range enclaveNames(t, c) {
		for k, err := range c.ListKeys(t.Context(), e, "") {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e+"/"+k.GetName())
		}
	}
	return out
}

// TestBackupGzip: with gzip: true the snapshot is gzip-compressed (as its
// vendor name says), the manifest names the cluster, the members, the
// counts and the compression, and the backup restores onto a fresh node.
func TestBackupGzip(t *testing.T) {
	l := newLab(t)
	src := l.start()
	l.populate(src)
	h := l.sshHost("kms1", src)
	dest := filepath.Join(t.TempDir(), "20261202_080000_kms.db.gzip")
	r, err := l.run("kms_backup", h, map[string]any{"dest": dest, "gzip": true, "cluster": "prod"}, false)
	if err != nil || !r.Changed {
		t.Fatalf("backup: %+v, %v", r, err)
	}
	b, err := os.ReadFile(dest)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b || r.Data["size"] != len(b) {
		t.Fatalf("snapshot: %d bytes, %v; want gzip of size %v", len(b), err, r.Data["size"])
	}
	var m struct {
		Cluster     string                      `json:"cluster"`
		Compression string                      `json:"compression"`
		Counts      map[string]int              `json:"counts"`
		Nodes       []struct{ Endpoint string } `json:"nodes"`
	}
	if b, err := os.ReadFile(dest + ".manifest.json"); err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.Cluster != "prod" || m.Compression != "gzip" || m.Counts["keys"] != 3 || m.Counts["enclaves"] != 2 || len(m.Nodes) != 1 || m.Nodes[0].Endpoint != src.Host() {
		t.Errorf("manifest: %+v", m)
	}
	fresh := l.start()
	fh := l.sshHost("kms2", fresh)
	if _, err := l.run("kms_restore", fh, map[string]any{"src": dest}, false); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if r, err := l.run("kms_verify", fh, map[string]any{"manifest": dest + ".manifest.json", "exact": true}, false); err != nil || r.Failed || r.Data["canary"] != true {
		t.Errorf("verify the restored node: %+v, %v", r, err)
	}

	// The read-back check: the pair written passes; a snapshot that is not
	// what the manifest says, or a gzip stream cut short whose manifest
	// matches it, fails with a verification error.
	if err := kmsmodules.CheckWritten(dest); err != nil {
		t.Fatalf("check of the pair written: %v", err)
	}
	short := filepath.Join(t.TempDir(), "20261202_080001_kms.db.gzip")
	cut := b[:len(b)-10]
	if err := os.WriteFile(short, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	var mm map[string]any
	raw, _ := os.ReadFile(dest + ".manifest.json")
	if err := json.Unmarshal(raw, &mm); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cut)
	mm["snapshot"], mm["size"], mm["sha256"] = filepath.Base(short), len(cut), hex.EncodeToString(sum[:])
	raw, _ = json.Marshal(mm)
	if err := os.WriteFile(short+".manifest.json", raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kmsmodules.CheckWritten(short); !isVerification(err) || !strings.Contains(err.Error(), "decompress") {
		t.Errorf("a gzip stream cut short: %v; want a verification error", err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(dest, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kmsmodules.CheckWritten(dest); !isVerification(err) || !strings.Contains(err.Error(), "not the one its manifest describes") {
		t.Errorf("a changed snapshot: %v; want a verification error", err)
	}
}

// TestRestoreVerificationAndNoManifest: a node restored from a snapshot
// whose manifest lists an object the snapshot lacks fails the task with a
// verification error naming it (exit 7); a snapshot without a manifest
// restores with no_manifest: true onto a clean node only, registering what
// it then holds; CheckBackup reads a good pair and tells a snapshot without
// a manifest.
func TestRestoreVerificationAndNoManifest(t *testing.T) {
	l := newLab(t)
	src := l.start()
	l.populate(src)
	h := l.sshHost("kms1", src)
	dest := filepath.Join(t.TempDir(), "kms.db")
	if _, err := l.run("kms_backup", h, map[string]any{"dest": dest, "cluster": "kms"}, false); err != nil {
		t.Fatal(err)
	}
	info, err := kmsmodules.CheckBackup(dest)
	if err != nil || info.HSMFingerprint != l.hsmKey.Fingerprint() || info.Keys != 3 || info.Enclaves != 2 || info.Policies != 1 || info.Identities != 1 ||
		!info.Canary || info.Cluster != "kms" || info.Manifest != dest+".manifest.json" || len(info.Nodes) != 1 {
		t.Fatalf("CheckBackup: %+v, %v", info, err)
	}
	fp, err := kmsmodules.OperatorHSMFingerprint(context.Background(), kmsmodules.Options{Getenv: func(k string) string {
		return map[string]string{"MINIO_KMS_HSM_KEY": l.hsmKey.Text()}[k]
	}}, h.node)
	if err != nil || fp != l.hsmKey.Fingerprint() {
		t.Errorf("OperatorHSMFingerprint: %q, %v", fp, err)
	}

	// A manifest that lists a key the snapshot does not hold.
	b, err := os.ReadFile(dest + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	encl := m["objects"].(map[string]any)["enclaves"].([]any)
	for _, e := range encl {
		e := e.(map[string]any)
		if e["name"] == "tenant" {
			e["keys"] = append(e["keys"].([]any), map[string]any{"name": "ghost", "version": 0})
		}
	}
	b, _ = json.Marshal(m)
	ghost := filepath.Join(t.TempDir(), "ghost.json")
	if err := os.WriteFile(ghost, b, 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := l.start()
	r, err := l.run("kms_restore", l.sshHost("kms2", fresh), map[string]any{"src": dest, "manifest": ghost}, false)
	if !isVerification(err) || !r.Failed || !r.Changed || !strings.Contains(r.Msg, "key tenant/ghost") {
		t.Errorf("restore whose result lacks a listed key: %+v, %v; want a verification error naming tenant/ghost", r, err)
	}

	// Without a manifest: only onto a clean node.
	raw := filepath.Join(t.TempDir(), "vendor.db")
	if err := os.Rename(dest, raw); err != nil {
		t.Fatal(err)
	}
	if _, err := kmsmodules.CheckBackup(raw); !errors.Is(err, kmsmodules.ErrNoManifest) {
		t.Errorf("CheckBackup without a manifest: %v", err)
	}
	if _, err := l.run("kms_restore", l.sshHost("kms2", fresh), map[string]any{"src": raw, "no_manifest": true}, false); !isRefusal(err) || !strings.Contains(err.Error(), "without a manifest") {
		t.Errorf("no_manifest onto a node with state: %v; want a refusal", err)
	}
	fresh2 := l.start()
	fh := l.sshHost("kms3", fresh2)
	if r, err := l.run("kms_restore", fh, map[string]any{"src": raw, "no_manifest": true}, true); err != nil || !r.Changed {
		t.Errorf("no_manifest, check mode: %+v, %v", r, err)
	}
	if got := keyNames(t, l.client(fresh2)); len(got) != 0 {
		t.Errorf("check mode restored: %v", got)
	}
	r, err = l.run("kms_restore", fh, map[string]any{"src": raw, "no_manifest": true}, false)
	if err != nil || !r.Changed || r.Data["keys"] != 3 || r.Data["enclaves"] != 2 || !strings.Contains(r.Msg, "nothing could be checked before") {
		t.Errorf("no_manifest onto a clean node: %+v, %v", r, err)
	}
	if _, err := l.run("kms_restore", fh, map[string]any{"src": raw, "no_manifest": true, "manifest": ghost}, false); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Errorf("manifest and no_manifest: %v", err)
	}
}
