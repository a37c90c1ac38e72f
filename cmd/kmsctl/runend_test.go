package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

// lastJSON returns stdout's last line decoded as a JSON object.
func lastJSON(t *testing.T, stdout string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("last line of stdout is not JSON: %v\n%s", err, stdout)
	}
	return m
}

// TestJSONRunEndOnErrors: with --output json, stdout ends with a run_end
// event carrying the exit code and the error, also for usage and
// validation errors that stop kmsctl before any run: a bad flag, a bad -e,
// a missing playbook, an inventory error, a bad argument.
func TestJSONRunEndOnErrors(t *testing.T) {
	badInv := writePlaybook(t, "all:\n  hosts:\n    kms1:\n      ansible_port: many\n")
	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"--bogus", "-o", "json", "version"}, "unknown flag --bogus; see 'kmsctl version --help'"},
		{[]string{"ping", "--output=json", "--bogus"}, "unknown flag --bogus"},
		{[]string{"nosuchcommand", "-o", "json"}, "unknown command"},
		{[]string{"ping", "-o", "json", "-e", "novalue", "h"}, "extra vars"},
		{[]string{"ping", "-o", "json", "--forks", "0", "h"}, "--forks 0"},
		{[]string{"play", "nosuchplaybook", "-o", "json"}, "nosuchplaybook"},
		{[]string{"play", "-o", "json"}, "want exactly one playbook"},
		{[]string{"play", "ping", "-o", "json", "-i", "/nonexistent/inventory.yml"}, "inventory"},
		{[]string{"play", "ping", "-o", "json", "-i", badInv}, "ansible_port"},
		{[]string{"inventory", "list", "-o", "json", "-i", badInv}, "ansible_port"},
		{[]string{"playbooks", "show", "nosuch", "-o", "json"}, "no such built-in playbook"},
	} {
		te := testEnv(t)
		code := te.run(t, c.args...)
		if code != exit.Usage {
			t.Errorf("kmsctl %q: exit %d, want %d", c.args, code, exit.Usage)
		}
		m := lastJSON(t, te.out.String())
		if m["event"] != "run_end" || m["exit_code"] != float64(code) || !strings.Contains(m["error"].(string), c.err) {
			t.Errorf("kmsctl %q: last line %v, want run_end with exit_code %d and an error with %q", c.args, m, code, c.err)
		}
		if strings.Count(te.out.String(), `"run_end"`) != 1 {
			t.Errorf("kmsctl %q: not exactly one run_end:\n%s", c.args, te.out)
		}
		if !strings.Contains(te.errOut.String(), c.err) {
			t.Errorf("kmsctl %q: stderr lacks %q: %s", c.args, c.err, te.errOut)
		}
	}
	// -o taken as the value of another flag is not --output.
	te := testEnv(t)
	te.run(t, "ping", "-e", "-o", "json")
	if strings.Contains(te.out.String(), "run_end") {
		t.Errorf("-e -o json: run_end written:\n%s", te.out)
	}
}

// TestJSONRunEndListingsAndRuns: a listing that succeeds prints its JSON
// document alone; play --syntax-check and --list-hosts print events and
// run_end; a run whose host failed ends with run_end holding the host's
// error and the run log.
func TestJSONRunEndListingsAndRuns(t *testing.T) {
	te := testEnv(t)
	if code := te.run(t, "version", "-o", "json"); code != 0 || strings.Contains(te.out.String(), "run_end") {
		t.Errorf("version -o json: exit %d:\n%s", code, te.out)
	}
	te = testEnv(t)
	if code := te.run(t, "play", "builtin:ping", "--syntax-check", "-o", "json"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	lines := strings.Split(strings.TrimSpace(te.out.String()), "\n")
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first["event"] != "syntax_check" || first["plays"] != float64(1) {
		t.Errorf("--syntax-check -o json: %q, %v", lines[0], err)
	}
	if m := lastJSON(t, te.out.String()); m["event"] != "run_end" || m["exit_code"] != float64(0) || m["error"] != nil {
		t.Errorf("--syntax-check -o json: last line %v", m)
	}
	l := newLab(t, "")
	te = testEnv(t)
	if code := te.run(t, "play", "builtin:ping", "--list-hosts", "-o", "json", "-i", l.inventory); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	lines = strings.Split(strings.TrimSpace(te.out.String()), "\n")
	var lh struct {
		Event string
		Hosts []string
	}
	if err := json.Unmarshal([]byte(lines[0]), &lh); err != nil || lh.Event != "list_hosts" || strings.Join(lh.Hosts, ",") != "kms1,kms2" {
		t.Errorf("--list-hosts -o json: %q, %v", lines[0], err)
	}
	if m := lastJSON(t, te.out.String()); m["event"] != "run_end" {
		t.Errorf("--list-hosts -o json: last line %v", m)
	}
	failing := writePlaybook(t, "- hosts: kms1\n  tasks:\n    - name: fails\n      command: \"false\"\n")
	te = testEnv(t)
	if code := te.run(t, "play", failing, "-o", "json", "-i", l.inventory, "--ssh-config", "none"); code != exit.HostFailed {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	m := lastJSON(t, te.out.String())
	if m["event"] != "run_end" || m["exit_code"] != float64(exit.HostFailed) || !strings.Contains(m["error"].(string), `host kms1 failed at task "fails"`) || m["run_log"] == nil {
		t.Errorf("failed run: last line %v", m)
	}
}
