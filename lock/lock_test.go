package lock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

func holder(run string) Holder {
	return Holder{User: "alice@bastion1", PID: 4242, Run: run, Command: "kmsctl play remove.yml", Since: time.Date(2026, 12, 2, 8, 51, 0, 0, time.UTC)}
}

func TestSecondHolderRefusedNamingTheFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	ctx := context.Background()
	a, err := Acquire(ctx, dir, []string{"kms"}, holder("run-a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// A second Acquire opens its own file: a separate flock, as another
	// process would.
	_, err = Acquire(ctx, dir, []string{"kms"}, holder("run-b"), 0)
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second Acquire: %v, want a HeldError", err)
	}
	if held.Cluster != "kms" || held.Holder == nil || held.Holder.Run != "run-a" {
		t.Fatalf("HeldError = %+v, want cluster kms held by run-a", held)
	}
	want := "cluster kms is locked by alice@bastion1 (pid 4242, run run-a, `kmsctl play remove.yml`, since 2026-12-02 08:51 UTC)"
	if err.Error() != want {
		t.Fatalf("message:\n got %s\nwant %s", err, want)
	}
	for _, name := range []string{dir, filepath.Join(dir, "kms.lock"), filepath.Join(dir, "kms.holder")} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(ctx, dir, []string{"kms"}, holder("run-b"), 0)
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
}

func TestWaitSucceedsWhenReleasedInTime(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a, err := Acquire(ctx, dir, []string{"kms"}, holder("run-a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		a.Release()
	}()
	start := time.Now()
	b, err := Acquire(ctx, dir, []string{"kms"}, holder("run-b"), 5*time.Second)
	if err != nil {
		t.Fatalf("Acquire with wait: %v", err)
	}
	defer b.Release()
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("took the lock after %v, before the holder released it", d)
	}
	// And a wait that ends before the release fails.
	start = time.Now()
	_, err = Acquire(ctx, dir, []string{"kms"}, holder("run-c"), 400*time.Millisecond)
	var held *HeldError
	if !errors.As(err, &held) || held.Holder.Run != "run-b" {
		t.Fatalf("Acquire after a short wait: %v, want held by run-b", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("gave up after %v, before --lock-wait", d)
	}
}

func TestSeveralClustersSortedAndAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Acquire(ctx, dir, []string{"west", "east", "west"}, holder("run-a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Clusters(); !reflect.DeepEqual(got, []string{"east", "west"}) {
		t.Fatalf("Clusters() = %v, want [east west]", got)
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	// With "west" held elsewhere, locking east and west takes neither.
	w, err := Acquire(ctx, dir, []string{"west"}, holder("run-w"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	_, err = Acquire(ctx, dir, []string{"west", "east"}, holder("run-b"), 0)
	var held *HeldError
	if !errors.As(err, &held) || held.Cluster != "west" {
		t.Fatalf("Acquire(west, east): %v, want west held", err)
	}
	st, err := Status(dir, "east")
	if err != nil {
		t.Fatal(err)
	}
	if st.Held {
		t.Fatalf("east is still held after a failed Acquire: %+v", st)
	}
}

func TestSortedOrderAvoidsDeadlock(t *testing.T) {
	// Two runs locking the same clusters in opposite orders, both waiting:
	// in sorted order one of them gets both and the other waits for it.
	dir := t.TempDir()
	ctx := context.Background()
	done := make(chan error, 2)
	for _, order := range [][]string{{"a", "b"}, {"b", "a"}} {
		go func() {
			for range 20 {
				s, err := Acquire(ctx, dir, order, holder("run"), 5*time.Second)
				if err != nil {
					done <- err
					return
				}
				if err := s.Release(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestHolderRecordRoundTripAndStatus(t *testing.T) {
	dir := t.TempDir()
	h := holder("20261202T085100Z-1a2b3c4d")
	s, err := Acquire(context.Background(), dir, []string{"kms", "dr"}, h, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetStep("remove kms2 (remove.yml:4:7)"); err != nil {
		t.Fatal(err)
	}
	h.Step = "remove kms2 (remove.yml:4:7)"
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []State{{Cluster: "dr", Held: true, Holder: &h}, {Cluster: "kms", Held: true, Holder: &h}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List:\n got %+v\nwant %+v", got, want)
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	got, err = List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want = []State{{Cluster: "dr"}, {Cluster: "kms"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List after release:\n got %+v\nwant %+v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "kms.holder")); !os.IsNotExist(err) {
		t.Fatalf("holder record left after release: %v", err)
	}
	if got, err := List(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Fatalf("List(missing dir) = %v, %v", got, err)
	}
}

func TestStaleRecordDoesNotBlock(t *testing.T) {
	// A run killed with its record written: the kernel dropped its flock,
	// the record stays.
	dir := t.TempDir()
	if err := writeHolder(filepath.Join(dir, "kms.holder"), holder("dead-run")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kms.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := Status(dir, "kms")
	if err != nil || st.Held || st.Holder != nil {
		t.Fatalf("Status with a stale record = %+v, %v; want free", st, err)
	}
	s, err := Acquire(context.Background(), dir, []string{"kms"}, holder("new-run"), 0)
	if err != nil {
		t.Fatalf("Acquire over a stale record: %v", err)
	}
	defer s.Release()
	st, err = Status(dir, "kms")
	if err != nil || !st.Held || st.Holder == nil || st.Holder.Run != "new-run" {
		t.Fatalf("Status = %+v, %v; want held by new-run", st, err)
	}
}

func TestHeldWithoutRecord(t *testing.T) {
	// The holder has the flock but has not written its record yet.
	dir := t.TempDir()
	fl := flock.New(filepath.Join(dir, "kms.lock"))
	if ok, err := fl.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock: %v %v", ok, err)
	}
	defer fl.Unlock()
	_, err := Acquire(context.Background(), dir, []string{"kms"}, holder("run-b"), 0)
	var held *HeldError
	if !errors.As(err, &held) || held.Holder != nil || !strings.Contains(err.Error(), "not written yet") {
		t.Fatalf("Acquire: %v, want held with no record", err)
	}
	st, err := Status(dir, "kms")
	if err != nil || !st.Held || st.Holder != nil {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

func TestBadClusterName(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", "../x", "a/b", ".hidden"} {
		if _, err := Acquire(context.Background(), dir, []string{name}, holder("r"), 0); err == nil || !strings.Contains(err.Error(), "cluster name") {
			t.Errorf("Acquire(%q): %v, want a bad-name error", name, err)
		}
	}
}

func TestCancelledWait(t *testing.T) {
	dir := t.TempDir()
	a, err := Acquire(context.Background(), dir, []string{"kms"}, holder("run-a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = Acquire(ctx, dir, []string{"kms"}, holder("run-b"), time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire cancelled while waiting: %v", err)
	}
}
