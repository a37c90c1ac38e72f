package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/lock"
)

// TestBinaryEveryExitCode runs the built binary once for every exit code a
// command can produce today, and compares with the README's numbers written
// out as literals (not the exit package's constants, so that swapping two
// constants fails here too). A change that makes another code reachable
// adds its run here.
func TestBinaryEveryExitCode(t *testing.T) {
	bin := buildBinary(t)
	started := make(chan string, 8)
	l := newLabExec(t, func(ctx context.Context, cmd string, _ io.Reader, _, _ io.Writer) (int, bool) {
		if cmd != "sleep 30" {
			return 0, false
		}
		select {
		case started <- cmd:
		default:
		}
		<-ctx.Done()
		return 137, true
	})
	play := func(text string) string {
		return writePlaybook(t, text)
	}
	ok := play("- hosts: kms\n  tasks:\n    - command: \"true\"\n")
	failing := play("- hosts: kms\n  tasks:\n    - command: \"false\"\n")
	invalid := play("- hosts: kms\n  tasks:\n    - command: \"true\"\n      no_such_key: 1\n")
	sleeping := play("- hosts: kms1\n  tasks:\n    - command: sleep 30\n")
	// Paths the rule refuses that would be harmless even if it did not.
	dangerous := play("- hosts: kms\n  tasks:\n    - file: {path: /proc/kmsctl-test-none, state: absent}\n")
	// A path known only while the play runs (a fact) is refused on the
	// host; one templated from -e is refused before any host is touched.
	templated := play("- hosts: kms1\n  tasks:\n    - file: {path: \"{{ target }}\", state: absent}\n")
	fact := play("- hosts: kms1\n  tasks:\n    - set_fact: {target: /sys/kmsctl-test-none}\n    - file: {path: \"{{ target }}\", state: absent}\n")
	waiting := play("- hosts: kms1\n  tasks:\n    - wait_for: {path: /nonexistent/kmsctl-test, timeout: 0.2, sleep: 0.05}\n")
	// The node's env file holds another HSM key than the operator's file.
	keyDir := t.TempDir()
	envFile, operatorKey := filepath.Join(keyDir, "minkms.env"), filepath.Join(keyDir, "hsm.key")
	if err := os.WriteFile(envFile, []byte("MINIO_KMS_HSM_KEY="+hsm.New([32]byte{1}).Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(operatorKey, []byte(hsm.New([32]byte{2}).Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hsmCheck := play("- hosts: kms1\n  tasks:\n    - kms_hsm_check:\n")
	// A well-formed admin API key that no Key Manager knows.
	apiKey, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	apiKeyFile := filepath.Join(keyDir, "api.key")
	if err := os.WriteFile(apiKeyFile, []byte(apiKey.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := []string{"-i", l.inventory, "--ssh-config", "none"}
	// This process holds the cluster's lock in the state directory of the
	// run that wants it.
	remove := play("- hosts: kms\n  tasks:\n    - kms_remove_node: {id: 1}\n")
	lockedState := t.TempDir()
	held, err := lock.Acquire(context.Background(), locksDir(filepath.Join(lockedState, "kmsctl")), []string{"kms"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()

	cases := []struct {
		name      string
		args      []string
		interrupt bool   // send SIGINT once the sleep task runs
		state     string // XDG_STATE_HOME; "" = a new one
		code      int
		stdout    string
		stderr    string
	}{
		{"success", append([]string{"play", ok}, inv...), false, "", 0, "kms2 : ok=1", ""},
		{"invalid playbook", append([]string{"play", invalid}, inv...), false, "", 1, "", "no_such_key"},
		{"a host failed", append([]string{"play", failing}, inv...), false, "", 2, "failed: [kms1]", "run log: "},
		{"a host unreachable", []string{"ping", "127.0.0.1:1", "--ssh-config", "none"}, false, "", 3, "unreachable: [127.0.0.1:1]", "run log: "},
		{"refused while validating", append([]string{"play", dangerous}, inv...), false, "", 4, "", "refusing /proc/kmsctl-test-none"},
		{"refused on the host", append([]string{"play", fact}, inv...), false, "", 4, "PLAY RECAP", "refusing /sys/kmsctl-test-none"},
		{"refused before the hosts, templated", append([]string{"play", templated, "-e", "target=/sys/kmsctl-test-none"}, inv...), false, "", 4, "", "refusing /sys/kmsctl-test-none"},
		{"secret on the command line", append([]string{"play", ok, "-e", "kms_api_key=x"}, inv...), false, "", 4, "", "-e @FILE"},
		{"the cluster is locked", append([]string{"play", remove}, inv...), false, lockedState, 5, "", "cluster kms is locked by alice@bastion1 (pid 4242"},
		{"wait_for timed out", append([]string{"play", waiting}, inv...), false, "", 6, "PLAY RECAP", "timed out after 200ms waiting for path /nonexistent/kmsctl-test"},
		{"a verification failed", append([]string{"play", hsmCheck, "-e", "kms_env_file=" + envFile, "-e", "kms_hsm_key_file=" + operatorKey}, inv...), false, "", 7, "PLAY RECAP", "is not the operator's"},
		{"--timeout", append([]string{"play", sleeping, "--timeout", "300ms"}, inv...), false, "", 6, "PLAY RECAP", "--timeout 300ms reached"},
		{"interrupted", append([]string{"play", sleeping}, inv...), true, "", 130, "PLAY RECAP", "interrupted"},
		// Hosts that answer SSH but run no Key Manager: a degraded cluster.
		{"status: degraded", append([]string{"status", "--api-key-file", apiKeyFile}, inv...), false, "", 7, "DEGRADED: the Key Manager API of kms1", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for len(started) > 0 {
				<-started // left by an earlier run
			}
			cmd := exec.Command(bin, c.args...)
			cmd.Dir = t.TempDir()
			state := c.state
			if state == "" {
				state = t.TempDir()
			}
			cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state, "HOME="+t.TempDir(), "SSH_AUTH_SOCK=", "NO_COLOR=1")
			var stdout, stderr syncBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if c.interrupt {
				select {
				case <-started:
				case <-time.After(30 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("the sleep task never started\nstdout %s\nstderr %s", &stdout, &stderr)
				}
				if err := cmd.Process.Signal(os.Interrupt); err != nil {
					t.Fatal(err)
				}
			}
			err := cmd.Wait()
			code := exitCodeOf(t, err)
			if code != c.code {
				t.Errorf("kmsctl %q: exit code %d, want %d\nstdout %s\nstderr %s", c.args, code, c.code, &stdout, &stderr)
			}
			if !strings.Contains(stdout.String(), c.stdout) {
				t.Errorf("stdout lacks %q:\n%s", c.stdout, &stdout)
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, &stderr)
			}
		})
	}
}
