package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/journal"
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
