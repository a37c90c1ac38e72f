package kmsmodules_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kmsmodules"
)

func TestBackupName(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 5, 7, 999, time.FixedZone("CET", 3600))
	if got, want := kmsmodules.BackupName(at), "20261202_080507_kms.db.gzip"; got != want {
		t.Errorf("BackupName = %q, want %q (UTC)", got, want)
	}
}

// TestReserveBackup: names reserved in one second are the vendor's name,
// then -2, -3: never one held by a reservation or by a pair already
// written; ListBackups orders them newest (highest number) first, and the
// newest good backup is the last one named. Release removes the hidden
// reservation file.
func TestReserveBackup(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 12, 2, 8, 30, 5, 0, time.UTC)
	first, release1, err := kmsmodules.ReserveBackup(dir, at)
	if err != nil || filepath.Base(first) != "20261202_083005_kms.db.gzip" {
		t.Fatalf("first reservation: %s, %v", first, err)
	}
	second, release2, err := kmsmodules.ReserveBackup(dir, at.Add(500*time.Millisecond))
	if err != nil || filepath.Base(second) != "20261202_083005-2_kms.db.gzip" {
		t.Fatalf("second reservation while the first is held: %s, %v", second, err)
	}
	writeNamed(t, dir, filepath.Base(first), at)
	writeNamed(t, dir, filepath.Base(second), at)
	for _, release := range []func() error{release1, release2} {
		if err := release(); err != nil {
			t.Fatal(err)
		}
	}
	// Released, but the first two names hold pairs.
	third, release3, err := kmsmodules.ReserveBackup(dir, at)
	if err != nil || filepath.Base(third) != "20261202_083005-3_kms.db.gzip" {
		t.Fatalf("third reservation: %s, %v", third, err)
	}
	if err := release3(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("%d entries, want the two pairs only: %v", len(entries), entries)
	}
	bs, err := kmsmodules.ListBackups(dir)
	if err != nil || len(bs) != 2 || bs[0].Snapshot != second || bs[0].Seq != 2 || bs[1].Snapshot != first || bs[1].Seq != 0 {
		t.Fatalf("ListBackups = %+v, %v; want %s then %s", bs, err, second, first)
	}
	if b, err := kmsmodules.NewestBackup(dir); err != nil || b.Snapshot != second {
		t.Errorf("NewestBackup = %v, %v; want %s", b, err, second)
	}
	corrupt(t, second)
	if b, err := kmsmodules.NewestBackup(dir); err != nil || b.Snapshot != first {
		t.Errorf("-2 corrupted: NewestBackup = %v, %v; want %s", b, err, first)
	}
}

// writePair writes a backup pair taken at t in dir, as kms_backup would:
// a snapshot and a manifest naming it with its size and sha256.
func writePair(t *testing.T, dir string, at time.Time) kmsmodules.Backup {
	t.Helper()
	return writeNamed(t, dir, kmsmodules.BackupName(at), at)
}

// writeNamed is writePair under the snapshot name name.
func writeNamed(t *testing.T, dir, name string, at time.Time) kmsmodules.Backup {
	t.Helper()
	snap := []byte("snapshot of " + name)
	sum := sha256.Sum256(snap)
	m := map[string]any{"format": 1, "created": at.UTC(), "endpoint": "127.0.0.1:7373", "node_id": 1, "version": "v",
		"snapshot": name, "size": len(snap), "sha256": hex.EncodeToString(sum[:]), "hsm_fingerprint": "sha256:00",
		"objects": map[string]any{"enclaves": []any{}}}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	b := kmsmodules.Backup{Snapshot: filepath.Join(dir, name), Manifest: filepath.Join(dir, name+kmsmodules.ManifestSuffix), Time: at.UTC().Truncate(time.Second)}
	if err := os.WriteFile(b.Snapshot, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.Manifest, js, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func corrupt(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNewestBackup: the newest backup is the newest pair whose snapshot
// checks out; a corrupted newest one makes the previous one the newest;
// files that are not kmsctl's pairs are not backups.
func TestNewestBackup(t *testing.T) {
	dir := t.TempDir()
	if _, err := kmsmodules.NewestBackup(dir); !errors.Is(err, kmsmodules.ErrNoBackup) {
		t.Fatalf("empty directory: %v, want ErrNoBackup", err)
	}
	t0 := time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)
	var pairs []kmsmodules.Backup
	for i := range 3 {
		pairs = append(pairs, writePair(t, dir, t0.Add(time.Duration(i)*time.Hour)))
	}
	// Not kmsctl's pairs: a later snapshot without a manifest (the
	// vendor's CLI), a manifest of another file, other names.
	later := kmsmodules.BackupName(t0.Add(10 * time.Hour))
	for name, text := range map[string]string{later: "vendor", "notes.txt": "x", "kms.db": "raw"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	other := kmsmodules.BackupName(t0.Add(11 * time.Hour))
	m, _ := os.ReadFile(pairs[0].Manifest)
	os.WriteFile(filepath.Join(dir, other), []byte("snapshot of "+filepath.Base(pairs[0].Snapshot)), 0o600)
	os.WriteFile(filepath.Join(dir, other+kmsmodules.ManifestSuffix), m, 0o600)

	list, err := kmsmodules.ListBackups(dir)
	if err != nil || !slices.Equal(list, []kmsmodules.Backup{pairs[2], pairs[1], pairs[0]}) {
		t.Fatalf("ListBackups = %v, %v; want the three pairs newest first", list, err)
	}
	if b, err := kmsmodules.NewestBackup(dir); err != nil || b != pairs[2] {
		t.Fatalf("NewestBackup = %v, %v; want %v", b, err, pairs[2])
	}
	corrupt(t, pairs[2].Snapshot)
	if b, err := kmsmodules.NewestBackup(dir); err != nil || b != pairs[1] {
		t.Fatalf("newest corrupted: NewestBackup = %v, %v; want the previous one %v", b, err, pairs[1])
	}
	// A snapshot cut short (same first bytes) does not check out either.
	snap, _ := os.ReadFile(pairs[1].Snapshot)
	os.WriteFile(pairs[1].Snapshot, snap[:len(snap)-1], 0o600)
	if b, err := kmsmodules.NewestBackup(dir); err != nil || b != pairs[0] {
		t.Fatalf("two newest bad: NewestBackup = %v, %v; want %v", b, err, pairs[0])
	}
	os.Remove(pairs[0].Snapshot)
	if _, err := kmsmodules.NewestBackup(dir); !errors.Is(err, kmsmodules.ErrNoBackup) {
		t.Fatalf("no good backup: %v, want ErrNoBackup", err)
	}
}

// TestPruneBackups: retention keeps the keep newest pairs, the newest good
// one even when newer ones are bad, and never touches other files.
func TestPruneBackups(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var pairs []kmsmodules.Backup
	for i := range 6 {
		pairs = append(pairs, writePair(t, dir, t0.Add(time.Duration(i)*time.Minute)))
	}
	vendor := filepath.Join(dir, kmsmodules.BackupName(t0.Add(-time.Hour)))
	if err := os.WriteFile(vendor, []byte("vendor"), 0o600); err != nil {
		t.Fatal(err)
	}
	if removed, err := kmsmodules.PruneBackups(dir, 0); err != nil || len(removed) != 0 {
		t.Fatalf("keep 0: %v, %v; want nothing removed", removed, err)
	}
	removed, err := kmsmodules.PruneBackups(dir, 3)
	if err != nil || !slices.Equal(removed, []string{pairs[2].Snapshot, pairs[1].Snapshot, pairs[0].Snapshot}) {
		t.Fatalf("keep 3: removed %v, %v", removed, err)
	}
	if list, _ := kmsmodules.ListBackups(dir); !slices.Equal(list, []kmsmodules.Backup{pairs[5], pairs[4], pairs[3]}) {
		t.Fatalf("keep 3 left %v", list)
	}
	for _, p := range pairs[:3] {
		if _, err := os.Stat(p.Manifest); err == nil {
			t.Errorf("%s left behind", p.Manifest)
		}
	}
	if b, err := os.ReadFile(vendor); err != nil || !bytes.Equal(b, []byte("vendor")) {
		t.Errorf("a snapshot without kmsctl's manifest was touched: %v", err)
	}

	// The two newest are bad: keep 2 keeps them and the newest good one.
	corrupt(t, pairs[5].Snapshot)
	corrupt(t, pairs[4].Snapshot)
	if removed, err := kmsmodules.PruneBackups(dir, 2); err != nil || len(removed) != 0 {
		t.Fatalf("keep 2 with the two newest bad: removed %v, %v; want the newest good one kept", removed, err)
	}
	if removed, err := kmsmodules.PruneBackups(dir, 1); err != nil || !slices.Equal(removed, []string{pairs[4].Snapshot}) {
		t.Fatalf("keep 1 with the two newest bad: removed %v, %v; want only the bad one between", removed, err)
	}
	if b, err := kmsmodules.NewestBackup(dir); err != nil || b != pairs[3] {
		t.Fatalf("after pruning: NewestBackup = %v, %v", b, err)
	}
}

func TestBackupInfo(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 12, 2, 8, 30, 5, 0, time.UTC)
	name := kmsmodules.BackupName(at)
	m := map[string]any{"format": 1, "created": at, "cluster": "kms-eu", "endpoint": "e:7373", "node_id": 1, "version": "v",
		"snapshot": name, "size": 1234, "sha256": "ab", "hsm_fingerprint": "sha256:3f9c",
		"counts":  map[string]any{"enclaves": 2, "keys": 3, "policies": 4, "identities": 5},
		"objects": map[string]any{"enclaves": []any{}},
		"canary":  map[string]any{"enclave": "default", "key": "kmsctl-canary", "version": 0, "ciphertext": "AA==", "plaintext": "AA=="}}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	b := kmsmodules.Backup{Snapshot: filepath.Join(dir, name), Manifest: filepath.Join(dir, name+kmsmodules.ManifestSuffix)}
	if err := os.WriteFile(b.Manifest, js, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := b.Info()
	if err != nil {
		t.Fatal(err)
	}
	want := kmsmodules.BackupInfo{Created: at, Cluster: "kms-eu", Endpoint: "e:7373", Version: "v", Size: 1234, Enclaves: 2, Keys: 3, Policies: 4, Identities: 5,
		Canary: true, HSMFingerprint: "sha256:3f9c"}
	if !got.Created.Equal(want.Created) {
		t.Errorf("Created = %v, want %v", got.Created, want.Created)
	}
	got.Created = want.Created
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Info = %+v, want %+v", got, want)
	}
	// Without counts (an older manifest), they are counted from the objects.
	b2 := writePair(t, dir, at.Add(time.Hour))
	got, err = b2.Info()
	if err != nil || got.Keys != 0 || got.Canary || got.Size == 0 {
		t.Errorf("Info of a pair without counts or canary = %+v, %v", got, err)
	}
	if _, err := (kmsmodules.Backup{Manifest: filepath.Join(dir, "none")}).Info(); err == nil {
		t.Error("Info of a missing manifest: no error")
	}
}

// TestReserveBackupAtOnce: reservations made at the same time for the same
// second each get a name of their own, the vendor's name and -2 .. -N.
func TestReserveBackupAtOnce(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 12, 2, 8, 30, 5, 0, time.UTC)
	const n = 8
	names := make([]string, n)
	releases := make([]func() error, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { names[i], releases[i], errs[i] = kmsmodules.ReserveBackup(dir, at) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("reservation %d: %v", i, errs[i])
		}
		seen[filepath.Base(names[i])] = true
	}
	want := []string{"20261202_083005_kms.db.gzip"}
	for i := 2; i <= n; i++ {
		want = append(want, fmt.Sprintf("20261202_083005-%d_kms.db.gzip", i))
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no reservation got %s; got %v", w, names)
		}
	}
	for _, release := range releases {
		if err := release(); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("released, %d entries left: %v", len(entries), entries)
	}
}
