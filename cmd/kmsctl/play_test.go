package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/output"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"golang.org/x/crypto/ssh"
)

// sentinel is a fake API key: it must never appear in any output.
const sentinel = "k1:SENTINEL-api-key-0123456789"

// lab is two in-process SSH servers described by an inventory.
type lab struct {
	inventory string
	dirs      map[string]string // host → directory the playbook writes to
	servers   map[string]*sshtest.Server
}

// newLab starts two SSH servers (kms1, kms2) and writes an inventory
// reaching them with a pinned known_hosts file and a private key. extraHosts
// are added to the kms group verbatim (YAML lines at host level).
func newLab(t *testing.T, extraHosts string) *lab {
	t.Helper()
	return newLabWith(t, extraHosts, nil)
}

// newLabExec is newLab with an ExecFunc intercepting the servers' commands.
func newLabExec(t *testing.T, exec sshtest.ExecFunc) *lab {
	t.Helper()
	return newLabWith(t, "", exec)
}

func newLabWith(t *testing.T, extraHosts string, exec sshtest.ExecFunc) *lab {
	t.Helper()
	return newLabConfig(t, extraHosts, sshtest.Config{Exec: exec})
}

// newLabConfig is newLab with servers made from cfg (keys and LEAK are added).
func newLabConfig(t *testing.T, extraHosts string, cfg sshtest.Config) *lab {
	t.Helper()
	key := sshtest.GenerateKey(t)
	keyFile := sshtest.ClientKeyFile(t, key, "")
	l := &lab{dirs: map[string]string{}, servers: map[string]*sshtest.Server{}}
	var hosts, known strings.Builder
	for _, h := range []string{"kms1", "kms2"} {
		c := cfg
		c.AuthorizedKeys = []ssh.PublicKey{key.PublicKey()}
		c.Env = append([]string{"LEAK=" + sentinel}, cfg.Env...)
		s := sshtest.Start(t, c)
		l.servers[h] = s
		l.dirs[h] = filepath.Join(t.TempDir(), h)
		fmt.Fprintf(&hosts, "        %s:\n          ansible_host: 127.0.0.1\n          ansible_port: %d\n          dir: %s\n          kms_lease_dir: %s\n", h, s.Port(), l.dirs[h], t.TempDir())
		known.WriteString(s.KnownHostsLine() + "\n")
	}
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(known.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := fmt.Sprintf(`all:
  vars:
    ansible_user: tester
    ansible_ssh_private_key_file: %s
    kms_ssh_known_hosts: %s
  children:
    kms:
      hosts:
%s%s`, keyFile, kh, hosts.String(), extraHosts)
	l.inventory = filepath.Join(dir, "inventory.yml")
	if err := os.WriteFile(l.inventory, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

const sitePlaybook = `- name: site
  hosts: kms
  gather_facts: false
  tasks:
    - name: make dir
      command: mkdir -p {{ dir }}
      args:
        creates: "{{ dir }}"
    - name: push config
      copy:
        content: "hello {{ inventory_hostname }}\n"
        dest: "{{ dir }}/config.yaml"
        mode: "0640"
      notify: restart
    - name: leak check
      shell: echo "leak=$LEAK"
      changed_when: false
  handlers:
    - name: restart
      command: touch {{ dir }}/restarted
`

func writePlaybook(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "site.yml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runLogs returns the contents of every run log of te.
func runLogs(t *testing.T, te *testEnvT) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(te.stateDir, "runs", "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no run log in %s", te.stateDir)
	}
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

func checkNoSentinel(t *testing.T, te *testEnvT) {
	t.Helper()
	for name, s := range map[string]string{"stdout": te.out.String(), "stderr": te.errOut.String(), "run log": runLogs(t, te), "journal": journals(t, te)} {
		if strings.Contains(s, sentinel) || strings.Contains(s, "SENTINEL-api-key") {
			t.Errorf("the secret appears in %s:\n%s", name, s)
		}
	}
}

func TestPlayEndToEnd(t *testing.T) {
	l := newLab(t, "")
	pb := writePlaybook(t, sitePlaybook)

	// --check changes nothing.
	te := testEnv(t)
	te.vars[envAPIKey] = sentinel
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "--check", "--diff"); code != 0 {
		t.Fatalf("--check: exit %d\nstdout %s\nstderr %s", code, te.out, te.errOut)
	}
	if out := te.out.String(); !strings.Contains(out, "changed: [kms1] push config (check mode: would change)") || !strings.Contains(out, "+hello kms1") {
		t.Errorf("--check --diff output:\n%s", out)
	}
	for h, d := range l.dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("--check created %s on %s", d, h)
		}
	}

	// A real run: flags after the playbook, -v to show command output.
	te = testEnv(t)
	te.vars[envAPIKey] = sentinel
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "-v", "--forks", "2"); code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, te.out, te.errOut)
	}
	out := te.out.String()
	for h, d := range l.dirs {
		b, err := os.ReadFile(filepath.Join(d, "config.yaml"))
		if err != nil || string(b) != "hello "+h+"\n" {
			t.Errorf("%s: config.yaml = %q, %v", h, b, err)
		}
		if _, err := os.Stat(filepath.Join(d, "restarted")); err != nil {
			t.Errorf("%s: handler did not run: %v", h, err)
		}
		for _, want := range []string{
			"changed: [" + h + "] push config",
			"changed: [" + h + "] restart",
			"ok: [" + h + "] leak check",
			h + " : ok=4 changed=3 unreachable=0 failed=0 skipped=0 ignored=0 interrupted=0",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	}
	if !strings.Contains(out, "leak=[REDACTED]") || !strings.Contains(out, "PLAY RECAP") || !strings.Contains(out, "total time") {
		t.Errorf("output:\n%s", out)
	}
	checkNoSentinel(t, te)

	// A second run changes nothing and owes no handler; -vv traces commands.
	te = testEnv(t)
	if code := te.run(t, "-i", l.inventory, "--ssh-config", "none", "play", pb, "-vv"); code != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if out := te.out.String(); strings.Contains(out, "changed:") || !strings.Contains(out, "kms1 : ok=3 changed=0") {
		t.Errorf("second run not idempotent:\n%s", out)
	}
	if !strings.Contains(te.errOut.String(), `cmd="echo \"leak=$LEAK\""`) {
		t.Errorf("-vv does not trace commands on stderr:\n%s", te.errOut)
	}
}

func TestPlayJSONOutput(t *testing.T) {
	l := newLab(t, "")
	pb := writePlaybook(t, sitePlaybook)
	te := testEnv(t)
	te.vars[envAPIKey] = sentinel
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "--output", "json", "--limit", "kms2"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	events := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(te.out.String()))
	var recap map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		ev, _ := m["event"].(string)
		events[ev]++
		if ts, _ := m["time"].(string); ts == "" {
			t.Errorf("%s event has no time: %s", ev, sc.Text())
		} else if _, err := time.Parse(output.TimeFormat, ts); err != nil {
			t.Errorf("%s event time %q: %v", ev, ts, err)
		}
		if ev == "host_result" && m["host"] != "kms2" {
			t.Errorf("--limit kms2 ran on %v", m["host"])
		}
		if ev == "recap" {
			recap = m["recap"].(map[string]any)
		}
	}
	if events["play_start"] != 1 || events["task_start"] != 3 || events["host_result"] != 4 || events["recap"] != 1 || events["run_end"] != 1 {
		t.Errorf("events %v", events)
	}
	if kms2, ok := recap["kms2"].(map[string]any); !ok || kms2["changed"] != float64(3) || len(recap) != 1 {
		t.Errorf("recap %v", recap)
	}
	if _, err := os.Stat(l.dirs["kms1"]); err == nil {
		t.Error("--limit kms2 touched kms1")
	}
	checkNoSentinel(t, te)
}

func TestPlayExitCodes(t *testing.T) {
	// kms3 is unreachable (nothing listens on port 1).
	l := newLab(t, "        kms3:\n          ansible_host: 127.0.0.1\n          ansible_port: 1\n          dir: /nonexistent\n")
	ok := writePlaybook(t, "- hosts: kms\n  tasks:\n    - command: \"true\"\n")
	te := testEnv(t)
	if code := te.run(t, "play", ok, "-i", l.inventory, "--ssh-config", "none"); code != exit.Unreachable {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.Unreachable, te.out, te.errOut)
	}
	if !strings.Contains(te.out.String(), "kms3 : ok=0 changed=0 unreachable=1") || !strings.Contains(te.errOut.String(), "run log: ") {
		t.Errorf("stdout %s\nstderr %s", te.out, te.errOut)
	}
	failing := writePlaybook(t, "- hosts: kms\n  tasks:\n    - command: \"false\"\n")
	te = testEnv(t)
	if code := te.run(t, "play", failing, "-i", l.inventory, "--ssh-config", "none"); code != exit.HostFailed {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.HostFailed, te.out, te.errOut)
	}
	if !strings.Contains(te.out.String(), "failed: [kms1]") {
		t.Errorf("stdout %s", te.out)
	}
}

// TestPlayInterrupted: cancelling the run (the first Ctrl-C) stops starting
// new work, runs the handlers owed and prints the recap; exit code 130.
func TestPlayInterrupted(t *testing.T) {
	started := make(chan struct{}, 4)
	l := newLabExec(t, func(ctx context.Context, cmd string, _ io.Reader, _, _ io.Writer) (int, bool) {
		if !strings.HasPrefix(cmd, "sleep 30") {
			return 0, false
		}
		started <- struct{}{}
		<-ctx.Done()
		return 137, true
	})
	pb := writePlaybook(t, `- hosts: kms1
  tasks:
    - name: push config
      copy:
        content: "x\n"
        dest: "{{ dir }}.conf"
      notify: restart
    - name: long
      command: sleep 30
    - name: never started
      command: touch {{ dir }}.never
  handlers:
    - name: restart
      command: touch {{ dir }}.restarted
`)
	te := testEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	code := run(ctx, te.env, []string{"kmsctl", "play", pb, "-i", l.inventory, "--ssh-config", "none"})
	if code != exit.Interrupted {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.Interrupted, te.out, te.errOut)
	}
	d := l.dirs["kms1"]
	if _, err := os.Stat(d + ".restarted"); err != nil {
		t.Errorf("the owed handler did not run: %v", err)
	}
	if _, err := os.Stat(d + ".never"); err == nil {
		t.Error("a task after the interruption ran")
	}
	if !strings.Contains(te.out.String(), "PLAY RECAP") || !strings.Contains(te.errOut.String(), "interrupted") {
		t.Errorf("stdout %s\nstderr %s", te.out, te.errOut)
	}
}

// TestPlayInterruptedSaysWhatWasDone: an interrupted run does not advise
// running the playbook again (not safe for one that wipes): it says, per
// host, what finished, which task was interrupted, and where the run log
// is.
func TestPlayInterruptedSaysWhatWasDone(t *testing.T) {
	started := make(chan struct{}, 4)
	l := newLabExec(t, func(ctx context.Context, cmd string, _ io.Reader, _, _ io.Writer) (int, bool) {
		if !strings.HasPrefix(cmd, "sleep 30") {
			return 0, false
		}
		started <- struct{}{}
		<-ctx.Done()
		return 137, true
	})
	pb := writePlaybook(t, `- hosts: kms
  tasks:
    - name: push config
      copy:
        content: "x\n"
        dest: "{{ dir }}.conf"
    - name: wipe
      command: sleep 30
      when: inventory_hostname == 'kms1'
    - name: never started
      command: touch {{ dir }}.never
`)
	te := testEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	code := run(ctx, te.env, []string{"kmsctl", "play", pb, "-i", l.inventory, "--ssh-config", "none"})
	if code != exit.Interrupted {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.Interrupted, te.out, te.errOut)
	}
	stderr := te.errOut.String()
	logs, _ := filepath.Glob(filepath.Join(te.stateDir, "runs", "*"))
	if len(logs) != 1 {
		t.Fatalf("run logs: %v", logs)
	}
	for _, want := range []string{
		"run interrupted (Ctrl-C or SIGTERM)",
		`kms1: 1 task(s) finished (1 changed, 0 skipped), the last "push config" (changed); interrupted: "wipe" (` + pb + ":7)",
		`kms2: 2 task(s) finished (1 changed, 1 skipped), the last "wipe" (skipped)` + "\n",
		"The later tasks did not run",
		"Do not simply run the playbook again",
		"run log: " + logs[0],
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "run it again") {
		t.Errorf("stderr advises running it again:\n%s", stderr)
	}
}

// TestPlayTimeout: --timeout ends the run with exit code 6.
func TestPlayTimeout(t *testing.T) {
	l := newLabExec(t, func(ctx context.Context, cmd string, _ io.Reader, _, _ io.Writer) (int, bool) {
		if cmd != "sleep 30" {
			return 0, false
		}
		<-ctx.Done()
		return 137, true
	})
	pb := writePlaybook(t, "- hosts: kms\n  tasks:\n    - command: sleep 30\n")
	te := testEnv(t)
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "--timeout", "300ms"); code != exit.TimedOut {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.TimedOut, te.out, te.errOut)
	}
	if !strings.Contains(te.out.String(), "PLAY RECAP") {
		t.Errorf("no recap:\n%s", te.out)
	}
	if want := "run stopped: --timeout 300ms reached (raise --timeout"; !strings.Contains(te.errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, te.errOut)
	}
}

// TestPlayTagsAndEnvInventory: --tags after the playbook selects tasks, and
// KMSCTL_INVENTORY names the inventory when -i is not given.
func TestPlayTagsAndEnvInventory(t *testing.T) {
	l := newLab(t, "")
	t.Setenv("KMSCTL_INVENTORY", l.inventory)
	pb := writePlaybook(t, `- hosts: kms1
  tasks:
    - command: touch {{ dir }}.a
      tags: a
    - command: touch {{ dir }}.b
      tags: [b]
`)
	te := testEnv(t)
	if code := te.run(t, "play", pb, "--tags", "a", "--ssh-config", "none"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	d := l.dirs["kms1"]
	if _, err := os.Stat(d + ".a"); err != nil {
		t.Errorf("task tagged a did not run: %v", err)
	}
	if _, err := os.Stat(d + ".b"); err == nil {
		t.Error("task tagged b ran with --tags a")
	}
}

func TestPlaySyntaxCheckAndListHosts(t *testing.T) {
	te := testEnv(t)
	if code := te.run(t, "play", "ping", "--syntax-check"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	if !strings.Contains(te.out.String(), "builtin:ping.yml: 1 play, syntax OK\n") {
		t.Errorf("stdout %s", te.out)
	}
	te = testEnv(t)
	if code := te.run(t, "play", "../../playbooks/testdata/invalid/many.yml", "--syntax-check"); code != exit.Usage {
		t.Fatalf("invalid playbook: exit %d", code)
	}
	if !strings.Contains(te.errOut.String(), "many.yml:5:3: play: unknown key \"colour\"") {
		t.Errorf("stderr %s", te.errOut)
	}
	te = testEnv(t)
	if code := te.run(t, "play", "ping", "--list-hosts", "-i", "testdata/inventory.yml", "-l", "kms:jump1:!kms1"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	if got := te.out.String(); got != "play \"ping\" (builtin:ping.yml:2): 2 hosts\n  kms2\n  jump1\n" {
		t.Errorf("--list-hosts:\n%s", got)
	}
	te = testEnv(t)
	if code := te.run(t, "play", "ping", "--list-hosts", "-i", "testdata/inventory.yml", "-l", "kms2"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	if got := te.out.String(); got != "play \"ping\" (builtin:ping.yml:2): 1 host\n  kms2\n" {
		t.Errorf("--list-hosts -l kms2:\n%s", got)
	}
}

// TestPlayBecome: ansible_become in the inventory runs commands through
// sudo -n; become: false on a task does not; sudo asking for a password
// fails the host with the explanation.
func TestPlayBecome(t *testing.T) {
	l := newLabConfig(t, "", sshtest.Config{Sudo: sshtest.SudoAllow})
	inv, err := os.ReadFile(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	withBecome := strings.Replace(string(inv), "  vars:\n", "  vars:\n    ansible_become: true\n", 1)
	if err := os.WriteFile(l.inventory, []byte(withBecome), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := writePlaybook(t, `- hosts: kms1
  tasks:
    - command: touch {{ dir }}.as-root
    - command: touch {{ dir }}.as-login
      become: false
`)
	te := testEnv(t)
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	cmds := strings.Join(l.servers["kms1"].Commands(), "\n")
	if !strings.Contains(cmds, "sudo -n -- sh -c 'touch "+l.dirs["kms1"]+".as-root'") {
		t.Errorf("no sudo for the become task:\n%s", cmds)
	}
	if !strings.Contains(cmds, "\ntouch "+l.dirs["kms1"]+".as-login") {
		t.Errorf("become: false went through sudo:\n%s", cmds)
	}

	l = newLabConfig(t, "", sshtest.Config{Sudo: sshtest.SudoPasswordRequired})
	if err := os.WriteFile(l.inventory, []byte(strings.Replace(mustRead(t, l.inventory), "  vars:\n", "  vars:\n    ansible_become: true\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	te = testEnv(t)
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "--limit", "kms1"); code != exit.HostFailed {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.HostFailed, te.out, te.errOut)
	}
	if !strings.Contains(te.errOut.String(), "a password is required") {
		t.Errorf("stderr lacks the sudo explanation:\n%s", te.errOut)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPlayLoopDelegate: loop items run in turn; delegate_to runs a task
// through another inventory host's connection; run_once runs it once.
func TestPlayLoopDelegate(t *testing.T) {
	l := newLab(t, "")
	pb := writePlaybook(t, `- hosts: kms
  tasks:
    - name: files
      command: touch {{ dir }}.{{ f }}
      loop: [a, b]
      loop_control:
        loop_var: f
    - name: once, from kms2
      command: touch {{ dir }}.once
      delegate_to: kms2
      run_once: true
`)
	te := testEnv(t)
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	for h, d := range l.dirs {
		for _, f := range []string{".a", ".b"} {
			if _, err := os.Stat(d + f); err != nil {
				t.Errorf("%s: loop item %s did not run: %v", h, f, err)
			}
		}
	}
	once := 0
	for _, d := range l.dirs {
		if _, err := os.Stat(d + ".once"); err == nil {
			once++
		}
	}
	if once != 1 {
		t.Errorf("run_once task ran for %d hosts, want 1", once)
	}
	// Delegated to kms2: kms2's server ran the command, kms1's did not.
	if cmds := strings.Join(l.servers["kms1"].Commands(), "\n"); strings.Contains(cmds, ".once") {
		t.Errorf("kms1's server ran the delegated task:\n%s", cmds)
	}
	if cmds := strings.Join(l.servers["kms2"].Commands(), "\n"); !strings.Contains(cmds, ".once") {
		t.Errorf("kms2's server did not run the delegated task:\n%s", cmds)
	}
}

// TestBuiltinPlaybooksRun runs every built-in playbook on the lab.
func TestBuiltinPlaybooksRun(t *testing.T) {
	l := newLab(t, "")
	for _, name := range []string{"ping", "facts"} {
		te := testEnv(t)
		if code := te.run(t, "play", name, "-i", l.inventory, "--ssh-config", "none", "-v"); code != 0 {
			t.Fatalf("play %s: exit %d\n%s\n%s", name, code, te.out, te.errOut)
		}
		if !strings.Contains(te.out.String(), "kms2 : ok=") || strings.Contains(te.out.String(), "failed: ") {
			t.Errorf("play %s:\n%s", name, te.out)
		}
	}
}

// TestPlainFunctions calls the commands' functions directly with an options
// struct, without urfave/cli: the CLI is only a shell around them.
func TestPlainFunctions(t *testing.T) {
	l := newLab(t, "")
	o := options{
		Inventories: []string{l.inventory}, InventoryExplicit: true, Limit: "kms1",
		Forks: 1, Output: "text", SSHConfig: "none", ExtraVars: map[string]any{"greeting": "hi"},
	}
	te := testEnv(t)
	pb := writePlaybook(t, "- hosts: kms\n  tasks:\n    - command: touch {{ dir }}.{{ greeting }}\n")
	if err := play(context.Background(), te.env, o, pb, playOptions{}); err != nil {
		t.Fatalf("play: %v\n%s", err, te.errOut)
	}
	if _, err := os.Stat(l.dirs["kms1"] + ".hi"); err != nil {
		t.Errorf("-e greeting=hi not applied: %v", err)
	}
	if _, err := os.Stat(l.dirs["kms2"] + ".hi"); err == nil {
		t.Error("Limit kms1 ran on kms2")
	}
	if err := ping(context.Background(), te.env, o, nil); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := inventoryList(te.env, o); err != nil {
		t.Fatalf("inventory list: %v", err)
	}
	if !strings.Contains(te.out.String(), "ok: [kms1] ping") || !strings.Contains(te.out.String(), "kms1:\n  ansible_host: 127.0.0.1") {
		t.Errorf("stdout:\n%s", te.out)
	}
}

// TestPlayBadExtraVarsChangeNothing: -e values of connection and Key Manager
// variables are validated before any host is touched: an error naming the
// variable at "-e", not an unreachable host, and no play starts. Invalid
// input exits 1; a value the dangerous-path rule refuses exits 4.
func TestPlayBadExtraVarsChangeNothing(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.yml")
	if err := os.WriteFile(inv, []byte("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ansible_port: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := writePlaybook(t, "- hosts: all\n  tasks:\n    - command: \"true\"\n")
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"-e", "ansible_port=abc"}, exit.Usage, []string{"-e: ansible_port: must be a port number"}},
		{[]string{"-e", "kms_storge_path=/data/kms"}, exit.Usage,
			[]string{`-e: kms_storge_path: unknown variable "kms_storge_path" looks like a misspelling (did you mean kms_storage_path?)`}},
		{[]string{"-e", "ansible_port=abc", "-e", "kms_storage_path=/"}, exit.Refused,
			[]string{"-e: ansible_port: must be a port number", "-e: kms_storage_path: storage path / is refused"}},
		{[]string{"-e", "kms_storage_path=/root/.ssh"}, exit.Refused, []string{"-e: kms_storage_path: storage path /root/.ssh is refused"}},
		{[]string{"-e", "kms_api_key=SENTINEL-argv"}, exit.Refused, []string{"-e: kms_api_key: a secret on kmsctl's command line", "-e @FILE"}},
	} {
		te := testEnv(t)
		code := te.run(t, append([]string{"play", pb, "-i", inv, "--ssh-config", "none"}, c.args...)...)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d\n%s\n%s", c.args, code, c.code, te.out, te.errOut)
		}
		for _, want := range c.want {
			if !strings.Contains(te.errOut.String(), want) {
				t.Errorf("%q: stderr lacks %q:\n%s", c.args, want, te.errOut)
			}
		}
		if strings.Contains(te.out.String(), "PLAY") {
			t.Errorf("%q: a play started:\n%s", c.args, te.out)
		}
		if strings.Contains(te.errOut.String()+te.out.String(), "SENTINEL") {
			t.Errorf("%q: the secret is echoed", c.args)
		}
	}
}

// TestRefusedInventoryExits4: an inventory whose storage path the
// dangerous-path rule refuses exits 4, with every problem of the inventory
// reported, while other invalid inventories exit 1.
func TestRefusedInventoryExits4(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	refused := write("refused.yml", "all:\n  hosts:\n    h1: {kms_storage_path: /root/.ssh, kms_port: 0}\n")
	invalid := write("invalid.yml", "all:\n  hosts:\n    h1: {kms_port: 0}\n")
	pb := writePlaybook(t, "- hosts: all\n  tasks:\n    - command: \"true\"\n")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"inventory", "list", "-i", refused}, exit.Refused},
		{[]string{"play", pb, "-i", refused}, exit.Refused},
		{[]string{"inventory", "list", "-i", invalid}, exit.Usage},
	} {
		te := testEnv(t)
		if code := te.run(t, c.args...); code != c.code {
			t.Errorf("%q: exit %d, want %d\n%s", c.args, code, c.code, te.errOut)
		}
		if !strings.Contains(te.errOut.String(), "kms_port: port 0 out of range") {
			t.Errorf("%q: not every problem reported:\n%s", c.args, te.errOut)
		}
	}
}

// TestPlayDangerousPathExits4: a file task the dangerous-path rule refuses
// exits 4, whether the path is literal (found by --syntax-check, before any
// host is touched) or templated (found on the host, where it changes
// nothing: here the directory holding the host's kms_config_file).
func TestPlayDangerousPathExits4(t *testing.T) {
	te := testEnv(t)
	literal := writePlaybook(t, "- hosts: kms\n  tasks:\n    - file: {path: /, state: absent}\n")
	if code := te.run(t, "play", literal, "--syntax-check"); code != exit.Refused {
		t.Fatalf("--syntax-check of path: /: exit %d, want %d\n%s", code, exit.Refused, te.errOut)
	}
	if want := "site.yml:3:7: module file: path: refusing /: it is the root directory"; !strings.Contains(te.errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, te.errOut)
	}

	l := newLab(t, "")
	node := filepath.Join(t.TempDir(), "minkms")
	config := filepath.Join(node, "config.yaml")
	if err := os.MkdirAll(node, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte("keep: me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	templated := writePlaybook(t, "- hosts: kms1\n  tasks:\n    - file: {path: \"{{ target }}\", state: absent}\n")
	te = testEnv(t)
	code := te.run(t, "play", templated, "-i", l.inventory, "--ssh-config", "none", "-e", "target="+node, "-e", "kms_config_file="+config)
	if code != exit.Refused {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exit.Refused, te.out, te.errOut)
	}
	if want := "refusing " + node + ": it is or contains " + config; !strings.Contains(te.errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, te.errOut)
	}
	if b, err := os.ReadFile(config); err != nil || string(b) != "keep: me\n" {
		t.Errorf("the node's config file was touched: %q %v", b, err)
	}
}
