package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a run.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testEnvT struct {
	env
	out, errOut *syncBuffer
	vars        map[string]string
}

// testEnv returns an environment with captured output, a private state
// directory and an environment of its own.
func testEnv(t *testing.T) *testEnvT {
	t.Helper()
	te := &testEnvT{out: &syncBuffer{}, errOut: &syncBuffer{}, vars: map[string]string{}}
	te.env = env{
		stdout:   te.out,
		stderr:   te.errOut,
		getenv:   func(k string) string { return te.vars[k] },
		stateDir: filepath.Join(t.TempDir(), "state"),
	}
	// run sets its own; this one is for tests that call commands directly.
	te.end = newRunEnd(te.out, false)
	te.intr = &interrupter{stderr: te.errOut}
	return te
}

// run runs kmsctl in-process and returns the exit code.
func (te *testEnvT) run(t *testing.T, args ...string) int {
	t.Helper()
	return run(context.Background(), te.env, append([]string{"kmsctl"}, args...))
}

func TestVersion(t *testing.T) {
	te := testEnv(t)
	if code := te.run(t, "version"); code != 0 {
		t.Fatalf("exit code %d, stderr %s", code, te.errOut)
	}
	out := te.out.String()
	for _, want := range []string{"kmsctl " + version, "commit " + commit, "go1."} {
		if !strings.Contains(out, want) {
			t.Errorf("version output %q lacks %q", out, want)
		}
	}
}

func TestJSONListings(t *testing.T) {
	te := testEnv(t)
	if code := te.run(t, "version", "-o", "json"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(te.out.String()), &v); err != nil || v["version"] != version || v["commit"] != commit || !strings.HasPrefix(v["go"], "go1.") {
		t.Errorf("version -o json: %q, %v", te.out, err)
	}
	te = testEnv(t)
	if code := te.run(t, "playbooks", "ls", "--output", "json"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var list []struct{ Name, Description string }
	if err := json.Unmarshal([]byte(te.out.String()), &list); err != nil || len(list) < 2 || list[0].Description == "" {
		t.Errorf("playbooks ls -o json: %q, %v", te.out, err)
	}
}

func TestHelp(t *testing.T) {
	for args, want := range map[string]string{
		"--help":                 "kmsctl - recover and operate",
		"play site.yml --help":   "kmsctl play - run a playbook",
		"ping h1 -h":             "kmsctl ping - connect to hosts",
		"inventory graph --help": "--vars",
		"":                       "COMMANDS:",
	} {
		te := testEnv(t)
		if code := te.run(t, strings.Fields(args)...); code != 0 {
			t.Errorf("kmsctl %s: exit %d: %s", args, code, te.errOut)
		}
		if !strings.Contains(te.out.String(), want) {
			t.Errorf("kmsctl %s: help lacks %q:\n%s", args, want, te.out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"nosuchcommand"},
		{"--bogus", "version"},
		{"play"},
		{"play", "a.yml", "b.yml"},
		{"playbooks", "show"},
		{"playbooks", "show", "nosuchplaybook"},
		{"playbooks", "nosuchsub"},
		{"ping", "--forks", "0", "h"},
		{"ping", "--output", "yaml", "h"},
		{"ping", "-e", "novalue", "h"},
		{"play", "nosuchplaybook"},
		{"inventory", "list", "-i", "/nonexistent/inventory.yml"},
	} {
		te := testEnv(t)
		if code := te.run(t, args...); code != exit.Usage {
			t.Errorf("kmsctl %q: exit code %d, want %d (stderr %q)", args, code, exit.Usage, te.errOut)
		}
		if te.errOut.String() == "" {
			t.Errorf("kmsctl %q: nothing on stderr", args)
		}
	}
}

func TestPlaybooksLsShow(t *testing.T) {
	te := testEnv(t)
	if code := te.run(t, "playbooks", "ls"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	if !strings.Contains(te.out.String(), "ping ") || !strings.Contains(te.out.String(), "facts ") {
		t.Errorf("playbooks ls: %q lacks ping and facts", te.out)
	}
	te = testEnv(t)
	if code := te.run(t, "playbooks", "show", "ping"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	if !strings.Contains(te.out.String(), "hosts: all") || !strings.Contains(te.out.String(), "ping:") {
		t.Errorf("playbooks show ping: %q", te.out)
	}
}

// buildBinary builds kmsctl into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "kmsctl")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test -X main.commit=abc1234", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinary runs the built binary: main alone maps errors to exit codes
// and handles signals.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)
	t.Run("exit codes", func(t *testing.T) { testBinaryExitCodes(t, bin) })
	t.Run("interrupt", func(t *testing.T) { testBinaryInterrupt(t, bin, false) })
	t.Run("interrupt twice", func(t *testing.T) { testBinaryInterrupt(t, bin, true) })
}

func testBinaryExitCodes(t *testing.T, bin string) {
	state := t.TempDir()
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "kmsctl v9.9.9-test\ncommit abc1234\n", ""},
		{[]string{"nosuchcommand"}, 1, "", "unknown command"},
		{[]string{"--bogus"}, 1, "", "unknown flag --bogus"},
		{[]string{"play", "ping", "--bogus"}, 1, "", "unknown flag --bogus; see 'kmsctl play --help'"},
		{[]string{"ping", "127.0.0.1:1", "--private-key", "/nonexistent"}, 3, "unreachable: [127.0.0.1:1]", "run log: "},
	}
	for _, c := range cases {
		cmd := exec.Command(bin, c.args...)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state, "HOME="+t.TempDir(), "SSH_AUTH_SOCK=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := exitCodeOf(t, err)
		if code != c.code {
			t.Errorf("kmsctl %q: exit code %d, want %d\nstdout %s\nstderr %s", c.args, code, c.code, &stdout, &stderr)
		}
		if !strings.Contains(stdout.String(), c.stdout) {
			t.Errorf("kmsctl %q: stdout %q lacks %q", c.args, &stdout, c.stdout)
		}
		if !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("kmsctl %q: stderr %q lacks %q", c.args, &stderr, c.stderr)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(state, "kmsctl", "runs", "*.log"))
	if len(logs) != 1 {
		t.Fatalf("run logs %q, want one (from ping)", logs)
	}
	fi, err := os.Stat(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("run log mode %v, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Dir(logs[0]))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("run log dir mode %v, want 0700", di.Mode().Perm())
	}
}

// testBinaryInterrupt sends SIGINT while a task runs: the run stops, the
// owed handler runs and the recap is printed (exit 130). With twice, the
// handler blocks too and a second SIGINT exits at once.
func testBinaryInterrupt(t *testing.T, bin string, twice bool) {
	started := make(chan string, 4)
	l := newLabExec(t, func(ctx context.Context, cmd string, _ io.Reader, _, _ io.Writer) (int, bool) {
		if !strings.HasPrefix(cmd, "sleep 30") {
			return 0, false
		}
		started <- cmd
		<-ctx.Done()
		return 137, true
	})
	handler := "touch {{ dir }}.restarted"
	if twice {
		handler = "sleep 30 # handler"
	}
	pb := writePlaybook(t, `- hosts: kms1
  tasks:
    - name: push config
      copy:
        content: "x\n"
        dest: "{{ dir }}.conf"
      notify: restart
    - name: long
      command: sleep 30
  handlers:
    - name: restart
      command: `+handler+"\n")
	cmd := exec.Command(bin, "play", pb, "-i", l.inventory, "--ssh-config", "none")
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir(), "SSH_AUTH_SOCK=")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if twice {
		<-started // the handler is running
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
	}
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exit.Interrupted {
		t.Fatalf("exit %v, want code %d\nstdout %s\nstderr %s", err, exit.Interrupted, &stdout, &stderr)
	}
	if twice {
		if !strings.Contains(stderr.String(), "exiting at once") || strings.Contains(stdout.String(), "PLAY RECAP") {
			t.Errorf("second interrupt did not exit at once:\nstdout %s\nstderr %s", &stdout, &stderr)
		}
		if want := `owed handlers skipped: "restart" on kms1 (cut off while running)`; !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &stderr)
		}
		return
	}
	// The cut task is reported once, as interrupted, not as failed.
	if !strings.Contains(stdout.String(), "interrupted: [kms1] long") || strings.Contains(stdout.String(), "failed: [kms1]") ||
		!strings.Contains(stdout.String(), "interrupted=1") || strings.Contains(stderr.String(), "host kms1 failed") {
		t.Errorf("the interrupted task is not reported once, as interrupted:\nstdout %s\nstderr %s", &stdout, &stderr)
	}
	if !strings.Contains(stdout.String(), "PLAY RECAP") || !strings.Contains(stderr.String(), "press Ctrl-C again") {
		t.Errorf("stdout %s\nstderr %s", &stdout, &stderr)
	}
	// The cut task says why it ended.
	if !strings.Contains(stdout.String(), "run command on kms1: interrupted (Ctrl-C or SIGTERM)") {
		t.Errorf("the interrupted task's result does not name the interruption:\n%s", &stdout)
	}
	if _, err := os.Stat(l.dirs["kms1"] + ".restarted"); err != nil {
		t.Errorf("the owed handler did not run: %v", err)
	}
}

// TestUsageErrorMasksSecrets: even an error printed before any run starts
// masks the secrets of the environment.
func TestUsageErrorMasksSecrets(t *testing.T) {
	te := testEnv(t)
	te.vars[envHSMKey] = "hsm:aes256:SENTINELhsmkeySENTINELhsmkey0123456789abcd="
	// inventory.ParseExtraVars quotes a badly typed known variable's value.
	if code := te.run(t, "ping", "-e", `{"kms_port": "`+te.vars[envHSMKey]+`"}`, "h"); code != exit.Usage {
		t.Fatalf("exit %d", code)
	}
	if s := te.errOut.String(); strings.Contains(s, "SENTINEL") || !strings.Contains(s, "[REDACTED]") {
		t.Errorf("stderr %q", s)
	}
}

// exitCodeOf is the exit code of a finished kmsctl process (0 for nil);
// an error other than a non-zero exit fails the test.
func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}
