//go:build e2e

package e2e

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"
)

// TestResumeMinkms: faults in the middle of `kmsctl recover node kms2` on the shared lab, each
// followed by `kmsctl resume RUN-ID` when the run did not end ok. kmsctl is SIGKILLed when each
// phase (fence, wipe, remove, push, start, add, wait, prove) begins, as its JSON output shows;
// kms2's network is cut during the push (`docker network disconnect`) and restored; sshd is
// restarted on kms2 during the push. Every time the cluster ends healthy, proven through the
// API (every node lists the three members, kms2 lists every key made before the failure and
// decrypts a ciphertext made before it), the journal of a killed run has no end and `status`
// names the resume command, no kmsctl temp file is left next to any target on any host, and no
// secret is in any output.
func TestResumeMinkms(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("TestResumeMinkms wall time %s", time.Since(start).Round(time.Millisecond)) }()
	c := sharedCluster(t)
	r := newRecoverLab(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	before := c.seed(ctx, t, "resume", 2, "the failure")
	// healthy proves the cluster whole through the API, and that no upload left its temp file.
	healthy := func(t *testing.T) {
		t.Helper()
		r.checkCluster(ctx, t, before, []string{"kms2"})
		r.noTempFiles(t)
	}
	resume := func(t *testing.T, id string) {
		t.Helper()
		res := kmsctl(t, c.l, "resume", id, "--yes")
		if res.code != exitOK || !strings.Contains(res.stdout, "RECOVERED kms2") {
			t.Fatalf("resume %s: want exit 0 and kms2 recovered\n%s", id, res)
		}
		r.leaks(t, "resume's output", res.stdout+res.stderr)
	}

	for _, tc := range []struct{ phase, task string }{
		{"fence", "stop and disable the service"},
		{"wipe", "wipe the storage path"},
		{"remove", "one CLUSTER:EDIT through a healthy member"},
		{"push", "binary"},
		{"start", "start the service, clean"},
		{"add", "CLUSTER:ADDNODE through a healthy member"},
		{"wait", "every member lists it and has caught up"},
		{"prove", "write and read back through the recovered node"},
	} {
		t.Run("SIGKILL at "+tc.phase, func(t *testing.T) {
			cs := time.Now()
			r.loseDisk(t, "kms2")
			r.waitDown(ctx, t, "kms2")
			p := startKmsctl(t, c.l, "-i", r.inventory, "recover", "node", "kms2", "--yes", "--output", "json")
			id := p.waitTask(t, "kms2: ", tc.task)
			p.signal(t, syscall.SIGKILL)
			if res := p.wait(t); res.code != -1 {
				t.Fatalf("kmsctl was not killed: %s", res)
			}
			shown := kmsctl(t, c.l, "runs", "show", id)
			if !strings.Contains(shown.stdout, "unfinished: the journal has no end") || !strings.Contains(shown.stdout, "to finish it: kmsctl resume "+id) {
				t.Errorf("runs show %s after the kill:\n%s", id, shown)
			}
			st := kmsctl(t, c.l, "-i", r.inventory, "status")
			if !strings.Contains(st.stderr, "finish it with `kmsctl resume "+id+"`") {
				t.Errorf("status does not name the resume of the killed run %s:\n%s", id, st)
			}
			resume(t, id)
			healthy(t)
			t.Logf("SIGKILL at %s, resumed: %s", tc.phase, time.Since(cs).Round(time.Millisecond))
		})
		if t.Failed() {
			return
		}
	}

	// A fault during the push that kmsctl may ride out or stop on: then it says how to
	// finish, and the resume does.
	fault := func(t *testing.T, what string, cut, heal func(t *testing.T)) {
		cs := time.Now()
		r.loseDisk(t, "kms2")
		r.waitDown(ctx, t, "kms2")
		p := startKmsctl(t, c.l, "-i", r.inventory, "recover", "node", "kms2", "--yes", "--output", "json")
		id := p.waitTask(t, "kms2: ", "binary")
		cut(t)
		time.Sleep(3 * time.Second)
		heal(t)
		res := p.wait(t)
		r.leaks(t, "recover node's output", res.stdout+res.stderr)
		switch {
		case res.code == exitOK:
			t.Logf("%s: kmsctl rode it out (exit 0)", what)
		case strings.Contains(res.stderr, "kmsctl resume "+id):
			t.Logf("%s: kmsctl stopped with exit %d and named the resume", what, res.code)
			resume(t, id)
		default:
			t.Fatalf("%s: kmsctl failed without naming `kmsctl resume %s`:\n%s", what, id, res)
		}
		healthy(t)
		t.Logf("%s: %s", what, time.Since(cs).Round(time.Millisecond))
	}
	t.Run("network cut during the push", func(t *testing.T) {
		h := c.l.Host("kms2")
		fault(t, "network cut", func(t *testing.T) {
			if _, err := c.l.docker("network", "disconnect", c.l.networkID, h.ID); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T) {
			if _, err := c.l.docker("network", "connect", "--ip", h.IP, "--alias", h.Name, c.l.networkID, h.ID); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("sshd restarted during the push", func(t *testing.T) {
		fault(t, "sshd restart", func(t *testing.T) {
			c.l.MustExec("kms2", "systemctl restart ssh")
		}, func(t *testing.T) {})
	})
	c.healthy(t)
}

// noTempFiles fails the test if a kmsctl upload's temp file or directory is left on a host.
func (r *recoverLab) noTempFiles(t *testing.T) {
	t.Helper()
	for _, n := range r.names {
		out := r.c.l.MustExec(n, "find / -xdev -name '*.kmsctl-tmp-*' 2>/dev/null || true")
		if strings.TrimSpace(out) != "" {
			t.Errorf("%s: kmsctl temp files left:\n%s", n, out)
		}
	}
}

// bgKmsctl is a kmsctl process started in the background, its stdout read line by line.
type bgKmsctl struct {
	cmd    *exec.Cmd
	args   []string
	lines  chan string
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
}

// startKmsctl starts the real binary as kmsctl() runs it (clean HOME and XDG dirs).
func startKmsctl(t *testing.T, l *Lab, args ...string) *bgKmsctl {
	t.Helper()
	home := filepath.Join(l.Dir, "home")
	cmd := exec.Command(kmsctlBin(t, l), args...)
	cmd.Dir = l.Dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
	}
	p := &bgKmsctl{cmd: cmd, args: args, lines: make(chan string, 1024)}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.stdout.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// waitTask reads the JSON events until the task named task starts in a play whose name starts
// with play, and returns the run's ID (from recover_start).
func (p *bgKmsctl) waitTask(t *testing.T, play, task string) string {
	t.Helper()
	id := ""
	timeout := time.After(cliTimeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.cmd.Wait()
				t.Fatalf("kmsctl ended before task %q started:\n%s", task, p.result())
			}
			var ev struct{ Event, Play, Task, Run string }
			if json.Unmarshal([]byte(line), &ev) != nil {
				continue
			}
			if ev.Event == "recover_start" {
				id = ev.Run
			}
			if ev.Event == "task_start" && ev.Task == task && strings.HasPrefix(ev.Play, play) {
				if id == "" {
					t.Fatalf("task %q started before kmsctl named its run:\n%s", task, p.result())
				}
				return id
			}
		case <-timeout:
			t.Fatalf("task %q did not start within %s:\n%s", task, cliTimeout, p.result())
		}
	}
}

func (p *bgKmsctl) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the process to end (its output read to the end) and returns its result; a
// process ended by a signal has code -1.
func (p *bgKmsctl) wait(t *testing.T) result {
	t.Helper()
	for range p.lines {
	}
	err := p.cmd.Wait()
	res := p.result()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("wait for kmsctl: %v\n%s", err, res)
	}
	t.Logf("%s", res)
	return res
}

func (p *bgKmsctl) result() result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return result{args: p.args, stdout: p.stdout.String(), stderr: p.stderr.String()}
}
