package journal

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// writeJournal writes the journal of run id under jdir without fsync: a
// header, and an end when finished.
func writeJournal(t *testing.T, jdir, id string, finished bool) {
	t.Helper()
	h := header()
	h.ID = id
	recs := []record{{Type: TypeRun, Time: h.Start, Run: &h}}
	if finished {
		recs = append(recs, record{Type: TypeEnd, Time: h.Start, End: &End{Outcome: "ok"}})
	}
	var b strings.Builder
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(filepath.Join(jdir, id+".jsonl"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func journalIDs(t *testing.T, jdir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(jdir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(paths))
	for i, p := range paths {
		ids[i] = strings.TrimSuffix(filepath.Base(p), ".jsonl")
	}
	sort.Strings(ids)
	return ids
}

// TestPruneKeepsUnfinished: beyond the newest keep, the finished journals
// go; an unfinished one (killed, or still running) and one that cannot be
// read stay, whatever their age.
func TestPruneKeepsUnfinished(t *testing.T) {
	jdir := t.TempDir()
	ids := []string{
		"20261201T000000Z-01", // finished: removed
		"20261201T000001Z-02", // unfinished: kept
		"20261201T000002Z-03", // finished: removed
		"20261201T000003Z-04", // unreadable: kept
		"20261201T000004Z-05", // finished, among the newest 2: kept
		"20261201T000005Z-06", // unfinished, among the newest 2: kept
	}
	for i, id := range ids {
		writeJournal(t, jdir, id, i != 1 && i != 5)
	}
	if err := os.WriteFile(filepath.Join(jdir, ids[3]+".jsonl"), []byte("not json\nnot json either\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prune(jdir, 2); err != nil {
		t.Fatal(err)
	}
	want := []string{ids[1], ids[3], ids[4], ids[5]}
	if got := journalIDs(t, jdir); !reflect.DeepEqual(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
}

// TestCreatePrunes: Create keeps the newest Keep journals (its own among
// them) and every unfinished one.
func TestCreatePrunes(t *testing.T) {
	dir := t.TempDir()
	jdir := filepath.Join(dir, Subdir)
	if err := os.MkdirAll(jdir, 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := range Keep + 2 {
		id := start.Add(time.Duration(i)*time.Second).Format("20060102T150405Z") + fmt.Sprintf("-%04x", i)
		ids = append(ids, id)
		writeJournal(t, jdir, id, i != 0) // the oldest is unfinished
	}
	h := header()
	h.ID = "20261202T000000Z-ffff"
	j, err := Create(dir, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	got := journalIDs(t, jdir)
	// ids[1] and ids[2] (finished, oldest) are gone; ids[0] is unfinished.
	want := append([]string{ids[0]}, ids[3:]...)
	want = append(want, h.ID)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("left %d journals (first %v), want %d (first %v)", len(got), got[:3], len(want), want[:3])
	}
}
