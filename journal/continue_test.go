package journal

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/tasks"
)

// TestPlanDoneAndContinue: a run records its plan and the phases it
// finished; killed with a torn last line, it is continued under the same
// ID: the resume is recorded, the new steps are numbered after the old
// ones, and Read gives the plan, every done phase, both parts' steps and
// the end.
func TestPlanDoneAndContinue(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, header(), nil)
	if err != nil {
		t.Fatal(err)
	}
	plan := Plan{Command: "recover node", Args: []string{"kms3"}, Group: "kms", Clusters: []string{"kms"}, Inventories: []string{"inv.yml"},
		Phases: []string{"kms3 fence", "kms3 wipe"}, Data: json.RawMessage(`{"via":"kms1"}`)}
	s1 := tasks.Step{Seq: 1, Task: "stop", Host: "kms3", Module: "service"}
	s2 := tasks.Step{Seq: 2, Task: "wipe", Host: "kms3", Module: "file"}
	if err := errors.Join(j.Plan(plan), j.Intent(s1), j.Result(s1, tasks.StatusChanged), j.Done("kms3 fence"), j.Intent(s2)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	// Killed while writing the next line.
	f, err := os.OpenFile(j.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"type":"result","time":"2026-12-02T08:30:01Z","st`)
	f.Close()

	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	c, err := Continue(dir, id, Resumed{Command: "resume " + id, User: "ops@bastion2", PID: 43, Start: at}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The engine of the resumed part numbers its steps from 1 again.
	if err := errors.Join(c.Intent(tasks.Step{Seq: 1, Task: "wipe", Host: "kms3", Module: "file"}),
		c.Result(tasks.Step{Seq: 1, Task: "wipe", Host: "kms3", Module: "file"}, tasks.StatusOK), c.Done("kms3 wipe"),
		c.End(End{ExitCode: 0, Outcome: "ok", Hosts: 3})); err != nil {
		t.Fatal(err)
	}
	run, err := Read(j.Path)
	if err != nil {
		t.Fatal(err)
	}
	if run.ID != id || run.Plan == nil || run.Plan.Command != "recover node" || string(run.Plan.Data) != `{"via":"kms1"}` || !run.Torn {
		t.Errorf("run = %+v, plan %+v", run, run.Plan)
	}
	if strings.Join(run.Done, ",") != "kms3 fence,kms3 wipe" || !run.IsDone("kms3 wipe") || run.IsDone("kms3 push") {
		t.Errorf("done = %v", run.Done)
	}
	if len(run.Resumes) != 1 || run.Resumes[0].User != "ops@bastion2" || !run.Resumes[0].Start.Equal(at) {
		t.Errorf("resumes = %+v", run.Resumes)
	}
	var seqs []int
	var status []string
	for _, s := range run.Steps {
		seqs, status = append(seqs, s.Seq), append(status, s.Status)
	}
	if len(seqs) != 3 || seqs[2] != 3 || status[1] != "" || status[2] != "ok" {
		t.Errorf("steps: seq %v status %q, want 1 2 3 with the cut-short wipe left without a result", seqs, status)
	}
	if run.End == nil || run.End.Outcome != "ok" {
		t.Errorf("end = %+v", run.End)
	}
	// A run that ended ok is not continued, and an unknown one is an error.
	if _, err := Continue(dir, id, Resumed{}, nil); err == nil || !strings.Contains(err.Error(), "the run ended ok") {
		t.Errorf("Continue of a run that ended ok: %v", err)
	}
	if _, err := Continue(dir, "20261202T083000Z-ffffffff", Resumed{}, nil); err == nil {
		t.Errorf("Continue of an unknown run succeeded")
	}
}

// TestPlanIsMasked: a secret in a plan (a host named after it, say) is
// masked, and the plan's data stays JSON.
func TestPlanIsMasked(t *testing.T) {
	dir := t.TempDir()
	red := redact.New()
	red.Add(sentinel)
	j, err := Create(dir, header(), red)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(map[string]string{"host": sentinel})
	if err := errors.Join(j.Plan(Plan{Command: "recover node", Args: []string{"kms3"}, Data: data}), j.Done("x "+sentinel)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	b, _ := os.ReadFile(j.Path)
	if strings.Contains(string(b), sentinel) || strings.Contains(string(b), "c2VjcmV0") {
		t.Errorf("journal holds the secret:\n%s", b)
	}
	run, err := Read(j.Path)
	if err != nil || run.Plan == nil || !json.Valid(run.Plan.Data) {
		t.Fatalf("Read: %+v, %v", run, err)
	}
}

// TestContinueAFailedRun: a run that ended failed is continued; until the
// resumed part ends, the run has no end.
func TestContinueAFailedRun(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, header(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.End(End{ExitCode: 3, Outcome: "unreachable"}); err != nil {
		t.Fatal(err)
	}
	c, err := Continue(dir, id, Resumed{Command: "resume"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if run, err := Read(j.Path); err != nil || run.End != nil || len(run.Resumes) != 1 {
		t.Fatalf("resumed, not ended: %+v, %v", run, err)
	}
	if err := c.End(End{ExitCode: 0, Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	if run, err := Read(j.Path); err != nil || run.End == nil || run.End.ExitCode != 0 {
		t.Fatalf("resumed and ended: %+v, %v", run, err)
	}
}
