package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/tasks"
)

const (
	id       = "20261202T083000Z-0a1b2c3d"
	sentinel = "S3NT1NEL-hsm:aes256:c2VjcmV0LXNlY3JldC1zZWNyZXQ="
)

func header() Header {
	return Header{ID: id, Command: "play recover", User: "ops@bastion", PID: 42, Start: time.Date(2026, 12, 2, 8, 30, 0, 0, time.UTC)}
}

func TestRoundTripAppendOnlyAndPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	j, err := Create(dir, header(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s1 := tasks.Step{Seq: 1, Play: "p", Task: "stop", Pos: "pb.yml:3:5", Host: "kms1", Module: "service"}
	s2 := tasks.Step{Seq: 2, Play: "p", Task: "wipe", Host: "kms2", DelegateTo: "kms1", Module: "file", Item: 2}
	var sizes []int64
	size := func() {
		fi, err := os.Stat(j.Path)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	}
	size()
	for _, f := range []func() error{
		func() error { return j.Intent(s1) },
		func() error { return j.Intent(s2) },
		func() error { return j.Result(s1, tasks.StatusChanged) },
		func() error { return j.Result(s2, tasks.StatusFailed) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
		size()
	}
	before, _ := os.ReadFile(j.Path)
	if err := j.End(End{ExitCode: 2, Outcome: "failed", Hosts: 2}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(j.Path)
	if !strings.HasPrefix(string(after), string(before)) {
		t.Errorf("End rewrote the journal instead of appending")
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] <= sizes[i-1] {
			t.Errorf("sizes %v: every record must be on disk when its call returns", sizes)
		}
	}
	if err := j.Intent(s1); err == nil {
		t.Errorf("Intent after End succeeded; want an error (the step is refused)")
	}
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {filepath.Join(dir, Subdir), 0o700}, {j.Path, 0o600}} {
		fi, err := os.Stat(p.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != p.mode {
			t.Errorf("%s: mode %o, want %o", p.path, fi.Mode().Perm(), p.mode)
		}
	}
	run, err := Read(j.Path)
	if err != nil {
		t.Fatal(err)
	}
	if run.Header != header() || run.Torn || run.End == nil || *run.End != (End{ExitCode: 2, Outcome: "failed", Hosts: 2}) {
		t.Errorf("run = %+v, end %+v", run, run.End)
	}
	if len(run.Steps) != 2 || run.Steps[0].Step != s1 || run.Steps[0].Status != "changed" || run.Steps[1].Step != s2 || run.Steps[1].Status != "failed" {
		t.Fatalf("steps = %+v", run.Steps)
	}
	if run.Steps[0].Started.IsZero() || run.Steps[0].Ended.Before(run.Steps[0].Started) {
		t.Errorf("step times = %+v", run.Steps[0])
	}
	runs, err := List(dir)
	if err != nil || len(runs) != 1 || runs[0].ID != id {
		t.Errorf("List = %+v, %v", runs, err)
	}
}

func TestCreateRefusesAnExistingJournal(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, header(), nil)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if _, err := Create(dir, header(), nil); err == nil {
		t.Errorf("Create over an existing journal succeeded")
	}
	if _, err := Create(dir, Header{ID: "../escape"}, nil); err == nil {
		t.Errorf("Create with a path for an ID succeeded")
	}
}

func TestTornTailIsIgnored(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, header(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s1 := tasks.Step{Seq: 1, Task: "stop", Host: "kms1", Module: "service"}
	if err := j.Intent(s1); err != nil {
		t.Fatal(err)
	}
	j.Close()
	whole, _ := os.ReadFile(j.Path)
	for name, tail := range map[string]string{
		"cut short":  `{"type":"result","time":"2026-12-02T08:30:01Z","step":{"seq":1,`,
		"zeros":      "\x00\x00\x00\x00\n",
		"no newline": `{"type":"result","time":"2026-12-02T08:30:01Z","step":{"seq":1},"status":"ok"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(j.Path, append(append([]byte{}, whole...), tail...), 0o600); err != nil {
				t.Fatal(err)
			}
			run, err := Read(j.Path)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !run.Torn || len(run.Steps) != 1 || run.Steps[0].Status != "" || run.End != nil {
				t.Errorf("run = %+v, want torn, the intent without a result", run)
			}
		})
	}
	// A bad line before the last is not a torn tail.
	bad := append(append([]byte{}, whole...), "garbage\n"...)
	bad = append(bad, whole[strings.IndexByte(string(whole), '\n')+1:]...)
	if err := os.WriteFile(j.Path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(j.Path); err == nil || !strings.Contains(err.Error(), ":3: bad journal line") {
		t.Errorf("Read of a corrupt middle line: %v, want an error naming line 3", err)
	}
}

func TestNoSecretInTheJournal(t *testing.T) {
	dir := t.TempDir()
	red := redact.New()
	red.Add(sentinel)
	h := header()
	h.Command = "play x -e key=" + sentinel
	j, err := Create(dir, h, red)
	if err != nil {
		t.Fatal(err)
	}
	s := tasks.Step{Seq: 1, Play: "p " + sentinel, Task: "install " + sentinel, Host: "kms1", Module: "copy"}
	if err := errors.Join(j.Intent(s), j.Result(s, tasks.StatusChanged), j.End(End{Outcome: "ok " + sentinel})); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(j.Path)
	if strings.Contains(string(b), sentinel) || strings.Contains(string(b), "c2VjcmV0") || !strings.Contains(string(b), "install [REDACTED]") {
		t.Errorf("journal holds the secret or lost the masked name:\n%s", b)
	}
}

func TestConcurrentAppendsStayWholeLines(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, header(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 1; i <= 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := tasks.Step{Seq: i, Task: strings.Repeat("x", 5000), Host: "h", Module: "m"}
			if err := errors.Join(j.Intent(s), j.Result(s, tasks.StatusOK)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	j.Close()
	run, err := Read(j.Path)
	if err != nil || run.Torn || len(run.Steps) != 20 {
		t.Fatalf("Read = %d steps, torn %v, %v", len(run.Steps), run.Torn, err)
	}
	for _, s := range run.Steps {
		if s.Status != "ok" {
			t.Errorf("step %d: status %q", s.Seq, s.Status)
		}
	}
}
