package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/journal"
	"github.com/kmsctl/kmsctl/lock"
)

// otherRun is a lock holder as another kmsctl process records itself.
var otherRun = lock.Holder{User: "alice@bastion1", PID: 4242, Run: "20261202T085100Z-1a2b3c4d",
	Command: "kmsctl recover node kms2", Since: time.Date(2026, 12, 2, 8, 51, 0, 0, time.UTC)}

// TestPlayTakesClusterLock: a play with kms_remove_node while another run
// holds the cluster's lock exits 5 naming the holder, before any host is
// touched (its first task, which would create a file, did not run; the
// node's ID is still there, since the next run removes it); --check takes
// no lock; --lock-wait succeeds when the holder lets go in time; `lock
// status` names the holder.
func TestPlayTakesClusterLock(t *testing.T) {
	l := newKMSLab(t)
	marks := t.TempDir()
	pb := writePlaybook(t, fmt.Sprintf(`- hosts: kms
  tasks:
    - command: touch %s/{{ inventory_hostname }}
    - kms_remove_node:
        id: %d
      when: inventory_hostname == 'kms1'
`, marks, l.deadID))
	te := testEnv(t)
	te.vars[envAPIKey] = l.admin.Secret()
	// again is a new run with the same state directory.
	again := func() *testEnvT {
		n := testEnv(t)
		n.stateDir, n.vars = te.stateDir, te.vars
		return n
	}
	held, err := lock.Acquire(context.Background(), locksDir(te.stateDir), []string{"kms"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()

	code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none")
	want := "cluster kms is locked by alice@bastion1 (pid 4242, run 20261202T085100Z-1a2b3c4d, `kmsctl recover node kms2`, since 2026-12-02 08:51 UTC); wait with --lock-wait DURATION, or see `kmsctl lock status`"
	if code != exit.Locked || !strings.Contains(te.errOut.String(), want) {
		t.Fatalf("play while the lock is held: exit %d, want %d and %q\n%s\n%s", code, exit.Locked, want, te.out, te.errOut)
	}
	if entries, err := os.ReadDir(marks); err != nil || len(entries) != 0 {
		t.Fatalf("a host was touched while the lock was held: %v %v", entries, err)
	}
	runs, err := journal.List(te.stateDir)
	if err != nil || len(runs) != 1 || len(runs[0].Steps) != 0 || runs[0].End == nil || runs[0].End.Outcome != "locked" {
		t.Fatalf("journal of the refused run: %+v, %v; want no step, outcome locked", runs, err)
	}

	// --check changes nothing and takes no lock.
	te = again()
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "--check"); code != 0 {
		t.Fatalf("--check while the lock is held: exit %d\n%s\n%s", code, te.out, te.errOut)
	}

	// lock status names the holder, in text and JSON.
	te = again()
	if code := te.run(t, "lock", "status"); code != 0 || !strings.Contains(te.out.String(), "cluster kms: locked by alice@bastion1 (pid 4242") {
		t.Fatalf("lock status: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	te = again()
	if code := te.run(t, "lock", "status", "-o", "json"); code != 0 {
		t.Fatalf("lock status -o json: exit %d\n%s", code, te.errOut)
	}
	var states []lock.State
	if err := json.Unmarshal([]byte(te.out.String()), &states); err != nil || len(states) != 1 || !states[0].Held || states[0].Holder.Run != otherRun.Run {
		t.Fatalf("lock status -o json: %s (%v)", te.out, err)
	}

	// --lock-wait: the holder lets go after a moment; the run goes on.
	go func() {
		time.Sleep(500 * time.Millisecond)
		held.Release()
	}()
	te = again()
	start := time.Now()
	code = te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "--lock-wait", "20s")
	if code != 0 || !strings.Contains(te.out.String(), "changed: [kms1]") {
		t.Fatalf("--lock-wait: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("the run went on after %v, before the holder let go", d)
	}
	for _, h := range []string{"kms1", "kms2"} {
		if _, err := os.Stat(filepath.Join(marks, h)); err != nil {
			t.Errorf("after the lock was free: %v", err)
		}
	}
	// The run let go of the lock at its end.
	te = again()
	if code := te.run(t, "lock", "status"); code != 0 || strings.TrimSpace(te.out.String()) != "cluster kms: free" {
		t.Fatalf("lock status after the run: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
}

// TestLockWaitRunsOut: a --lock-wait that ends before the holder lets go
// exits 5 and says how long it waited.
func TestLockWaitRunsOut(t *testing.T) {
	te := testEnv(t)
	inv := filepath.Join(t.TempDir(), "inventory.yml")
	if err := os.WriteFile(inv, []byte("kms:\n  hosts:\n    kms1:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n      kms_cluster: eu\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := writePlaybook(t, "- hosts: kms\n  tasks:\n    - kms_remove_node:\n        id: 1\n")
	held, err := lock.Acquire(context.Background(), locksDir(te.stateDir), []string{"eu"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	start := time.Now()
	code := te.run(t, "play", pb, "-i", inv, "--ssh-config", "none", "--lock-wait", "300ms")
	if code != exit.Locked || !strings.Contains(te.errOut.String(), "cluster eu is locked by alice@bastion1") || !strings.Contains(te.errOut.String(), "waited --lock-wait 300ms") {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.Locked, te.out, te.errOut)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("gave up after %v", d)
	}
}

func TestLockStatusNone(t *testing.T) {
	te := testEnv(t)
	if code := te.run(t, "lock", "status"); code != 0 || !strings.Contains(te.out.String(), "no cluster has been locked on this machine") {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	next := testEnv(t)
	next.stateDir = te.stateDir
	te = next
	if code := te.run(t, "lock", "status", "-o", "json"); code != 0 || strings.TrimSpace(te.out.String()) != "[]" {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
}

// TestStatusShowsLock: `kmsctl status` takes no lock, and says when a run
// holds the cluster's lock (text: a LOCKED line; JSON: locks).
func TestStatusShowsLock(t *testing.T) {
	l := newStatusLab(t, 3)
	te := testEnv(t)
	held, err := lock.Acquire(context.Background(), locksDir(te.stateDir), []string{"kms"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	args := []string{"status", "-i", l.inventory, "--ssh-config", "none"}
	code := te.run(t, args...)
	want := "LOCKED: cluster kms is locked by alice@bastion1 (pid 4242, run 20261202T085100Z-1a2b3c4d, `kmsctl recover node kms2`, since 2026-12-02 08:51 UTC): a change of its membership is under way on this machine."
	if code != 0 || !strings.Contains(te.out.String(), want) {
		t.Fatalf("status with the lock held: exit %d, want 0 and %q\n%s\n%s", code, want, te.out, te.errOut)
	}
	next := testEnv(t)
	next.stateDir = te.stateDir
	if code := next.run(t, append(args, "-o", "json")...); code != 0 {
		t.Fatalf("status -o json: exit %d\n%s", code, next.errOut)
	}
	var doc struct {
		Locks []lock.State `json:"locks"`
	}
	line := strings.SplitN(next.out.String(), "\n", 2)[0]
	if err := json.Unmarshal([]byte(line), &doc); err != nil || len(doc.Locks) != 1 || doc.Locks[0].Holder == nil || doc.Locks[0].Holder.Run != otherRun.Run {
		t.Fatalf("status -o json: locks %+v (%v)\n%s", doc.Locks, err, next.out)
	}
	// Free again: no LOCKED line, and "locks": [].
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	free := testEnv(t)
	free.stateDir = te.stateDir
	if code := free.run(t, args...); code != 0 || strings.Contains(free.out.String(), "LOCKED") {
		t.Fatalf("status with the lock free: exit %d\n%s", code, free.out)
	}
}

// TestBackupShowsLock: `kmsctl backup` takes no lock and succeeds while a
// run holds its cluster's lock; it stays quiet (cron), -v says so on
// stderr with status's LOCKED line, and the JSON event carries the holder
// in locks.
func TestBackupShowsLock(t *testing.T) {
	l := newStatusLab(t, 3)
	stateDir := t.TempDir()
	held, err := lock.Acquire(context.Background(), locksDir(stateDir), []string{"kms"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	at := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	backup := func(args ...string) (*testEnvT, int) {
		te := testEnv(t)
		te.stateDir = stateDir
		at = at.Add(time.Second) // one backup a second
		now := at
		te.now = func() time.Time { return now }
		return te, te.run(t, append([]string{"backup", "-i", l.inventory, "--ssh-config", "none"}, args...)...)
	}
	want := "LOCKED: cluster kms is locked by alice@bastion1 (pid 4242, run 20261202T085100Z-1a2b3c4d, `kmsctl recover node kms2`, since 2026-12-02 08:51 UTC): a change of its membership is under way on this machine."

	if te, code := backup(); code != 0 || te.out.String() != "" || te.errOut.String() != "" {
		t.Fatalf("backup with the lock held: exit %d, want 0 and no output\nstdout: %s\nstderr: %s", code, te.out, te.errOut)
	}
	if te, code := backup("-v"); code != 0 || !strings.Contains(te.errOut.String(), want) || !strings.Contains(te.out.String(), "backed up kms") {
		t.Fatalf("backup -v with the lock held: exit %d, want 0 and %q on stderr\nstdout: %s\nstderr: %s", code, want, te.out, te.errOut)
	}
	te, code := backup("-o", "json")
	var doc struct {
		Event string       `json:"event"`
		Locks []lock.State `json:"locks"`
	}
	line := strings.SplitN(te.out.String(), "\n", 2)[0]
	if err := json.Unmarshal([]byte(line), &doc); err != nil || code != 0 || doc.Event != "backup" || len(doc.Locks) != 1 ||
		doc.Locks[0].Cluster != "kms" || doc.Locks[0].Holder == nil || doc.Locks[0].Holder.Run != otherRun.Run || doc.Locks[0].Holder.User != otherRun.User {
		t.Fatalf("backup -o json with the lock held: exit %d, locks %+v (%v)\n%s\n%s", code, doc.Locks, err, te.out, te.errOut)
	}

	// Free again: -v says nothing of a lock, and "locks": [].
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	if te, code := backup("-v"); code != 0 || strings.Contains(te.errOut.String(), "LOCKED") {
		t.Fatalf("backup -v with the lock free: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	te, code = backup("-o", "json")
	if code != 0 || !strings.Contains(strings.SplitN(te.out.String(), "\n", 2)[0], `"locks":[]`) {
		t.Fatalf("backup -o json with the lock free: exit %d, want \"locks\":[]\n%s\n%s", code, te.out, te.errOut)
	}

	// Locks that cannot be read (the locks directory is a file): the
	// backup is written and reported, and the run fails (exit 2) saying so.
	stateDir = t.TempDir()
	if err := os.WriteFile(locksDir(stateDir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	te, code = backup()
	if code != exit.HostFailed || !strings.Contains(te.errOut.String(), "written, but look for held cluster locks") {
		t.Fatalf("backup with unreadable locks: exit %d, want %d\n%s\n%s", code, exit.HostFailed, te.out, te.errOut)
	}
	if entries, err := os.ReadDir(backupDir(te.env, "kms")); err != nil || len(entries) != 2 {
		t.Fatalf("backup with unreadable locks: %v, %v; want the snapshot and its manifest", entries, err)
	}
}

// TestLockWaitInterrupted: Ctrl-C while waiting for a lock exits 130.
func TestLockWaitInterrupted(t *testing.T) {
	te := testEnv(t)
	inv := filepath.Join(t.TempDir(), "inventory.yml")
	if err := os.WriteFile(inv, []byte("kms:\n  hosts:\n    kms1:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := writePlaybook(t, "- hosts: kms\n  tasks:\n    - kms_add_node:\n        endpoint: x:7373\n")
	held, err := lock.Acquire(context.Background(), locksDir(te.stateDir), []string{"kms"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	code := run(ctx, te.env, []string{"kmsctl", "play", pb, "-i", inv, "--ssh-config", "none", "--lock-wait", "1m"})
	if code != exit.Interrupted || !strings.Contains(te.errOut.String(), "interrupted while waiting for a cluster lock") {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.Interrupted, te.out, te.errOut)
	}
}
