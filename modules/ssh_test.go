package modules_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kmsctl/kmsctl/modules"
	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"github.com/kmsctl/kmsctl/tasks"
)

// sshHost starts an in-process SSH server running commands on this machine
// and returns an engine connected to it through the real remote client.
func sshHost(t *testing.T) (*tasks.Engine, *[]tasks.Event) {
	e, ev, _ := sshHostWith(t, sshtest.SudoNone)
	return e, ev
}

func sshHostWith(t *testing.T, sudo sshtest.SudoMode) (*tasks.Engine, *[]tasks.Event, *sshtest.Server) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	key := sshtest.GenerateKey(t)
	s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, Sudo: sudo})
	kh := filepath.Join(home, "known_hosts")
	sshtest.WriteKnownHosts(t, kh, s.KnownHostsLine())
	keyFile := sshtest.ClientKeyFile(t, key, "")
	var events []tasks.Event
	reg := tasks.NewRegistry()
	modules.Register(reg)
	e := &tasks.Engine{
		Forks:   2,
		Modules: reg,
		Sink:    tasks.SinkFunc(func(ev tasks.Event) { events = append(events, ev) }),
		Connect: func(ctx context.Context, h tasks.Host) (tasks.Conn, error) {
			return remote.Dial(ctx, remote.Options{Alias: h.Name, HostName: "127.0.0.1", Port: s.Port(), User: "test",
				IdentityFiles: []string{keyFile}, SSHConfigFile: "none", KnownHostsFiles: []string{kh}, AgentSocket: "none"})
		},
		Become: func(c tasks.Conn, user string) tasks.Conn { return remote.Become(c, user) },
	}
	return e, &events, s
}

// TestBecomeOverSSH runs tasks through remote.Become: commands and file
// writes go through sudo -n; a sudo that wants a password fails the task
// (it is not an unreachable host).
func TestBecomeOverSSH(t *testing.T) {
	eng, _, srv := sshHostWith(t, sshtest.SudoAllow)
	dir := t.TempDir()
	yes := true
	play := tasks.Play{Name: "become", Hosts: []tasks.Host{{Name: "kms1"}}, Tasks: []tasks.Task{
		{Name: "conf", Module: "copy", Args: map[string]any{"content": "x\n", "dest": dir + "/conf", "mode": "0600"}, Become: &yes},
		{Name: "cmd", Module: "command", Args: map[string]any{"argv": []any{"touch", dir + "/flag"}}, Become: &yes},
	}}
	if _, err := eng.Run(context.Background(), []tasks.Play{play}); err != nil {
		t.Fatalf("run: %v", err)
	}
	if b, err := os.ReadFile(dir + "/conf"); err != nil || string(b) != "x\n" {
		t.Fatalf("conf %q %v", b, err)
	}
	sudo := 0
	for _, c := range srv.Commands() {
		if strings.HasPrefix(c, "sudo -n") {
			sudo++
		}
	}
	if sudo < 2 {
		t.Fatalf("commands did not go through sudo: %q", srv.Commands())
	}

	eng, _, _ = sshHostWith(t, sshtest.SudoPasswordRequired)
	recap, err := eng.Run(context.Background(), []tasks.Play{play})
	if err == nil || recap["kms1"].Failed != 1 || recap["kms1"].Unreachable != 0 || !strings.Contains(err.Error(), "NOPASSWD") {
		t.Fatalf("password sudo: recap %+v, err %v", recap["kms1"], err)
	}
}

// TestModulesOverSSH runs the real modules over real SSH against this
// machine (inside a temporary directory): the shell commands they send
// must work with a real shell and coreutils, and a second run changes nothing.
func TestModulesOverSSH(t *testing.T) {
	eng, events, srv := sshHostWith(t, sshtest.SudoNone)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	data := filepath.Join(root, "data")
	fetched := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(web.Close)
	files := fstest.MapFS{"conf.j2": {Data: []byte("node={{ inventory_hostname }}\nport={{ port }}\n")}}
	play := tasks.Play{Name: "ssh", Hosts: []tasks.Host{{Name: "kms1"}}, Files: files,
		Vars: map[string]any{"root": root, "data": data, "port": 7373, "me": me.Username, "want_sum": fmt.Sprintf("%x", sha256.Sum256([]byte("a: 1\n")))},
		Tasks: []tasks.Task{
			{Name: "ping", Module: "ping"},
			{Name: "dir", Module: "file", Args: map[string]any{"path": "{{ data }}/sub", "state": "directory", "mode": "0750", "owner": "{{ me }}"}},
			{Name: "tree owner", Module: "file", Args: map[string]any{"path": "{{ data }}", "state": "directory", "owner": "{{ me }}", "recurse": true}},
			{Name: "conf", Module: "copy", Args: map[string]any{"content": "a: 1\n", "dest": "{{ data }}/conf.yaml", "mode": "0640", "validate": "grep -q a: %s"}},
			{Name: "tpl", Module: "template", Args: map[string]any{"src": "conf.j2", "dest": "{{ data }}/node.conf", "secret": true}},
			{Name: "secret via stdin", Module: "command", Args: map[string]any{"argv": []any{"sh", "-c", "cat > \"$0\"", "{{ data }}/key"}, "stdin": "hsm-key-value", "creates": "{{ data }}/key"}, NoLog: true},
			{Name: "pipe", Module: "shell", Args: map[string]any{"cmd": "ls {{ data }} | wc -l"}, Register: "n", ChangedWhen: "false"},
			{Name: "count", Module: "assert", Args: map[string]any{"that": `n.stdout_lines[0] == "4"`}, When: "not ansible_check_mode"},
			{Name: "touch", Module: "file", Args: map[string]any{"path": "{{ data }}/.ready", "state": "touch"}},
			{Name: "gone", Module: "file", Args: map[string]any{"path": "{{ data }}/sub", "state": "absent"}},
			{Name: "fetch", Module: "fetch", Args: map[string]any{"src": "{{ data }}/conf.yaml", "dest": fetched, "flat": true}},
			{Name: "wait path", Module: "wait_for", Args: map[string]any{"path": "{{ data }}/.ready", "timeout": 5}},
			{Name: "wait port", Module: "wait_for", Args: map[string]any{"port": port, "timeout": 5}},
			{Name: "wait url", Module: "wait_for", Args: map[string]any{"url": web.URL + "/v1/ready", "status_code": 204, "timeout": 5}},
			{Name: "stat", Module: "stat", Args: map[string]any{"path": "{{ data }}/conf.yaml", "get_checksum": true}, Register: "st"},
			{Name: "stat ok", Module: "assert", Args: map[string]any{"that": []any{
				`st.stat.exists and st.stat.isreg and st.stat.mode == "0640" and st.stat.size == 5`,
				`st.stat.checksum == want_sum`}}},
			{Name: "debug", Module: "debug", Args: map[string]any{"var": "st.stat.mode"}},
		}}
	recap, err := eng.Run(context.Background(), []tasks.Play{play})
	if err != nil {
		t.Fatalf("first run: %v\n%v", err, *events)
	}
	if tunnels := strings.Join(srv.Tunnels(), " "); !strings.Contains(tunnels, strings.TrimPrefix(web.URL, "http://")) {
		t.Fatalf("wait_for url did not go through the SSH tunnel: %v", srv.Tunnels())
	}
	first := *recap["kms1"]
	if first.Changed != 7 || first.Failed != 0 {
		t.Fatalf("first run recap %+v, want 7 changed", first)
	}
	checkFile := func(name, want string, mode os.FileMode) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(data, name))
		if err != nil || string(b) != want {
			t.Fatalf("%s = %q, %v; want %q", name, b, err, want)
		}
		if fi, _ := os.Stat(filepath.Join(data, name)); fi.Mode().Perm() != mode {
			t.Fatalf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	checkFile("conf.yaml", "a: 1\n", 0o640)
	checkFile("node.conf", "node=kms1\nport=7373\n", 0o600)
	if b, _ := os.ReadFile(filepath.Join(data, "key")); string(b) != "hsm-key-value" {
		t.Fatalf("stdin not delivered: %q", b)
	}
	if _, err := os.Stat(filepath.Join(data, "sub")); !os.IsNotExist(err) {
		t.Fatalf("sub not removed: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(fetched, "conf.yaml")); string(b) != "a: 1\n" {
		t.Fatalf("fetched %q", b)
	}

	// Second run: the directory comes back (changed), everything else is ok.
	*events = nil
	recap, err = eng.Run(context.Background(), []tasks.Play{play})
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	var changed []string
	for _, ev := range *events {
		if ev.Type == tasks.EventHostResult && ev.Status == tasks.StatusChanged {
			changed = append(changed, ev.Task)
		}
	}
	if strings.Join(changed, ",") != "dir,gone" {
		t.Fatalf("second run changed %v, want only dir and gone", changed)
	}

	// Check mode on the real host changes nothing.
	before := listTree(t, root)
	eng.Check = true
	play.Vars["port"] = 7374
	if _, err := eng.Run(context.Background(), []tasks.Play{play}); err != nil {
		t.Fatalf("check run: %v", err)
	}
	if after := listTree(t, root); after != before {
		t.Fatalf("check mode changed files:\n%s\n---\n%s", before, after)
	}
}

func listTree(t *testing.T, root string) string {
	var b strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		c, _ := os.ReadFile(p)
		if fi.IsDir() {
			c = nil
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + strconv.Quote(string(c)) + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestCopyDirectoryOverSSH copies a tree of 30 small files, then checks
// that a second run uploads nothing, that one changed file is the only
// upload, and that a mode change touches no content.
func TestCopyDirectoryOverSSH(t *testing.T) {
	eng, events := sshHost(t)
	src := filepath.Join(t.TempDir(), "certs")
	for i := range 30 {
		p := filepath.Join(src, "sub"+strconv.Itoa(i%3), "f"+strconv.Itoa(i)+".pem")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat("x", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dest := t.TempDir()
	me, _ := user.Current()
	play := func(args map[string]any) []tasks.Play {
		return []tasks.Play{{Name: "dir", Hosts: []tasks.Host{{Name: "kms1"}},
			Tasks: []tasks.Task{{Name: "copy", Module: "copy", Args: args}}}}
	}
	run := func(args map[string]any) tasks.Event {
		t.Helper()
		*events = nil
		if _, err := eng.Run(context.Background(), play(args)); err != nil {
			t.Fatalf("run %v: %v", args, err)
		}
		for _, ev := range *events {
			if ev.Type == tasks.EventHostResult {
				return ev
			}
		}
		t.Fatal("no result")
		return tasks.Event{}
	}
	args := map[string]any{"src": src, "dest": dest, "mode": "0640", "owner": me.Username}
	if ev := run(args); ev.Status != tasks.StatusChanged || !strings.Contains(ev.Msg, "upload 30 of 30 files") {
		t.Fatalf("first copy: %+v", ev)
	}
	b, err := os.ReadFile(filepath.Join(dest, "certs", "sub1", "f7.pem"))
	if err != nil || string(b) != "xxxxxxx" {
		t.Fatalf("f7 = %q %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(dest, "certs", "sub2", "f8.pem")); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if ev := run(args); ev.Status != tasks.StatusOK {
		t.Fatalf("second copy: %+v", ev)
	}
	if err := os.WriteFile(filepath.Join(src, "sub0", "f3.pem"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ev := run(args); ev.Status != tasks.StatusChanged || !strings.Contains(ev.Msg, "upload 1 of 30 files") {
		t.Fatalf("one changed file: %+v", ev)
	}
	args["mode"] = "0600"
	if ev := run(args); ev.Status != tasks.StatusChanged || !strings.Contains(ev.Msg, "set mode of 30 files") || strings.Contains(ev.Msg, "upload") {
		t.Fatalf("mode change: %+v", ev)
	}
	if ev := run(args); ev.Status != tasks.StatusOK {
		t.Fatalf("after mode change: %+v", ev)
	}
	// A trailing slash copies the content into dest; check mode writes nothing.
	flat := filepath.Join(dest, "flat")
	eng.Check = true
	if ev := run(map[string]any{"src": src + "/", "dest": flat}); ev.Status != tasks.StatusChanged {
		t.Fatalf("check: %+v", ev)
	}
	if _, err := os.Stat(flat); !os.IsNotExist(err) {
		t.Fatalf("check mode created %s", flat)
	}
	eng.Check = false
	run(map[string]any{"src": src + "/", "dest": flat})
	if _, err := os.Stat(filepath.Join(flat, "sub0", "f0.pem")); err != nil {
		t.Fatal(err)
	}
}

// TestCopyNewDirectoryRemovesStaleTempDirOverSSH: the temporary directory
// of an earlier interrupted directory copy (".NAME.kmsctl-XXXXXX" beside
// dest, maybe holding keys) is removed by the next copy of that directory;
// other names are left alone.
func TestCopyNewDirectoryRemovesStaleTempDirOverSSH(t *testing.T) {
	eng, _ := sshHost(t)
	src := filepath.Join(t.TempDir(), "certs")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "ca.pem"), []byte("CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	stale := filepath.Join(dest, ".certs.kmsctl-Ab12Cd")
	other := filepath.Join(dest, ".certs.kmsctl-keep-this")
	for _, d := range []string{stale, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "key.pem"), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	play := []tasks.Play{{Name: "dir", Hosts: []tasks.Host{{Name: "kms1"}},
		Tasks: []tasks.Task{{Name: "copy", Module: "copy", Args: map[string]any{"src": src, "dest": dest}}}}}
	if _, err := eng.Run(context.Background(), play); err != nil {
		t.Fatalf("run: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "certs", "ca.pem")); err != nil || string(b) != "CA" {
		t.Fatalf("ca.pem = %q %v", b, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary directory %s left behind: %v", stale, err)
	}
	if _, err := os.Stat(filepath.Join(other, "key.pem")); err != nil {
		t.Errorf("removed %s, which is not a temporary directory of kmsctl: %v", other, err)
	}
}

// TestCopyFromHostOverSSH copies a 10 MiB file with copy's from_host over
// real SSH connections, become through sudo on both sides: from "peer" to
// "target" (both this machine, in two directories), streamed through
// kmsctl's memory; what lands has the source's content and the asked mode,
// a second run changes nothing. It logs the copy's time and rate (a
// figure, not asserted).
func TestCopyFromHostOverSSH(t *testing.T) {
	eng, _, srv := sshHostWith(t, sshtest.SudoAllow)
	src, dst := t.TempDir(), t.TempDir()
	data := make([]byte, 10<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	if err := os.WriteFile(src+"/minkms", data, 0o755); err != nil {
		t.Fatal(err)
	}
	yes := true
	play := tasks.Play{Name: "from a peer", Hosts: []tasks.Host{{Name: "target"}}, Tasks: []tasks.Task{
		{Name: "binary", Module: "copy", Become: &yes, Register: "r",
			Args: map[string]any{"src": src + "/minkms", "from_host": "peer", "dest": dst + "/minkms", "mode": "0750"}},
	}}
	start := time.Now()
	recap, err := eng.Run(context.Background(), []tasks.Play{play})
	took := time.Since(start)
	if err != nil || recap["target"].Changed != 1 {
		t.Fatalf("copy from peer: %+v, %v", recap["target"], err)
	}
	t.Logf("copy from_host of %d MiB over SSH with sudo on both sides: %s (%.1f MiB/s)", len(data)>>20, took.Round(time.Millisecond), float64(len(data)>>20)/took.Seconds())
	got, err := os.ReadFile(dst + "/minkms")
	fi, _ := os.Stat(dst + "/minkms")
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) || fi.Mode().Perm() != 0o750 {
		t.Fatalf("landed %d bytes, mode %v, %v", len(got), fi.Mode(), err)
	}
	if recap, err := eng.Run(context.Background(), []tasks.Play{play}); err != nil || recap["target"].Changed != 0 {
		t.Fatalf("second run: %+v, %v", recap["target"], err)
	}
	sawCat := false
	for _, c := range srv.Commands() {
		sawCat = sawCat || strings.Contains(c, "cat -- "+src+"/minkms")
	}
	if !sawCat {
		t.Errorf("the peer's file was not read as the become user: %q", srv.Commands())
	}
}
