package main

import (
	"os"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

// readmeFlagRow returns the meaning cell of flag's row in the README's
// global flags table ("| `-l, --limit PATTERN` | restrict hosts: ... |"),
// and whether there is one.
func readmeFlagRow(t *testing.T, flag string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 2 || !strings.HasPrefix(strings.TrimSpace(cells[0]), "`") {
			continue
		}
		for _, w := range strings.FieldsFunc(cells[0], func(r rune) bool { return r == ' ' || r == ',' || r == '`' }) {
			if w == flag {
				return strings.TrimSpace(cells[1]), true
			}
		}
	}
	return "", false
}

// TestLimitHelpListsREADMEForms: --help of --limit lists every pattern
// form the README's flag table lists.
func TestLimitHelpListsREADMEForms(t *testing.T) {
	row, ok := readmeFlagRow(t, "--limit")
	if !ok {
		t.Fatal("the README's global flags table has no --limit row")
	}
	_, list, ok := strings.Cut(row, ":")
	if !ok {
		t.Fatalf("README --limit row %q: want 'restrict hosts: FORM, FORM...'", row)
	}
	te := testEnv(t)
	if code := te.run(t, "--help"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	var help string
	for _, line := range strings.Split(te.out.String(), "\n") {
		if strings.Contains(line, "--limit") {
			help = line
		}
	}
	forms := strings.Split(list, ",")
	if len(forms) < 7 {
		t.Fatalf("README --limit row lists %d forms: %q", len(forms), row)
	}
	for _, form := range forms {
		form = strings.Trim(strings.TrimSpace(form), "`")
		if !strings.Contains(help, form) {
			t.Errorf("--help of --limit lacks %q, which the README lists:\n%s", form, help)
		}
	}
}

// TestNoYesFlag: --yes is offered only by commands that ask for
// confirmation, and none does yet.
func TestNoYesFlag(t *testing.T) {
	for _, args := range [][]string{{"ping", "--yes", "127.0.0.1:1"}, {"play", "ping", "-y"}, {"--yes", "version"}} {
		te := testEnv(t)
		if code := te.run(t, args...); code != exit.Usage || !strings.Contains(te.errOut.String(), "unknown flag -") {
			t.Errorf("kmsctl %q: exit %d, stderr %q; want a usage error for an unknown flag", args, code, te.errOut)
		}
	}
	for _, args := range [][]string{{"--help"}, {"play", "--help"}, {"ping", "--help"}} {
		te := testEnv(t)
		te.run(t, args...)
		if strings.Contains(te.out.String(), "--yes") {
			t.Errorf("kmsctl %q offers --yes:\n%s", args, te.out)
		}
	}
	if row, ok := readmeFlagRow(t, "--yes"); ok {
		t.Errorf("the README still documents --yes: %q", row)
	}
}

// TestPlayAmbiguousName: `play ping` with a ping.yml in the current
// directory refuses (exit 1) and shows both explicit forms, which `playbooks
// ls` lists too; each form then runs its own playbook.
func TestPlayAmbiguousName(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("ping.yml", []byte("- hosts: nosuchgroup\n  tasks:\n    - ping:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	te := testEnv(t)
	if code := te.run(t, "play", "ping", "--syntax-check"); code != exit.Usage {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.Usage, te.out, te.errOut)
	}
	for _, want := range []string{"./ping.yml", "builtin:ping"} {
		if !strings.Contains(te.errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, te.errOut)
		}
	}
	for arg, want := range map[string]string{"./ping.yml": "playbook ./ping.yml:", "builtin:ping": "playbook builtin:ping.yml:"} {
		te := testEnv(t)
		if code := te.run(t, "play", arg, "--syntax-check"); code != 0 || !strings.HasPrefix(te.out.String(), want) {
			t.Errorf("play %s: exit %d, stdout %q, want %q", arg, code, te.out, want)
		}
	}
	te = testEnv(t)
	if code := te.run(t, "playbooks", "ls"); code != 0 || !strings.Contains(te.out.String(), "builtin:ping") {
		t.Errorf("playbooks ls: exit %d, lacks builtin:ping:\n%s", code, te.out)
	}
}
