//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cliTimeout bounds one kmsctl invocation; it is a hang guard, not a speed assertion.
const cliTimeout = 6 * time.Minute

// Exit codes of the kmsctl CLI contract.
const (
	exitOK          = 0
	exitUsage       = 1
	exitUnreachable = 3
)

// result is one kmsctl run.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return "kmsctl " + strings.Join(r.args, " ") + "\nexit " + strconv.Itoa(r.code) +
		"\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// kmsctlBin returns the path of bin/kmsctl built by `make build`.
func kmsctlBin(t testing.TB, l *Lab) string {
	t.Helper()
	bin := filepath.Join(l.Root, "bin", "kmsctl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the e2e suite runs the real binary %s: %v (run `make build` or `make e2e`)", bin, err)
	}
	return bin
}

// kmsctl runs the real kmsctl binary with a clean environment: HOME and the XDG dirs point at a
// temp dir (so neither ~/.ssh nor kmsctl's own state of the machine takes part) and no agent.
func kmsctl(t testing.TB, l *Lab, args ...string) result {
	t.Helper()
	return kmsctlRun(t, l, cliTimeout, "", args...)
}

// kmsctlWithin is kmsctl with another bound on the run than cliTimeout, for a run that
// rebuilds whole hosts (the bound keeps a hung run from hanging the test; it is no
// assertion on speed).
func kmsctlWithin(t testing.TB, l *Lab, timeout time.Duration, args ...string) result {
	t.Helper()
	return kmsctlRun(t, l, timeout, "", args...)
}

// kmsctlState is kmsctl with XDG_STATE_HOME at state ("" = the lab's home's): another
// bastion's kmsctl, as far as locks, journals and known hosts go.
func kmsctlState(t testing.TB, l *Lab, state string, args ...string) result {
	t.Helper()
	return kmsctlRun(t, l, cliTimeout, state, args...)
}

// kmsctlRun runs kmsctl bounded by timeout with XDG_STATE_HOME at state ("" = the lab's
// home's).
func kmsctlRun(t testing.TB, l *Lab, timeout time.Duration, state string, args ...string) result {
	t.Helper()
	home := filepath.Join(l.Dir, "home")
	if state == "" {
		state = filepath.Join(home, ".local", "state")
	}
	for _, d := range []string{home, filepath.Join(home, ".ssh")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, kmsctlBin(t, l), args...)
	cmd.Dir = l.Dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_STATE_HOME=" + state,
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		r.code = exit.ExitCode()
	default:
		t.Fatalf("run kmsctl %s: %v\n%s", strings.Join(args, " "), err, r)
	}
	t.Logf("%s", r)
	return r
}
