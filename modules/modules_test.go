package modules

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/tasks"
)

func plan(t *testing.T, f *fake.Conn, m tasks.Module, args map[string]any) (tasks.Result, error) {
	t.Helper()
	return m.Plan(context.Background(), testEnv(f, args))
}

func apply(t *testing.T, f *fake.Conn, m tasks.Module, args map[string]any) (tasks.Result, error) {
	t.Helper()
	return m.Apply(context.Background(), testEnv(f, args))
}

// cycle checks the contract every module keeps: Plan changes nothing and
// predicts Apply's changed verdict; a second Apply (and Plan) is ok.
func cycle(t *testing.T, f *fake.Conn, m tasks.Module, args map[string]any) tasks.Result {
	t.Helper()
	before := f.Snapshot()
	p, err := plan(t, f, m, args)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if after := f.Snapshot(); after != before {
		t.Fatalf("Plan changed the host:\n%s---\n%s", before, after)
	}
	r, err := apply(t, f, m, args)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if r.Failed {
		t.Fatalf("Apply failed: %s", r.Msg)
	}
	if p.Changed != r.Changed {
		t.Fatalf("Plan said changed=%v (%s), Apply changed=%v (%s)", p.Changed, p.Msg, r.Changed, r.Msg)
	}
	mid := f.Snapshot()
	r2, err := apply(t, f, m, args)
	if err != nil || r2.Changed || r2.Failed {
		t.Fatalf("second Apply: %+v, %v; want ok", r2, err)
	}
	if f.Snapshot() != mid {
		t.Fatal("second Apply changed the host")
	}
	p2, err := plan(t, f, m, args)
	if err != nil || p2.Changed {
		t.Fatalf("Plan after Apply: %+v, %v; want no change", p2, err)
	}
	return r
}

func TestCommandQuotesArgvAndUsesStdin(t *testing.T) {
	f := fake.New(t, "h")
	want := `cd '/opt/my dir' && printf '%s\n' 'a b' '$HOME' '|' x`
	f.Expect(want)
	r, err := apply(t, f, commandModule{}, map[string]any{"cmd": `printf '%s\n' "a b" $HOME | x`, "stdin": sentinel, "chdir": "/opt/my dir"})
	if err != nil || !r.Changed || r.Failed {
		t.Fatalf("%+v %v", r, err)
	}
	calls := callList(f)
	if calls[len(calls)-1] != want {
		t.Fatalf("ran %q, want %q", calls[len(calls)-1], want)
	}
	if lastStdin(f) != sentinel || strings.Contains(strings.Join(calls, "\n"), sentinel) {
		t.Fatal("stdin not passed, or secret in a command line")
	}
	if _, err := apply(t, f, commandModule{}, map[string]any{"argv": []any{"rm", "-rf", "/tmp/a b;reboot"}}); err != nil {
		t.Fatal(err)
	}
	if got := callList(f)[len(callList(f))-1]; got != `rm -rf '/tmp/a b;reboot'` {
		t.Fatalf("argv ran as %q", got)
	}
}

func TestCommandFailureAndCreatesRemoves(t *testing.T) {
	f := fake.New(t, "h")
	f.Expect("fail").Stdout("out\n").Stderr("bad thing\n").Exit(4)
	r, err := apply(t, f, commandModule{}, map[string]any{"cmd": "fail"})
	if err != nil || !r.Failed || r.RC != 4 || r.Stdout != "out\n" || !strings.Contains(r.Msg, "bad thing") {
		t.Fatalf("%+v %v", r, err)
	}
	f.Expect("lost").Fail(errors.New("session closed"))
	if _, err := apply(t, f, commandModule{}, map[string]any{"cmd": "lost"}); err == nil {
		t.Fatal("a command with unknown outcome did not error")
	}

	// creates: runs once, then ok; the plan knows.
	f.Expect("make-thing").Do(func([]byte) (string, string, int) {
		f.SetFile("/opt/thing", "", 0o644)
		return "", "", 0
	})
	cycle(t, f, commandModule{}, map[string]any{"cmd": "make-thing", "creates": "/opt/thing"})
	// removes: runs while the path exists.
	f.Expect("drop-thing").Do(func([]byte) (string, string, int) {
		f.DeleteFile("/opt/thing")
		return "", "", 0
	})
	cycle(t, f, shellModule{}, map[string]any{"cmd": "drop-thing", "removes": "/opt/thing"})

	p, err := plan(t, f, commandModule{}, map[string]any{"cmd": "anything"})
	if err != nil || !p.Skipped {
		t.Fatalf("check mode without creates/removes: %+v %v, want skipped", p, err)
	}
}

func TestShellKeepsShellSyntax(t *testing.T) {
	f := fake.New(t, "h")
	f.Expect("ls /x | wc -l > /tmp/n")
	if _, err := apply(t, f, shellModule{}, map[string]any{"cmd": "ls /x | wc -l > /tmp/n"}); err != nil {
		t.Fatal(err)
	}
	if got := callList(f); got[len(got)-1] != "ls /x | wc -l > /tmp/n" {
		t.Fatalf("ran %q", got)
	}
}

func TestServiceStartEnableStopDisable(t *testing.T) {
	f := fake.New(t, "h")
	f.SetUnit("minkms.service", fake.Unit{})
	r := cycle(t, f, serviceModule{}, map[string]any{"name": "minkms.service", "state": "started", "enabled": true})
	if r.Data["state"] != "started" || r.Data["enabled"] != true || !strings.Contains(r.Msg, "enable, start") {
		t.Fatalf("%+v", r)
	}
	if u, _ := f.Unit("minkms.service"); !u.Active || !u.Enabled {
		t.Fatalf("unit %+v", u)
	}
	r = cycle(t, f, serviceModule{}, map[string]any{"name": "minkms.service", "state": "stopped", "enabled": "no"})
	if r.Data["state"] != "stopped" || r.Data["enabled"] != false {
		t.Fatalf("%+v", r)
	}
	calls := strings.Join(callList(f), "\n")
	for _, c := range []string{"systemctl enable -- minkms.service", "systemctl start -- minkms.service", "systemctl stop -- minkms.service", "systemctl disable -- minkms.service"} {
		if strings.Count(calls, c) != 1 {
			t.Errorf("%q ran %d times", c, strings.Count(calls, c))
		}
	}
}

func TestServiceRestartReloadAndFailures(t *testing.T) {
	f := fake.New(t, "h")
	f.SetUnit("a.service", fake.Unit{Active: true})
	for _, st := range []string{"restarted", "reloaded"} {
		p, err := plan(t, f, serviceModule{}, map[string]any{"name": "a.service", "state": st})
		if err != nil || !p.Changed {
			t.Fatalf("%s plan: %+v %v", st, p, err)
		}
		r, err := apply(t, f, serviceModule{}, map[string]any{"name": "a.service", "state": st})
		if err != nil || !r.Changed || r.Failed {
			t.Fatalf("%s: %+v %v", st, r, err)
		}
	}
	if _, err := apply(t, f, serviceModule{}, map[string]any{"name": "ghost.service", "state": "started"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing unit: %v", err)
	}
	for _, args := range []map[string]any{{"enabled": true}, {"state": "stopped", "enabled": true}} {
		args["name"] = "ghost.service"
		if _, err := plan(t, f, serviceModule{}, args); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("enable a missing unit %v: %v", args, err)
		}
	}
	// A missing unit is stopped and not enabled: fencing a new machine that has no unit yet,
	// or only reading its state, is no error and runs nothing.
	for _, args := range []map[string]any{{"state": "stopped", "enabled": false}, {"state": "stopped"}, {}} {
		args["name"] = "ghost.service"
		before := len(f.Commands())
		r, err := apply(t, f, serviceModule{}, args)
		if err != nil || r.Changed || r.Failed || r.Data["load_state"] != "not-found" || r.Data["active_state"] != "inactive" || !strings.Contains(r.Msg, "not installed") {
			t.Errorf("%v on a missing unit: %+v, %v", args, r, err)
		}
		for _, c := range f.Commands()[before:] {
			if !strings.HasPrefix(c, "systemctl show ") {
				t.Errorf("%v on a missing unit ran %q", args, c)
			}
		}
	}
	f.SetUnit("bad.service", fake.Unit{FailStart: true})
	if _, err := apply(t, f, serviceModule{}, map[string]any{"name": "bad.service", "state": "started"}); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("failing start: %v", err)
	}
	f.SetUnit("m.service", fake.Unit{Masked: true})
	if _, err := plan(t, f, serviceModule{}, map[string]any{"name": "m.service", "enabled": true}); err == nil || !strings.Contains(err.Error(), "masked") {
		t.Fatalf("masked: %v", err)
	}
	if _, err := plan(t, f, serviceModule{}, map[string]any{"name": "a.service", "state": "running"}); err == nil {
		t.Fatal("bad state accepted")
	}
}

func TestFileDirectoryModeOwner(t *testing.T) {
	f := fake.New(t, "h")
	args := map[string]any{"path": "/mnt/minio-kms/data", "state": "directory", "mode": "0750", "owner": "minkms-user", "group": "minkms-user"}
	cycle(t, f, fileModule{}, args)
	d, ok := f.File("/mnt/minio-kms/data")
	if !ok || !d.Dir || d.Mode != 0o750 || d.Owner != "minkms-user" || d.Group != "minkms-user" {
		t.Fatalf("dir %+v", d)
	}
	// Only the mode differs: only chmod runs.
	args["mode"] = 0o700 // as YAML decodes an unquoted 0700
	n := len(callList(f))
	cycle(t, f, fileModule{}, args)
	var changes []string
	for _, c := range callList(f)[n:] {
		if strings.HasPrefix(c, "ch") || strings.HasPrefix(c, "mkdir") {
			changes = append(changes, c)
		}
	}
	if !slices.Equal(changes, []string{"chmod 0700 -- /mnt/minio-kms/data"}) {
		t.Fatalf("changes %v", changes)
	}
}

func TestFileRecurseTouchAbsent(t *testing.T) {
	f := fake.New(t, "h")
	f.SetFile("/mnt/minio-kms/a/b", "x", 0o600)
	cycle(t, f, fileModule{}, map[string]any{"path": "/mnt/minio-kms", "state": "directory", "owner": "kms", "recurse": true})
	if b, _ := f.File("/mnt/minio-kms/a/b"); b.Owner != "kms" {
		t.Fatalf("recursive owner not applied: %+v", b)
	}
	cycle(t, f, fileModule{}, map[string]any{"path": "/mnt/minio-kms/.ready", "state": "touch", "mode": "0644"})
	cycle(t, f, fileModule{}, map[string]any{"path": "/mnt/minio-kms/.ready", "mode": "0600"})
	if r, _ := f.File("/mnt/minio-kms/.ready"); r.Mode != 0o600 {
		t.Fatalf("mode %o", r.Mode)
	}
	cycle(t, f, fileModule{}, map[string]any{"path": "/mnt/minio-kms", "state": "absent"})
	if _, ok := f.File("/mnt/minio-kms/a/b"); ok {
		t.Fatal("tree not removed")
	}
	if _, ok := f.File("/mnt"); !ok {
		t.Fatal("parent removed")
	}
	if _, err := apply(t, f, fileModule{}, map[string]any{"path": "/mnt/nothere"}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("state file on a missing path: %v", err)
	}
	f.SetFile("/opt/f", "", 0o644)
	if _, err := apply(t, f, fileModule{}, map[string]any{"path": "/opt/f", "state": "directory"}); err == nil {
		t.Fatal("directory over a file accepted")
	}
}

func TestFileRefusesDangerousPaths(t *testing.T) {
	f := fake.New(t, "h")
	f.MkdirAll("/var/lib")
	bad := []map[string]any{
		{"path": "/", "state": "absent"},
		{"path": "", "state": "absent"},
		{"path": "   ", "state": "directory"},
		{"path": "mnt/data", "state": "absent"},
		{"path": "/etc", "state": "absent"},
		{"path": "/usr/", "state": "absent"},
		{"path": "//var//", "state": "absent"},
		{"path": "/var/lib", "state": "directory", "owner": "x", "recurse": true},
		{"path": "/mnt/../etc", "state": "absent"},
		{"path": "/mnt/*", "state": "absent"},
		{"path": "/home", "state": "absent"},
		{"path": "/lib64", "state": "absent"},
		{"path": "/root", "state": "absent"},
		{"path": "/boot", "state": "absent"},
	}
	before := f.Snapshot()
	for _, args := range bad {
		if _, err := plan(t, f, fileModule{}, args); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("plan %v: %v, want a refusal", args, err)
		}
		if _, err := apply(t, f, fileModule{}, args); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("apply %v: %v, want a refusal", args, err)
		}
	}
	if f.Snapshot() != before {
		t.Fatal("a refused operation changed the host")
	}
	for _, c := range callList(f) {
		if strings.HasPrefix(c, "rm") || strings.HasPrefix(c, "chown") {
			t.Fatalf("ran %q", c)
		}
	}
}

func TestCopyContentModeOwnerIdempotent(t *testing.T) {
	f := fake.New(t, "h")
	args := map[string]any{"content": "port: 7373\n", "dest": "/etc/minkms/config.yaml", "mode": "0640", "owner": "minkms-user", "group": "minkms"}
	r := cycle(t, f, copyModule{}, args)
	got, _ := f.File("/etc/minkms/config.yaml")
	if got.Content != "port: 7373\n" || got.Mode != 0o640 || got.Owner != "minkms-user" || got.Group != "minkms" {
		t.Fatalf("file %+v", got)
	}
	if r.Data["checksum"] != sha256Hex([]byte("port: 7373\n")) {
		t.Fatalf("checksum %v", r.Data["checksum"])
	}
	// Same content, new mode: chmod, no upload.
	args["mode"] = "0600"
	n := len(callList(f))
	cycle(t, f, copyModule{}, args)
	for _, c := range callList(f)[n:] {
		if strings.HasPrefix(c, "upload") {
			t.Fatal("uploaded unchanged content to fix a mode")
		}
	}
	// New content keeps the existing mode when none is given.
	delete(args, "mode")
	args["content"] = "port: 7374\n"
	cycle(t, f, copyModule{}, args)
	if got, _ := f.File("/etc/minkms/config.yaml"); got.Mode != 0o600 || got.Content != "port: 7374\n" {
		t.Fatalf("file %+v", got)
	}
}

// changingFS serves one file whose content changes after its first open:
// a local file rewritten between being hashed and being uploaded.
type changingFS struct {
	opens      int
	first, now []byte
}

func (c *changingFS) Open(name string) (fs.File, error) {
	data := c.now
	if c.opens++; c.opens == 1 {
		data = c.first
	}
	return fstest.MapFS{name: {Data: data}}.Open(name)
}

// Stat describes the file without opening it (so without counting an open).
func (c *changingFS) Stat(name string) (fs.FileInfo, error) {
	return fstest.MapFS{name: {Data: c.first}}.Stat(name)
}

// A copy uploads with the sha256 it planned with as the content's known
// sum, so a local file that changed after it was hashed fails the upload
// and the host keeps its file.
func TestCopyUploadsWithThePlannedSum(t *testing.T) {
	f := fake.New(t, "h")
	f.SetFile("/usr/local/bin/minkms", "old", 0o755)
	e := testEnv(f, map[string]any{"src": "minkms", "dest": "/usr/local/bin/minkms", "mode": "0755"})
	e.Files = &changingFS{first: []byte("v1 binary"), now: []byte("v2 binary")}
	before := f.Snapshot()
	_, err := copyModule{}.Apply(context.Background(), e)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("copy of a file that changed after it was hashed = %v; want a checksum mismatch", err)
	}
	if after := f.Snapshot(); after != before {
		t.Errorf("the host's files changed:\n%s---\n%s", before, after)
	}
}

func TestCopySrcFromFilesAndErrors(t *testing.T) {
	f := fake.New(t, "h")
	files := fstest.MapFS{"files/minkms": {Data: []byte("\x7fELF binary")}}
	env := func(args map[string]any) *tasks.Env { e := testEnv(f, args); e.Files = files; return e }
	args := map[string]any{"src": "files/minkms", "dest": "/usr/local/bin/", "mode": "0755"}
	p, err := copyModule{}.Plan(context.Background(), env(args))
	if err != nil || !p.Changed {
		t.Fatalf("plan %+v %v", p, err)
	}
	r, err := copyModule{}.Apply(context.Background(), env(args))
	if err != nil || !r.Changed || r.Data["dest"] != "/usr/local/bin/minkms" {
		t.Fatalf("apply %+v %v", r, err)
	}
	if got, ok := f.File("/usr/local/bin/minkms"); !ok || got.Content != "\x7fELF binary" || got.Mode != 0o755 {
		t.Fatalf("file %+v", got)
	}
	if r, err := (copyModule{}).Apply(context.Background(), env(args)); err != nil || r.Changed {
		t.Fatalf("second apply %+v %v", r, err)
	}
	// Absolute src from the local disk.
	local := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(local, []byte("CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	cycle(t, f, copyModule{}, map[string]any{"src": local, "dest": "/etc/minkms/cert.pem"})

	if _, err := apply(t, f, copyModule{}, map[string]any{"content": "x", "dest": "/etc/minkms"}); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("dest directory: %v", err)
	}
	if _, err := apply(t, f, copyModule{}, map[string]any{"content": "x", "dest": "etc/x"}); err == nil {
		t.Fatal("relative dest accepted")
	}
	if _, err := apply(t, f, copyModule{}, map[string]any{"src": "/nonexistent/file", "dest": "/etc/x"}); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing src: %v", err)
	}
	if _, err := apply(t, f, copyModule{}, map[string]any{"content": "x", "dest": "/nodir/x"}); err == nil {
		t.Fatal("upload into a missing directory succeeded")
	}
}

func TestCopySecretDefaultsTo0600AndNoDiff(t *testing.T) {
	f := fake.New(t, "h")
	e := testEnv(f, map[string]any{"content": sentinel, "dest": "/etc/default/minkms", "secret": true})
	e.Diff = true
	r, err := copyModule{}.Apply(context.Background(), e)
	if err != nil || !r.Changed || r.Diff != "" || strings.Contains(r.Msg, sentinel) {
		t.Fatalf("%+v %v", r, err)
	}
	if got, _ := f.File("/etc/default/minkms"); got.Mode != 0o600 {
		t.Fatalf("mode %o", got.Mode)
	}
	e = testEnv(f, map[string]any{"content": "a\nb\n", "dest": "/etc/plain"})
	e.Diff = true
	if r, _ := (copyModule{}).Plan(context.Background(), e); !strings.Contains(r.Diff, "--- /dev/null") || !strings.Contains(r.Diff, "+b") {
		t.Fatalf("diff %q", r.Diff)
	}
}

func TestTemplate(t *testing.T) {
	f := fake.New(t, "h")
	files := fstest.MapFS{"config.yaml.j2": {Data: []byte("address: {{ kms_address }}:{{ port | default:7373 }}\n{% for n in nodes %}- {{ n }}\n{% endfor %}<&>\n")}}
	mk := func() *tasks.Env {
		e := testEnv(f, map[string]any{"src": "config.yaml.j2", "dest": "/etc/minkms/config.yaml"})
		e.Files = files
		e.Vars = map[string]any{"kms_address": "10.0.0.1", "nodes": []any{"kms1", "kms2"}}
		return e
	}
	p, err := templateModule{}.Plan(context.Background(), mk())
	if err != nil || !p.Changed {
		t.Fatalf("plan %+v %v", p, err)
	}
	if _, err := (templateModule{}).Apply(context.Background(), mk()); err != nil {
		t.Fatal(err)
	}
	got, _ := f.File("/etc/minkms/config.yaml")
	if want := "address: 10.0.0.1:7373\n- kms1\n- kms2\n<&>\n"; got.Content != want {
		t.Fatalf("rendered %q, want %q", got.Content, want)
	}
	if r, err := (templateModule{}).Apply(context.Background(), mk()); err != nil || r.Changed {
		t.Fatalf("second apply %+v %v", r, err)
	}
	e := mk()
	e.Args["src"] = "missing.j2"
	if _, err := (templateModule{}).Plan(context.Background(), e); err == nil {
		t.Fatal("missing template accepted")
	}
	files["bad.j2"] = &fstest.MapFile{Data: []byte("{% if %}")}
	e = mk()
	e.Args["src"] = "bad.j2"
	if _, err := (templateModule{}).Plan(context.Background(), e); err == nil || !strings.Contains(err.Error(), "bad.j2") {
		t.Fatalf("bad template: %v", err)
	}
}

func TestFetch(t *testing.T) {
	f := fake.New(t, "kms1")
	f.SetFile("/mnt/minio-kms/backup.db", "DB", 0o600)
	dir := t.TempDir()
	args := map[string]any{"src": "/mnt/minio-kms/backup.db", "dest": dir}
	cycle(t, f, fetchModule{}, args)
	local := filepath.Join(dir, "kms1", "mnt", "minio-kms", "backup.db")
	b, err := os.ReadFile(local)
	if err != nil || string(b) != "DB" {
		t.Fatalf("fetched %q %v", b, err)
	}
	if fi, _ := os.Stat(local); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	f.SetFile("/mnt/minio-kms/backup.db", "DB2", 0o600)
	r := cycle(t, f, fetchModule{}, map[string]any{"src": "/mnt/minio-kms/backup.db", "dest": dir + "/", "flat": true})
	if r.Data["dest"] != filepath.Join(dir, "backup.db") {
		t.Fatalf("flat dest %v", r.Data["dest"])
	}
	if _, err := apply(t, f, fetchModule{}, map[string]any{"src": "/nope", "dest": dir}); err == nil {
		t.Fatal("missing remote file accepted")
	}
}

func TestWaitForPathPortURL(t *testing.T) {
	f := fake.New(t, "h")
	f.SetFile("/run/minkms.ready", "", 0o644)
	r, err := apply(t, f, waitForModule{}, map[string]any{"path": "/run/minkms.ready"})
	if err != nil || r.Failed || r.Changed {
		t.Fatalf("path: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"path": "/run/never", "timeout": "30ms", "sleep": "5ms"})
	var te *tasks.TimeoutError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "timed out after 30ms waiting for path /run/never") {
		t.Fatalf("missing path: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"path": "/run/never", "state": "absent"})
	if err != nil || r.Failed {
		t.Fatalf("absent: %+v %v", r, err)
	}

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
	f.ForwardPort("127.0.0.1:7373", ln.Addr().String())
	r, err = apply(t, f, waitForModule{}, map[string]any{"port": 7373})
	if err != nil || r.Failed {
		t.Fatalf("port: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"port": 7374, "state": "stopped"})
	if err != nil || r.Failed {
		t.Fatalf("closed port: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"port": "7374", "timeout": 0.03, "sleep": "5ms"})
	if !errors.As(err, &te) {
		t.Fatalf("closed port started: %+v %v", r, err)
	}

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/ready" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.ForwardPort("kms1:7373", srv.Listener.Addr().String())
	r, err = apply(t, f, waitForModule{}, map[string]any{"url": "https://kms1:7373/v1/ready", "validate_certs": false})
	if err != nil || r.Failed {
		t.Fatalf("url: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"url": "https://kms1:7373/v1/status", "validate_certs": false, "timeout": "30ms", "sleep": "5ms"})
	if !errors.As(err, &te) {
		t.Fatalf("503 url: %+v %v", r, err)
	}
	// Certificates are verified by default.
	r, err = apply(t, f, waitForModule{}, map[string]any{"url": "https://kms1:7373/v1/ready", "timeout": "30ms", "sleep": "5ms"})
	if !errors.As(err, &te) {
		t.Fatalf("unverified TLS accepted: %+v %v", r, err)
	}

	// Check mode probes once and does not wait.
	p, err := plan(t, f, waitForModule{}, map[string]any{"path": "/run/never", "timeout": 3600})
	if err != nil || p.Changed || p.Failed || !strings.Contains(p.Msg, "not yet met") {
		t.Fatalf("plan %+v %v", p, err)
	}
}

func TestWaitForCancel(t *testing.T) {
	f := fake.New(t, "h")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := waitForModule{}.Apply(ctx, testEnv(f, map[string]any{"path": "/never", "sleep": "1h"}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestPing(t *testing.T) {
	f := fake.New(t, "h")
	r, err := apply(t, f, pingModule{}, nil)
	if err != nil || r.Msg != "pong" || r.Changed {
		t.Fatalf("%+v %v", r, err)
	}
	f.SetUnreachable(true)
	if _, err := apply(t, f, pingModule{}, nil); !tasks.IsUnreachable(err) {
		t.Fatalf("err %v, want unreachable", err)
	}
}

// TestModeString: a mode with special bits is written back as the octal
// string it was given.
func TestModeString(t *testing.T) {
	m, _, err := tasks.Args{"m3": "4755"}.Mode("m3")
	if err != nil || modeString(m) != "4755" {
		t.Errorf("m3 %v %q %v", m, modeString(m), err)
	}
}

// TestCopyDirectoryVerifyFailureCleansUp: when the unpacked tree does not
// match the local sums, the temporary directory is removed and nothing is
// moved into place.
func TestCopyDirectoryVerifyFailureCleansUp(t *testing.T) {
	f := fake.New(t, "h")
	f.ExpectMatch(`^if \[ -d /etc/minkms/certs \]; then `) // the listing: no such directory
	f.ExpectMatch(`^set -e; mkdir -p -- /etc/minkms;`).Stdout("/etc/minkms/.certs.kmsctl-abc123\n")
	f.Expect("cd /etc/minkms/.certs.kmsctl-abc123 && find . -type f -exec sha256sum -- {} +").Stdout(strings.Repeat("0", 64) + "  ./ca.pem\n")
	files := fstest.MapFS{"certs/ca.pem": {Data: []byte("CA")}}
	e := testEnv(f, map[string]any{"src": "certs", "dest": "/etc/minkms"})
	e.Files = files
	p, err := copyModule{}.Plan(context.Background(), e)
	if err != nil || !p.Changed || p.Data["dest"] != "/etc/minkms/certs" {
		t.Fatalf("plan %+v %v", p, err)
	}
	_, err = copyModule{}.Apply(context.Background(), e)
	if err == nil || !strings.Contains(err.Error(), "verify /etc/minkms/certs: ca.pem") {
		t.Fatalf("err = %v", err)
	}
	calls := callList(f)
	if !slices.Contains(calls, "rm -rf -- /etc/minkms/.certs.kmsctl-abc123") {
		t.Fatalf("temporary directory not removed: %q", calls)
	}
	for _, c := range calls {
		if strings.HasPrefix(c, "mv ") {
			t.Fatalf("moved an unverified tree into place: %q", c)
		}
	}
}

func TestStat(t *testing.T) {
	f := fake.New(t, "h")
	f.SetFile("/usr/local/bin/minkms", "binary", 0o755)
	r := cycle(t, f, statModule{}, map[string]any{"path": "/usr/local/bin/minkms", "get_checksum": true})
	st := r.Data["stat"].(map[string]any)
	if st["exists"] != true || st["isreg"] != true || st["mode"] != "0755" || st["size"] != int64(6) || st["checksum"] != sha256Hex([]byte("binary")) {
		t.Fatalf("stat %v", st)
	}
	r, err := apply(t, f, statModule{}, map[string]any{"path": "/nope"})
	if err != nil || r.Data["stat"].(map[string]any)["exists"] != false || r.Changed {
		t.Fatalf("missing: %+v %v", r, err)
	}
	if _, err := apply(t, f, statModule{}, map[string]any{"path": "/x", "checksum_algorithm": "sha1"}); err == nil {
		t.Fatal("sha1 accepted")
	}
	if r, err := apply(t, f, statModule{}, map[string]any{"path": "/etc"}); err != nil || r.Data["stat"].(map[string]any)["isdir"] != true {
		t.Fatalf("dir: %+v %v", r, err)
	}
}

func TestDebug(t *testing.T) {
	f := fake.New(t, "h")
	e := testEnv(f, map[string]any{"var": "r.rc"})
	e.Vars = map[string]any{"r": map[string]any{"rc": 3}}
	r, err := debugModule{}.Apply(context.Background(), e)
	if err != nil || r.Msg != "r.rc = 3" || r.Changed {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = apply(t, f, debugModule{}, map[string]any{"msg": []any{"a", 1}})
	if err != nil || r.Msg != `["a",1]` {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestCopyValidate(t *testing.T) {
	f := fake.New(t, "h")
	f.SetFile("/etc/minkms/config.yaml", "good: 1\n", 0o600)
	var checked string
	f.ExpectMatch(`^minkms check `).DoCommand(func(cmd string, _ []byte) (string, string, int) {
		checked = strings.TrimPrefix(cmd, "minkms check ")
		ff, ok := f.File(checked)
		if !ok || strings.Contains(ff.Content, "bad") {
			return "", "line 1: bad key", 2
		}
		return "", "", 0
	})
	args := map[string]any{"content": "bad: 1\n", "dest": "/etc/minkms/config.yaml", "validate": "minkms check %s"}
	r, err := apply(t, f, copyModule{}, args)
	if err != nil || !r.Failed || r.Changed || !strings.Contains(r.Msg, "bad key") {
		t.Fatalf("invalid config: %+v %v", r, err)
	}
	if got, _ := f.File("/etc/minkms/config.yaml"); got.Content != "good: 1\n" {
		t.Fatalf("dest changed to %q", got.Content)
	}
	if checked != "/etc/minkms/.config.yaml.kmsctl-tmp-validate" {
		t.Fatalf("validated %q", checked)
	}
	if _, ok := f.File(checked); ok {
		t.Fatal("temporary file left behind")
	}
	args["content"] = "better: 2\n"
	cycle(t, f, copyModule{}, args)
	if got, _ := f.File("/etc/minkms/config.yaml"); got.Content != "better: 2\n" || got.Mode != 0o600 {
		t.Fatalf("dest %+v", got)
	}
	if _, ok := f.File(checked); ok {
		t.Fatal("temporary file left behind")
	}
	if _, err := apply(t, f, copyModule{}, map[string]any{"content": "x", "dest": "/etc/x", "validate": "true"}); err == nil {
		t.Fatalf("validate without a %%s placeholder accepted")
	}
}

// A trailing slash makes rm, chown -R and chmod follow a symlink at the
// path (rm -rf LINK/ empties the directory LINK points to), so file runs
// its commands on the cleaned path it checked, never on the raw one.
func TestFileCommandsUseTheCheckedCleanPath(t *testing.T) {
	f := fake.New(t, "h")
	f.MkdirAll("/mnt/minio-kms/data")
	for _, args := range []map[string]any{
		{"path": "/mnt/minio-kms/data/", "state": "directory", "owner": "kms", "recurse": true, "mode": "0700"},
		{"path": "/mnt//minio-kms/./data/", "state": "absent"},
	} {
		if _, err := apply(t, f, fileModule{}, args); err != nil {
			t.Fatalf("apply %v: %v", args, err)
		}
	}
	var mut []string
	for _, c := range callList(f) {
		if strings.HasPrefix(c, "rm") || strings.HasPrefix(c, "ch") {
			mut = append(mut, c)
			if !strings.HasSuffix(c, " -- /mnt/minio-kms/data") {
				t.Errorf("ran %q, want it on the cleaned path /mnt/minio-kms/data", c)
			}
		}
	}
	if len(mut) < 2 {
		t.Fatalf("mutating commands %v, want chmod/chown and rm", mut)
	}
}

// A validated copy interrupted after the upload (the connection dropped
// while validating, so the temporary file could not be removed) leaves no
// temporary copy of that content behind after the next run.
func TestCopyValidateInterruptedLeavesNoTempAfterNextRun(t *testing.T) {
	f := fake.New(t, "h")
	f.SetFile("/etc/minkms/config.yaml", "good: 1\n", 0o600)
	f.ExpectMatch(`^minkms check `).Times(1).DoContext(func(context.Context, string, []byte) (string, string, int, error) {
		f.SetUnreachable(true)
		return "", "", 0, &fake.UnreachableError{Host: "h", Op: "run command"}
	})
	args := map[string]any{"content": "first: 1\n", "dest": "/etc/minkms/config.yaml", "validate": "minkms check %s", "secret": true}
	if _, err := apply(t, f, copyModule{}, args); err == nil {
		t.Fatal("copy over a dropped connection succeeded")
	}
	f.SetUnreachable(false)
	f.ExpectMatch(`^minkms check `)
	args["content"] = "second: 2\n"
	if _, err := apply(t, f, copyModule{}, args); err != nil {
		t.Fatal(err)
	}
	for p, ff := range f.Files() {
		if ff.Content == "first: 1\n" {
			t.Errorf("temporary copy %s of the interrupted run left behind", p)
		}
	}
}

// A directory copy with owner or group changes ownership recursively
// (chown -R on dest), so it refuses system directories like file does.
func TestCopyDirectoryOwnerRefusesSystemDirectories(t *testing.T) {
	for _, dest := range []string{"/etc", "/etc/", "//usr/./local/"} {
		f := fake.New(t, "h")
		f.MkdirAll("/usr/local")
		e := testEnv(f, map[string]any{"src": "certs/", "dest": dest, "owner": "minkms"})
		e.Files = fstest.MapFS{"certs/ca.pem": {Data: []byte("CA")}}
		if _, err := (copyModule{}).Plan(context.Background(), e); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("plan dest %s: %v, want a refusal", dest, err)
		}
		if _, err := (copyModule{}).Apply(context.Background(), e); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("apply dest %s: %v, want a refusal", dest, err)
		}
		for _, c := range callList(f) {
			if strings.Contains(c, "chown") || strings.HasPrefix(c, "upload") {
				t.Errorf("dest %s: ran %q", dest, c)
			}
		}
	}
	// Without owner or group nothing changes recursively: allowed.
	f := fake.New(t, "h")
	f.ExpectMatch(`^if \[ -d /etc/minkms \]; then `).Stdout("d .\n") // the listing: empty
	e := testEnv(f, map[string]any{"src": "certs/", "dest": "/etc/minkms/"})
	e.Files = fstest.MapFS{"certs/ca.pem": {Data: []byte("CA")}}
	if _, err := (copyModule{}).Plan(context.Background(), e); err != nil && strings.Contains(err.Error(), "refusing") {
		t.Errorf("plan without owner: %v", err)
	}
}
