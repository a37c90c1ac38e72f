package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/journal"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/lock"
)

// cutWriter is a run's stdout (--output json) that cancels the run, as a
// kill would stop it, when the task named cut starts on the target's
// play: the engine emits task_start before the task runs, so the cut
// lands at that task, every time.
type cutWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cut    string
	cancel context.CancelFunc
	fired  bool
}

func (w *cutWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for _, line := range strings.Split(string(p), "\n") {
		var ev struct{ Event, Play, Task string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "task_start" && ev.Task == w.cut && strings.HasPrefix(ev.Play, "kms3: ") && !w.fired {
			w.fired = true
			w.cancel()
		}
	}
	return len(p), nil
}

func (w *cutWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// recoverCut runs recover node kms3 (with the flags of extra) and stops it
// when task cut starts; it returns the run's ID. kill leaves the journal
// as SIGKILL does: without its end record.
func (l *recoverLab) recoverCut(t *testing.T, stateDir, cut string, kill bool, extra ...string) string {
	t.Helper()
	te := testEnv(t)
	te.env.stateDir = stateDir
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cutWriter{cut: cut, cancel: cancel}
	te.env.stdout = w
	code := run(ctx, te.env, append([]string{"kmsctl", "recover", "node", "kms3", "-i", l.inventory, "--ssh-config", "none", "--yes", "--output", "json"}, extra...))
	if !w.fired || code != exit.Interrupted {
		t.Fatalf("recover node kms3 cut at %q: fired %v, exit %d, want %d\n%s\n%s", cut, w.fired, code, exit.Interrupted, w, te.errOut)
	}
	m := regexp.MustCompile(`"run":"([^"]+)"`).FindStringSubmatch(w.String())
	if m == nil {
		t.Fatalf("no run ID in\n%s", w)
	}
	id := m[1]
	if !strings.Contains(te.errOut.String(), "kmsctl resume "+id) {
		t.Errorf("the interrupted run does not say how to finish it:\n%s", te.errOut)
	}
	if kill {
		stripEnd(t, stateDir, id)
	}
	return id
}

// stripEnd removes the end record of run id's journal: the journal as a
// kill -9 of kmsctl leaves it.
func stripEnd(t *testing.T, stateDir, id string) {
	t.Helper()
	path, err := journal.Path(stateDir, id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, `"type":"end"`) {
		t.Fatalf("the journal's last line is not its end: %s", last)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines[:len(lines)-1], "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// loseKMS3 kills kms3 and wipes its storage: a lost disk.
func (l *recoverLab) loseKMS3(t *testing.T) {
	t.Helper()
	l.kill(2)
	if err := os.RemoveAll(filepath.Join(l.dirs[2], "data")); err != nil {
		t.Fatal(err)
	}
}

// checkHealthy proves through the API that the cluster is whole: every
// node lists the three members, and kms3 lists the keys and decrypts a
// ciphertext made before the failure.
func (l *recoverLab) checkHealthy(t *testing.T, keys []string, ct []byte, version uint32) {
	t.Helper()
	ctx := context.Background()
	for _, ep := range l.addrs {
		if v := kms.View(ctx, l.client(ep), ep); v.Err != nil || len(v.Members) != 3 {
			t.Fatalf("%s's view: %+v", ep, v)
		}
	}
	c3 := l.client(l.addrs[2])
	if got := keyList(t, c3); strings.Join(got, ",") != strings.Join(keys, ",") {
		t.Errorf("keys through kms3: %v, want %v", got, keys)
	}
	if plain, err := c3.Decrypt(ctx, "", keys[0], version, ct, nil); err != nil || string(plain) != "before" {
		t.Errorf("decrypt through kms3: %q, %v", plain, err)
	}
}

// TestResumeAfterInterruption: recover node kms3 stopped at each phase
// (killed: no end in its journal; or interrupted, exit 130), then `kmsctl
// resume RUN-ID --yes`: exit 0 under the same run ID, the cluster healthy
// with every key, a ciphertext made before the failure decrypted through
// kms3. The phases the journal records as done are not run again: kms3's
// SSH server sees no `systemctl stop` once fence is done, no wipe once
// wipe is done, no upload once push is done (and sees them when they are
// not done, so that the check can fail).
func TestResumeAfterInterruption(t *testing.T) {
	l := newRecoverLab(t)
	ctx := context.Background()
	c := l.client(l.addrs[0])
	for _, k := range []string{"k1", "k2"} {
		if err := c.CreateKey(ctx, "", k); err != nil {
			t.Fatal(err)
		}
	}
	ct, version, err := c.Encrypt(ctx, "", "k1", []byte("before"), nil)
	if err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	cases := []struct {
		phase, cut string
		kill       bool
		done       []string // phases the journal must record as done at the cut
	}{
		{"fence", "stop and disable the service", true, nil},
		{"wipe", "recreate the storage path, empty", false, []string{"fence"}},
		{"remove", "the survivor no longer lists the ID", true, []string{"fence", "wipe"}},
		{"push", "environment file with the operator's HSM key (0600)", true, []string{"fence", "wipe", "remove"}},
		{"start", "the API port answers", false, []string{"fence", "wipe", "remove", "push"}},
		{"add", "CLUSTER:ADDNODE through a healthy member", true, []string{"fence", "wipe", "remove", "push", "start"}},
		{"wait", "every member lists it and has caught up", true, []string{"fence", "wipe", "remove", "push", "start", "add"}},
		{"prove", "write and read back through the recovered node", true, []string{"fence", "wipe", "remove", "push", "start", "add", "wait"}},
	}
	for _, tc := range cases {
		t.Run(tc.phase, func(t *testing.T) {
			l.loseKMS3(t)
			id := l.recoverCut(t, stateDir, tc.cut, tc.kill)
			path, _ := journal.Path(stateDir, id)
			before, err := journal.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, p := range tc.done {
				want = append(want, "kms3 "+p)
			}
			if strings.Join(before.Done, ",") != strings.Join(want, ",") || (before.End == nil) != tc.kill {
				t.Fatalf("cut at %q: done %v, want %v; end %+v", tc.cut, before.Done, want, before.End)
			}
			// Killed or interrupted by Ctrl-C (an end with exit 130), the
			// run is named as unfinished by the next command, with its resume.
			st := testEnv(t)
			st.env.stateDir = stateDir
			st.run(t, "status", "-i", l.inventory, "--ssh-config", "none")
			if !strings.Contains(st.errOut.String(), "run "+id+" ") || !strings.Contains(st.errOut.String(), "finish it with `kmsctl resume "+id+"`") {
				t.Errorf("status after the cut (killed %v) does not name run %s as unfinished:\n%s", tc.kill, id, st.errOut)
			}
			cmds := len(l.servers[2].Commands())

			te := testEnv(t)
			te.env.stateDir = stateDir
			code := te.run(t, "resume", id, "--ssh-config", "none", "--yes")
			out := te.out.String()
			if code != 0 || !strings.Contains(out, "RECOVERED kms3") || !strings.Contains(out, "run "+id) {
				t.Fatalf("resume %s: exit %d\n%s\n%s", id, code, out, te.errOut)
			}
			for _, p := range tc.done {
				if !regexp.MustCompile(`(?m)^ +\d+ ` + p + ` .*DONE \(the journal records it; skipped\)$`).MatchString(out) {
					t.Errorf("the resume's plan does not show %s as done:\n%s", p, out)
				}
			}
			l.checkHealthy(t, []string{"k1", "k2"}, ct, version)
			t.Logf("resume:\n%s", out)

			// What kms3's SSH server saw during the resume.
			ran := l.servers[2].Commands()[cmds:]
			sent := func(words ...string) bool {
				return slices.ContainsFunc(ran, func(c string) bool {
					return !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(c, w) })
				})
			}
			// fence disables the unit (it is already stopped), wipe looks at
			// the storage path, push compares the private key's checksum.
			fenced := sent("systemctl disable")
			wiped := sent(filepath.Join(l.dirs[2], "data"))
			pushed := sent("dgst", filepath.Join(l.dirs[2], "certs/private.key"))
			for _, c := range []struct {
				phase string
				did   bool
			}{{"fence", fenced}, {"wipe", wiped}, {"push", pushed}} {
				if done := slices.Contains(tc.done, c.phase); done == c.did {
					t.Errorf("%s done before the resume: %v; the resume ran it: %v\n%s", c.phase, done, c.did, strings.Join(ran, "\n"))
				}
			}
			after, err := journal.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if after.End == nil || after.End.ExitCode != 0 || len(after.Resumes) != 1 || after.Done[len(after.Done)-1] != "kms3 prove" {
				t.Errorf("journal after the resume: end %+v, resumes %+v, done %v", after.End, after.Resumes, after.Done)
			}
			for _, st := range after.Steps[len(before.Steps):] {
				if strings.HasPrefix(st.Play, "kms3: fence") && slices.Contains(tc.done, "wipe") {
					t.Errorf("resumed step %d (%s) belongs to a phase done", st.Seq, st.Task)
				}
				if st.Seq <= len(before.Steps) {
					t.Errorf("resumed step numbered %d, not after the %d before", st.Seq, len(before.Steps))
				}
			}
			// Done: a second resume is refused, and runs ls shows it ok.
			again := testEnv(t)
			again.env.stateDir = stateDir
			if code := again.run(t, "resume", id, "--ssh-config", "none", "--yes"); code != exit.Usage || !strings.Contains(again.errOut.String(), "ended ok: there is nothing to resume") {
				t.Errorf("resume of a finished run: exit %d\n%s", code, again.errOut)
			}
		})
	}
}

// TestResumeMisuse: resume refuses, changing nothing: an unknown run or a
// malformed ID (exit 1); a run that records no plan (a play, exit 1); a
// run whose inventory changed where it matters (kms3's storage path: what
// wipe would clear, exit 4); a run while a third run holds its cluster's
// lock, or while its own process still does (exit 5). Until it is
// resumed, status and recover node say the run stopped unfinished, with
// the command that finishes it; --check shows the plan and changes
// nothing; once resumed, the notice is gone.
func TestResumeMisuse(t *testing.T) {
	l := newRecoverLab(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	resume := func(args ...string) (*testEnvT, int) {
		te := testEnv(t)
		te.env.stateDir = stateDir
		return te, te.run(t, append([]string{"resume", "--ssh-config", "none", "--yes"}, args...)...)
	}
	for _, tc := range []struct{ id, want string }{
		{"20261202T083000Z-0a1b2c3d", "no run 20261202T083000Z-0a1b2c3d"},
		{"../../etc/passwd", "want the form"},
	} {
		if te, code := resume(tc.id); code != exit.Usage || !strings.Contains(te.errOut.String(), tc.want) {
			t.Errorf("resume %s: exit %d, want %d and %q\n%s", tc.id, code, exit.Usage, tc.want, te.errOut)
		}
	}
	played, err := journal.Create(stateDir, journal.Header{ID: "20261202T083000Z-0a0a0a0a", Command: "play site.yml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	played.Close()
	if te, code := resume("20261202T083000Z-0a0a0a0a"); code != exit.Usage || !strings.Contains(te.errOut.String(), "cannot be resumed: only recover node and recover cluster record") {
		t.Errorf("resume of a play: exit %d\n%s", code, te.errOut)
	}

	l.loseKMS3(t)
	id := l.recoverCut(t, stateDir, "environment file with the operator's HSM key (0600)", true)
	before := l.snapshot()
	unchanged := func(what string) {
		t.Helper()
		if after := l.snapshot(); after != before {
			t.Errorf("%s changed files:\n%s\n---\n%s", what, before, after)
		}
	}
	// The notice, with the exact command.
	st := testEnv(t)
	st.env.stateDir = stateDir
	st.run(t, "status", "-i", l.inventory, "--ssh-config", "none")
	notice := "stopped unfinished after \"kms3 remove\"; finish it with `kmsctl resume " + id + "`"
	if !strings.Contains(st.errOut.String(), notice) {
		t.Errorf("status does not say that run %s stopped unfinished:\n%s", id, st.errOut)
	}
	rn := testEnv(t)
	rn.env.stateDir = stateDir
	rn.run(t, "recover", "node", "kms3", "-i", l.inventory, "--ssh-config", "none", "--check")
	if !strings.Contains(rn.errOut.String(), notice) {
		t.Errorf("recover node does not say that run %s stopped unfinished:\n%s", id, rn.errOut)
	}

	// kms3's storage path is not what the run began with.
	inv, err := os.ReadFile(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(inv), "kms_storage_path: "+l.dirs[2]+"/data", "kms_storage_path: "+l.dirs[2]+"/data2", 1)
	if moved == string(inv) {
		t.Fatal("kms3's storage path not found in the inventory")
	}
	os.WriteFile(l.inventory, []byte(moved), 0o600)
	te, code := resume(id)
	if code != exit.Refused || !strings.Contains(te.out.String(), "the inventory changed since run "+id+" began: kms3's kms_storage_path is "+l.dirs[2]+"/data2") ||
		!strings.Contains(te.out.String(), "nothing was changed") {
		t.Errorf("resume with kms3's storage path changed: exit %d, want %d\n%s\n%s", code, exit.Refused, te.out, te.errOut)
	}
	os.WriteFile(l.inventory, inv, 0o600)
	unchanged("a resume refused for a changed inventory")

	// A third run holds the cluster's lock; then the run's own process.
	held, err := lock.Acquire(context.Background(), locksDir(stateDir), []string{"kms"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	te, code = resume(id)
	held.Release()
	if code != exit.Locked || !strings.Contains(te.errOut.String(), "cluster kms is locked by alice@bastion1 (pid 4242") {
		t.Errorf("resume while another run holds the lock: exit %d, want %d\n%s\n%s", code, exit.Locked, te.out, te.errOut)
	}
	self := otherRun
	self.Run = id
	held, err = lock.Acquire(context.Background(), locksDir(stateDir), []string{"kms"}, self, 0)
	if err != nil {
		t.Fatal(err)
	}
	te, code = resume(id)
	held.Release()
	if code != exit.Locked || !strings.Contains(te.errOut.String(), "run "+id+" is still going") {
		t.Errorf("resume while its own run holds the lock: exit %d, want %d\n%s\n%s", code, exit.Locked, te.out, te.errOut)
	}
	unchanged("a resume refused for a held lock")

	te, code = resume(id, "--check")
	if code != 0 || !strings.Contains(te.out.String(), "--check: nothing was changed") || !strings.Contains(te.out.String(), "done: kms3 fence, kms3 wipe, kms3 remove") {
		t.Errorf("resume --check: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	unchanged("resume --check")
	// The lock of another cluster does not stop it.
	held, err = lock.Acquire(context.Background(), locksDir(stateDir), []string{"kms-eu"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	if te, code = resume(id); code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	st = testEnv(t)
	st.env.stateDir = stateDir
	st.run(t, "status", "-i", l.inventory, "--ssh-config", "none")
	if strings.Contains(st.errOut.String(), "stopped unfinished") {
		t.Errorf("status still says a run stopped unfinished after it was resumed:\n%s", st.errOut)
	}
}

// TestResumeChecksBinaryVersion: a recover node stopped before its push
// (killed at the env file), then the binary source swapped for one that
// reports another version: `resume --yes` refuses (exit 4) with recover
// node's message and changes nothing, and on a terminal it names the
// change before asking; with the source put back the resume completes. A
// run begun with --allow-version-change keeps it: its resume installs the
// other version.
func TestResumeChecksBinaryVersion(t *testing.T) {
	l := newRecoverLab(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	resume := func(args ...string) (*testEnvT, int) {
		te := testEnv(t)
		te.env.stateDir = stateDir
		return te, te.run(t, append([]string{"resume", "--ssh-config", "none"}, args...)...)
	}
	cut := "environment file with the operator's HSM key (0600)"
	src := filepath.Join(l.src, "minkms")
	newer := "2026-06-01T00-00-00Z"
	onKMS3 := func() string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(l.dirs[2], "minkms"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	l.loseKMS3(t)
	id := l.recoverCut(t, stateDir, cut, true)
	path, _ := journal.Path(stateDir, id)
	undo := l.swapFile(t, src, "", l.binary(newer))
	before := l.snapshot()
	te, code := resume(id, "--yes")
	want := "the version would change: kms3: the binary to install (kms_binary_src " + src + " on this machine) is version " + newer +
		"; the survivors run " + kmsim.DefaultVersion + ".\n  Install the survivors' version (kms_binary_src, or kms_binary_from: peer), or accept the change with --allow-version-change"
	if code != exit.Refused || !strings.Contains(te.out.String(), want) || !strings.Contains(te.out.String(), "nothing was changed") {
		t.Fatalf("resume --yes with another binary: exit %d, want %d and %q\n%s\n%s", code, exit.Refused, want, te.out, te.errOut)
	}
	if !strings.Contains(te.out.String(), "VERSION CHANGE: the binary to install") {
		t.Errorf("the resume's plan does not show the version change:\n%s", te.out)
	}
	asked := testEnv(t)
	asked.env.stateDir = stateDir
	asked.env.terminal = true
	asked.env.stdin = strings.NewReader("n\n")
	code = asked.run(t, "resume", id, "--ssh-config", "none")
	if want := "The Key Manager's version changes on kms3 (VERSION CHANGE above). Resume run " + id + " now? [y/N] nothing was changed"; code != exit.Refused || !strings.Contains(asked.out.String(), want) {
		t.Errorf("resume on a terminal with another binary: exit %d, want %q\n%s\n%s", code, want, asked.out, asked.errOut)
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("a refused resume changed files:\n%s\n---\n%s", before, after)
	}
	if r, err := journal.Read(path); err != nil || len(r.Resumes) != 0 || r.End != nil {
		t.Fatalf("a refused resume wrote to the run's journal: %+v, %v", r, err)
	}
	undo()
	if te, code = resume(id, "--yes"); code != 0 || !strings.Contains(te.out.String(), "RECOVERED kms3") || !strings.Contains(onKMS3(), kmsim.DefaultVersion) {
		t.Fatalf("resume with the binary put back: exit %d, kms3's binary %q\n%s\n%s", code, onKMS3(), te.out, te.errOut)
	}

	// Begun with --allow-version-change: the resume keeps it.
	l.loseKMS3(t)
	id = l.recoverCut(t, stateDir, cut, true, "--allow-version-change")
	defer l.swapFile(t, src, "", l.binary(newer))()
	if te, code = resume(id, "--yes"); code != 0 || !strings.Contains(te.out.String(), "RECOVERED kms3") || !strings.Contains(onKMS3(), newer) {
		t.Fatalf("resume of a run begun with --allow-version-change: exit %d, kms3's binary %q\n%s\n%s", code, onKMS3(), te.out, te.errOut)
	}
}
