package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/journal"
	"github.com/kmsctl/kmsctl/tasks"
)

// journals returns the contents of every journal of te.
func journals(t *testing.T, te *testEnvT) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(te.stateDir, journal.Subdir, "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no journal in %s", te.stateDir)
	}
	var b strings.Builder
	for _, f := range files {
		b.WriteString(mustRead(t, f))
	}
	return b.String()
}

// onlyRun returns the one run te's state directory holds.
func onlyRun(t *testing.T, te *testEnvT) *journal.Run {
	t.Helper()
	runs, err := journal.List(te.stateDir)
	if err != nil || len(runs) != 1 {
		t.Fatalf("journals: %d, %v; want 1", len(runs), err)
	}
	return runs[0]
}

// oneRun returns the one run of te's state directory, failing unless it
// holds one run log and one journal, of the same run ID: a command's
// preflight is part of its run, not a run of its own.
func oneRun(t *testing.T, te *testEnvT) *journal.Run {
	t.Helper()
	logs, err := os.ReadDir(filepath.Join(te.stateDir, "runs"))
	r := onlyRun(t, te)
	if err != nil || len(logs) != 1 || logs[0].Name() != r.ID+".log" {
		var names []string
		for _, l := range logs {
			names = append(names, l.Name())
		}
		t.Fatalf("run logs: %v (%v), want one: %s.log", names, err, r.ID)
	}
	return r
}

// stepList describes a run's steps as "host task module status", sorted.
func stepList(r *journal.Run) []string {
	var out []string
	for _, s := range r.Steps {
		out = append(out, fmt.Sprintf("%s %s %s %s", s.Host, s.Task, s.Module, s.Status))
	}
	slices.Sort(out)
	return out
}

const journalPlaybook = `- name: site
  hosts: kms
  gather_facts: false
  vars:
    kms_api_key: "` + sentinel + `"
  tasks:
    - name: make dir
      command: mkdir -p {{ dir }}
      args:
        creates: "{{ dir }}"
    - name: look
      stat: {path: "{{ dir }}"}
    - name: push {{ kms_api_key }}
      copy:
        content: "{{ kms_api_key }}\n"
        dest: "{{ dir }}/key"
      notify: restart
    - debug: {msg: "{{ kms_api_key }}"}
    - name: fail on kms2
      command: "false"
      when: inventory_hostname == "kms2"
  handlers:
    - name: restart
      command: touch {{ dir }}/restarted
`

// A play's run leaves a journal: its header, an intent and a result for
// every step that may change something (none for read-only modules or
// in --check), how it ended, and no secret.
func TestPlayLeavesAJournal(t *testing.T) {
	l := newLab(t, "")
	pb := writePlaybook(t, journalPlaybook)

	te := testEnv(t)
	te.vars[envAPIKey] = sentinel
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "--check"); code != 0 {
		t.Fatalf("--check: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	r := onlyRun(t, te)
	if len(r.Steps) != 0 || r.End == nil || r.End.Outcome != "ok" || r.End.ExitCode != 0 || r.End.Hosts != 2 {
		t.Errorf("--check journal: steps %v, end %+v; want no step", stepList(r), r.End)
	}

	te = testEnv(t)
	te.vars[envAPIKey] = sentinel
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none"); code != 2 {
		t.Fatalf("exit %d, want 2\n%s\n%s", code, te.out, te.errOut)
	}
	r = onlyRun(t, te)
	want := []string{
		"kms1 [REDACTED] copy changed",
		"kms1 make dir command changed",
		"kms1 restart command changed",
		"kms2 [REDACTED] copy changed",
		"kms2 fail on kms2 command failed",
		"kms2 make dir command changed",
		"kms2 restart command changed",
	}
	if got := stepList(r); !slices.Equal(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.HasPrefix(r.Command, "play ") || !strings.HasSuffix(r.Command, "site.yml") || r.PID != os.Getpid() || !strings.Contains(r.User, "@") {
		t.Errorf("header = %+v", r.Header)
	}
	if r.End == nil || *r.End != (journal.End{ExitCode: 2, Outcome: "failed", Hosts: 2}) || r.Torn {
		t.Errorf("end = %+v, torn %v", r.End, r.Torn)
	}
	if !strings.Contains(runLogs(t, te), r.ID) {
		t.Errorf("the run log does not name the run's ID %s", r.ID)
	}
	checkNoSentinel(t, te)
	if j := journals(t, te); strings.Contains(j, "SENTINEL") {
		t.Errorf("the journal holds the secret:\n%s", j)
	}
}

func TestRunsLsAndShow(t *testing.T) {
	l := newLab(t, "")
	pb := writePlaybook(t, journalPlaybook)
	te := testEnv(t)
	if code := te.run(t, "runs", "ls"); code != 0 || !strings.Contains(te.out.String(), "no runs recorded yet") {
		t.Fatalf("runs ls before any run: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none"); code != 2 {
		t.Fatalf("play: exit %d\n%s", code, te.errOut)
	}
	done := onlyRun(t, te)
	// A run killed in the middle of a step: an intent without a result,
	// no end.
	cut, err := journal.Create(te.stateDir, journal.Header{ID: "20991231T235959Z-00000001", Command: "play cut.yml", User: "ops@bastion", PID: 7, Start: done.Start.Add(time.Hour)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cut.Intent(tasks.Step{Seq: 1, Play: "p", Task: "wipe", Host: "kms2", Module: "file", Pos: "cut.yml:4:7"}); err != nil {
		t.Fatal(err)
	}
	cut.Close()
	// again returns a new environment on the same state directory.
	again := func() *testEnvT {
		n := testEnv(t)
		n.stateDir = te.stateDir
		return n
	}

	te = again()
	if code := te.run(t, "runs", "ls"); code != 0 {
		t.Fatalf("runs ls: exit %d\n%s", code, te.errOut)
	}
	lines := strings.Split(strings.TrimSpace(te.out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("runs ls:\n%s", te.out)
	}
	for i, want := range [][]string{
		{done.ID, "play " + pb, "failed", " 2 ", " 7"},
		{"20991231T235959Z-00000001", "play cut.yml", "unfinished", "1 (1 cut short)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("runs ls line %d lacks %q:\n%s", i+1, w, te.out)
			}
		}
	}

	te = again()
	if code := te.run(t, "runs", "ls", "-o", "json"); code != 0 {
		t.Fatalf("runs ls -o json: exit %d\n%s", code, te.errOut)
	}
	var list []runSummary
	if err := json.Unmarshal([]byte(te.out.String()), &list); err != nil || len(list) != 2 {
		t.Fatalf("runs ls -o json: %v\n%s", err, te.out)
	}
	if s := list[0]; s.ID != done.ID || s.Outcome != "failed" || s.ExitCode == nil || *s.ExitCode != 2 || s.Hosts == nil || *s.Hosts != 2 || s.Steps != 7 || s.Open != 0 {
		t.Errorf("first run: %+v", s)
	}
	if s := list[1]; s.Outcome != "unfinished" || s.ExitCode != nil || s.Open != 1 {
		t.Errorf("cut run: %+v", s)
	}

	te = again()
	if code := te.run(t, "runs", "show", done.ID); code != 0 {
		t.Fatalf("runs show: exit %d\n%s", code, te.errOut)
	}
	out := te.out.String()
	for _, want := range []string{"run " + done.ID + ": play " + pb, "ended: failed (exit 2), 2 hosts", "fail on kms2", "failed", "make dir", "changed", "command", "site.yml:"} {
		if !strings.Contains(out, want) {
			t.Errorf("runs show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SENTINEL") {
		t.Errorf("runs show shows the secret:\n%s", out)
	}

	te = again()
	if code := te.run(t, "runs", "show", "20991231T235959Z-00000001"); code != 0 {
		t.Fatalf("runs show: exit %d\n%s", code, te.errOut)
	}
	if out := te.out.String(); !strings.Contains(out, "unfinished") || !strings.Contains(out, "no result (cut short") || !strings.Contains(out, "1 step(s) have no result") {
		t.Errorf("runs show of a cut run:\n%s", out)
	}

	te = again()
	if code := te.run(t, "runs", "show", done.ID, "-o", "json"); code != 0 {
		t.Fatalf("runs show -o json: exit %d\n%s", code, te.errOut)
	}
	var got journal.Run
	if err := json.Unmarshal([]byte(te.out.String()), &got); err != nil || got.ID != done.ID || len(got.Steps) != 7 || got.End == nil || got.End.ExitCode != 2 {
		t.Errorf("runs show -o json: %v\n%s", err, te.out)
	}

	for _, id := range []string{"20991231T235959Z-0000dead", "../../etc/passwd"} {
		te = again()
		if code := te.run(t, "runs", "show", id); code != 1 || !strings.Contains(te.errOut.String(), "runs ls") {
			t.Errorf("runs show %s: exit %d, want 1 pointing to runs ls\n%s", id, code, te.errOut)
		}
	}
}
