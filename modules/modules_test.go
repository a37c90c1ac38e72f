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

	"github.com/kmsctl/kmsctl/tasks"
)

func plan(t *testing.T, f *fakeConn, m tasks.Module, args map[string]any) (tasks.Result, error) {
	t.Helper()
	return m.Plan(context.Background(), testEnv(f, args))
}

func apply(t *testing.T, f *fakeConn, m tasks.Module, args map[string]any) (tasks.Result, error) {
	t.Helper()
	return m.Apply(context.Background(), testEnv(f, args))
}

// cycle checks the contract every module keeps: Plan changes nothing and
// predicts Apply's changed verdict; a second Apply (and Plan) is ok.
func cycle(t *testing.T, f *fakeConn, m tasks.Module, args map[string]any) tasks.Result {
	t.Helper()
	before := f.snapshot()
	p, err := plan(t, f, m, args)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if after := f.snapshot(); after != before {
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
	mid := f.snapshot()
	r2, err := apply(t, f, m, args)
	if err != nil || r2.Changed || r2.Failed {
		t.Fatalf("second Apply: %+v, %v; want ok", r2, err)
	}
	if f.snapshot() != mid {
		t.Fatal("second Apply changed the host")
	}
	p2, err := plan(t, f, m, args)
	if err != nil || p2.Changed {
		t.Fatalf("Plan after Apply: %+v, %v; want no change", p2, err)
	}
	return r
}

func TestCommandQuotesArgvAndUsesStdin(t *testing.T) {
	f := newFake(t, "h")
	r, err := apply(t, f, commandModule{}, map[string]any{"cmd": `printf '%s\n' "a b" $HOME | x`, "stdin": sentinel, "chdir": "/opt/my dir"})
	if err != nil || !r.Changed || r.Failed {
		t.Fatalf("%+v %v", r, err)
	}
	calls := f.callList()
	want := `cd '/opt/my dir' && printf '%s\n' 'a b' '$HOME' '|' x`
	if calls[len(calls)-1] != want {
		t.Fatalf("ran %q, want %q", calls[len(calls)-1], want)
	}
	if f.stdins[len(f.stdins)-1] != sentinel || strings.Contains(strings.Join(calls, "\n"), sentinel) {
		t.Fatal("stdin not passed, or secret in a command line")
	}
	if _, err := apply(t, f, commandModule{}, map[string]any{"argv": []any{"rm", "-rf", "/tmp/a b;reboot"}}); err != nil {
		t.Fatal(err)
	}
	if got := f.callList()[len(f.callList())-1]; got != `rm -rf '/tmp/a b;reboot'` {
		t.Fatalf("argv ran as %q", got)
	}
}

func TestCommandFailureAndCreatesRemoves(t *testing.T) {
	f := newFake(t, "h")
	f.on("fail", func(context.Context, string, string) (string, string, int, error) {
		return "out\n", "bad thing\n", 4, nil
	})
	r, err := apply(t, f, commandModule{}, map[string]any{"cmd": "fail"})
	if err != nil || !r.Failed || r.RC != 4 || r.Stdout != "out\n" || !strings.Contains(r.Msg, "bad thing") {
		t.Fatalf("%+v %v", r, err)
	}
	f.on("lost", func(context.Context, string, string) (string, string, int, error) {
		return "", "", 0, errors.New("session closed")
	})
	if _, err := apply(t, f, commandModule{}, map[string]any{"cmd": "lost"}); err == nil {
		t.Fatal("a command with unknown outcome did not error")
	}

	// creates: runs once, then ok; the plan knows.
	f.on("make-thing", func(context.Context, string, string) (string, string, int, error) {
		f.putFile("/opt/thing", "", 0o644)
		return "", "", 0, nil
	})
	cycle(t, f, commandModule{}, map[string]any{"cmd": "make-thing", "creates": "/opt/thing"})
	// removes: runs while the path exists.
	f.on("drop-thing", func(context.Context, string, string) (string, string, int, error) {
		f.mu.Lock()
		delete(f.files, "/opt/thing")
		f.mu.Unlock()
		return "", "", 0, nil
	})
	cycle(t, f, shellModule{}, map[string]any{"cmd": "drop-thing", "removes": "/opt/thing"})

	p, err := plan(t, f, commandModule{}, map[string]any{"cmd": "anything"})
	if err != nil || !p.Skipped {
		t.Fatalf("check mode without creates/removes: %+v %v, want skipped", p, err)
	}
}

func TestShellKeepsShellSyntax(t *testing.T) {
	f := newFake(t, "h")
	if _, err := apply(t, f, shellModule{}, map[string]any{"cmd": "ls /x | wc -l > /tmp/n"}); err != nil {
		t.Fatal(err)
	}
	if got := f.callList(); got[len(got)-1] != "ls /x | wc -l > /tmp/n" {
		t.Fatalf("ran %q", got)
	}
}

func TestServiceStartEnableStopDisable(t *testing.T) {
	f := newFake(t, "h")
	f.units["minkms.service"] = &fakeUnit{}
	r := cycle(t, f, serviceModule{}, map[string]any{"name": "minkms.service", "state": "started", "enabled": true})
	if r.Data["state"] != "started" || r.Data["enabled"] != true || !strings.Contains(r.Msg, "enable, start") {
		t.Fatalf("%+v", r)
	}
	if u := f.units["minkms.service"]; !u.active || !u.enabled {
		t.Fatalf("unit %+v", u)
	}
	r = cycle(t, f, serviceModule{}, map[string]any{"name": "minkms.service", "state": "stopped", "enabled": "no"})
	if r.Data["state"] != "stopped" || r.Data["enabled"] != false {
		t.Fatalf("%+v", r)
	}
	calls := strings.Join(f.callList(), "\n")
	for _, c := range []string{"systemctl enable -- minkms.service", "systemctl start -- minkms.service", "systemctl stop -- minkms.service", "systemctl disable -- minkms.service"} {
		if strings.Count(calls, c) != 1 {
			t.Errorf("%q ran %d times", c, strings.Count(calls, c))
		}
	}
}

func TestServiceRestartReloadAndFailures(t *testing.T) {
	f := newFake(t, "h")
	f.units["a.service"] = &fakeUnit{active: true}
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
	f.units["bad.service"] = &fakeUnit{failStart: true}
	if _, err := apply(t, f, serviceModule{}, map[string]any{"name": "bad.service", "state": "started"}); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("failing start: %v", err)
	}
	f.units["m.service"] = &fakeUnit{masked: true}
	if _, err := plan(t, f, serviceModule{}, map[string]any{"name": "m.service", "enabled": true}); err == nil || !strings.Contains(err.Error(), "masked") {
		t.Fatalf("masked: %v", err)
	}
	if _, err := plan(t, f, serviceModule{}, map[string]any{"name": "a.service", "state": "running"}); err == nil {
		t.Fatal("bad state accepted")
	}
}

func TestFileDirectoryModeOwner(t *testing.T) {
	f := newFake(t, "h")
	args := map[string]any{"path": "/mnt/minio-kms/data", "state": "directory", "mode": "0750", "owner": "minkms-user", "group": "minkms-user"}
	cycle(t, f, fileModule{}, args)
	d, ok := f.file("/mnt/minio-kms/data")
	if !ok || !d.dir || d.mode != 0o750 || d.owner != "minkms-user" || d.group != "minkms-user" {
		t.Fatalf("dir %+v", d)
	}
	// Only the mode differs: only chmod runs.
	args["mode"] = 0o700 // as YAML decodes an unquoted 0700
	n := len(f.callList())
	cycle(t, f, fileModule{}, args)
	var changes []string
	for _, c := range f.callList()[n:] {
		if strings.HasPrefix(c, "ch") || strings.HasPrefix(c, "mkdir") {
			changes = append(changes, c)
		}
	}
	if !slices.Equal(changes, []string{"chmod 0700 -- /mnt/minio-kms/data"}) {
		t.Fatalf("changes %v", changes)
	}
}

func TestFileRecurseTouchAbsent(t *testing.T) {
	f := newFake(t, "h")
	f.putFile("/mnt/minio-kms/a/b", "x", 0o600)
	cycle(t, f, fileModule{}, map[string]any{"path": "/mnt/minio-kms", "state": "directory", "owner": "kms", "recurse": true})
	if b, _ := f.file("/mnt/minio-kms/a/b"); b.owner != "kms" {
		t.Fatalf("recursive owner not applied: %+v", b)
	}
	cycle(t, f, fileModule{}, map[string]any{"path": "/mnt/minio-kms/.ready", "state": "touch", "mode": "0644"})
	cycle(t, f, fileModule{}, map[string]any{"path": "/mnt/minio-kms/.ready", "mode": "0600"})
	if r, _ := f.file("/mnt/minio-kms/.ready"); r.mode != 0o600 {
		t.Fatalf("mode %o", r.mode)
	}
	cycle(t, f, fileModule{}, map[string]any{"path": "/mnt/minio-kms", "state": "absent"})
	if _, ok := f.file("/mnt/minio-kms/a/b"); ok {
		t.Fatal("tree not removed")
	}
	if _, ok := f.file("/mnt"); !ok {
		t.Fatal("parent removed")
	}
	if _, err := apply(t, f, fileModule{}, map[string]any{"path": "/mnt/nothere"}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("state file on a missing path: %v", err)
	}
	f.putFile("/opt/f", "", 0o644)
	if _, err := apply(t, f, fileModule{}, map[string]any{"path": "/opt/f", "state": "directory"}); err == nil {
		t.Fatal("directory over a file accepted")
	}
}

func TestFileRefusesDangerousPaths(t *testing.T) {
	f := newFake(t, "h")
	f.mkdirAll("/var/lib")
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
	before := f.snapshot()
	for _, args := range bad {
		if _, err := plan(t, f, fileModule{}, args); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("plan %v: %v, want a refusal", args, err)
		}
		if _, err := apply(t, f, fileModule{}, args); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("apply %v: %v, want a refusal", args, err)
		}
	}
	if f.snapshot() != before {
		t.Fatal("a refused operation changed the host")
	}
	for _, c := range f.callList() {
		if strings.HasPrefix(c, "rm") || strings.HasPrefix(c, "chown") {
			t.Fatalf("ran %q", c)
		}
	}
}

func TestCopyContentModeOwnerIdempotent(t *testing.T) {
	f := newFake(t, "h")
	args := map[string]any{"content": "port: 7373\n", "dest": "/etc/minkms/config.yaml", "mode": "0640", "owner": "minkms-user", "group": "minkms"}
	r := cycle(t, f, copyModule{}, args)
	got, _ := f.file("/etc/minkms/config.yaml")
	if string(got.data) != "port: 7373\n" || got.mode != 0o640 || got.owner != "minkms-user" || got.group != "minkms" {
		t.Fatalf("file %+v", got)
	}
	if r.Data["checksum"] != sha256Hex([]byte("port: 7373\n")) {
		t.Fatalf("checksum %v", r.Data["checksum"])
	}
	// Same content, new mode: chmod, no upload.
	args["mode"] = "0600"
	n := len(f.callList())
	cycle(t, f, copyModule{}, args)
	for _, c := range f.callList()[n:] {
		if strings.HasPrefix(c, "upload") {
			t.Fatal("uploaded unchanged content to fix a mode")
		}
	}
	// New content keeps the existing mode when none is given.
	delete(args, "mode")
	args["content"] = "port: 7374\n"
	cycle(t, f, copyModule{}, args)
	if got, _ := f.file("/etc/minkms/config.yaml"); got.mode != 0o600 || string(got.data) != "port: 7374\n" {
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
	f := newFake(t, "h")
	f.putFile("/usr/local/bin/minkms", "old", 0o755)
	e := testEnv(f, map[string]any{"src": "minkms", "dest": "/usr/local/bin/minkms", "mode": "0755"})
	e.Files = &changingFS{first: []byte("v1 binary"), now: []byte("v2 binary")}
	before := f.snapshot()
	_, err := copyModule{}.Apply(context.Background(), e)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("copy of a file that changed after it was hashed = %v; want a checksum mismatch", err)
	}
	if after := f.snapshot(); after != before {
		t.Errorf("the host's files changed:\n%s---\n%s", before, after)
	}
}

func TestCopySrcFromFilesAndErrors(t *testing.T) {
	f := newFake(t, "h")
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
	if got, _ := f.file("/usr/local/bin/minkms"); got == nil || string(got.data) != "\x7fELF binary" || got.mode != 0o755 {
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
	f := newFake(t, "h")
	e := testEnv(f, map[string]any{"content": sentinel, "dest": "/etc/default/minkms", "secret": true})
	e.Diff = true
	r, err := copyModule{}.Apply(context.Background(), e)
	if err != nil || !r.Changed || r.Diff != "" || strings.Contains(r.Msg, sentinel) {
		t.Fatalf("%+v %v", r, err)
	}
	if got, _ := f.file("/etc/default/minkms"); got.mode != 0o600 {
		t.Fatalf("mode %o", got.mode)
	}
	e = testEnv(f, map[string]any{"content": "a\nb\n", "dest": "/etc/plain"})
	e.Diff = true
	if r, _ := (copyModule{}).Plan(context.Background(), e); !strings.Contains(r.Diff, "--- /dev/null") || !strings.Contains(r.Diff, "+b") {
		t.Fatalf("diff %q", r.Diff)
	}
}

func TestTemplate(t *testing.T) {
	f := newFake(t, "h")
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
	got, _ := f.file("/etc/minkms/config.yaml")
	if want := "address: 10.0.0.1:7373\n- kms1\n- kms2\n<&>\n"; string(got.data) != want {
		t.Fatalf("rendered %q, want %q", got.data, want)
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
	f := newFake(t, "kms1")
	f.putFile("/mnt/minio-kms/backup.db", "DB", 0o600)
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
	f.putFile("/mnt/minio-kms/backup.db", "DB2", 0o600)
	r := cycle(t, f, fetchModule{}, map[string]any{"src": "/mnt/minio-kms/backup.db", "dest": dir + "/", "flat": true})
	if r.Data["dest"] != filepath.Join(dir, "backup.db") {
		t.Fatalf("flat dest %v", r.Data["dest"])
	}
	if _, err := apply(t, f, fetchModule{}, map[string]any{"src": "/nope", "dest": dir}); err == nil {
		t.Fatal("missing remote file accepted")
	}
}

func TestWaitForPathPortURL(t *testing.T) {
	f := newFake(t, "h")
	f.putFile("/run/minkms.ready", "", 0o644)
	r, err := apply(t, f, waitForModule{}, map[string]any{"path": "/run/minkms.ready"})
	if err != nil || r.Failed || r.Changed {
		t.Fatalf("path: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"path": "/run/never", "timeout": "30ms", "sleep": "5ms"})
	if err != nil || !r.Failed || !strings.Contains(r.Msg, "timed out") {
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
	f.ports["127.0.0.1:7373"] = ln.Addr().String()
	r, err = apply(t, f, waitForModule{}, map[string]any{"port": 7373})
	if err != nil || r.Failed {
		t.Fatalf("port: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"port": 7374, "state": "stopped"})
	if err != nil || r.Failed {
		t.Fatalf("closed port: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"port": "7374", "timeout": 0.03, "sleep": "5ms"})
	if err != nil || !r.Failed {
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
	f.ports["kms1:7373"] = srv.Listener.Addr().String()
	r, err = apply(t, f, waitForModule{}, map[string]any{"url": "https://kms1:7373/v1/ready", "validate_certs": false})
	if err != nil || r.Failed {
		t.Fatalf("url: %+v %v", r, err)
	}
	r, err = apply(t, f, waitForModule{}, map[string]any{"url": "https://kms1:7373/v1/status", "validate_certs": false, "timeout": "30ms", "sleep": "5ms"})
	if err != nil || !r.Failed {
		t.Fatalf("503 url: %+v %v", r, err)
	}
	// Certificates are verified by default.
	r, err = apply(t, f, waitForModule{}, map[string]any{"url": "https://kms1:7373/v1/ready", "timeout": "30ms", "sleep": "5ms"})
	if err != nil || !r.Failed {
		t.Fatalf("unverified TLS accepted: %+v %v", r, err)
	}

	// Check mode probes once and does not wait.
	p, err := plan(t, f, waitForModule{}, map[string]any{"path": "/run/never", "timeout": 3600})
	if err != nil || p.Changed || p.Failed || !strings.Contains(p.Msg, "not yet met") {
		t.Fatalf("plan %+v %v", p, err)
	}
}

func TestWaitForCancel(t *testing.T) {
	f := newFake(t, "h")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := waitForModule{}.Apply(ctx, testEnv(f, map[string]any{"path": "/never", "sleep": "1h"}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestPing(t *testing.T) {
	f := newFake(t, "h")
	r, err := apply(t, f, pingModule{}, nil)
	if err != nil || r.Msg != "pong" || r.Changed {
		t.Fatalf("%+v %v", r, err)
	}
	f.unreachable = true
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
	f := newFake(t, "h")
	f.reply("set -e; mkdir -p -- /etc/minkms;", "/etc/minkms/.certs.kmsctl-abc123\n", 0)
	f.reply("cd /etc/minkms/.certs.kmsctl-abc123 && find", strings.Repeat("0", 64)+"  ./ca.pem\n", 0)
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
	calls := f.callList()
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
	f := newFake(t, "h")
	f.putFile("/usr/local/bin/minkms", "binary", 0o755)
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
	f := newFake(t, "h")
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
	f := newFake(t, "h")
	f.putFile("/etc/minkms/config.yaml", "good: 1\n", 0o600)
	var checked string
	f.on("minkms check", func(_ context.Context, cmd, _ string) (string, string, int, error) {
		checked = strings.TrimPrefix(cmd, "minkms check ")
		ff, _ := f.file(checked)
		if ff == nil || strings.Contains(string(ff.data), "bad") {
			return "", "line 1: bad key", 2, nil
		}
		return "", "", 0, nil
	})
	args := map[string]any{"content": "bad: 1\n", "dest": "/etc/minkms/config.yaml", "validate": "minkms check %s"}
	r, err := apply(t, f, copyModule{}, args)
	if err != nil || !r.Failed || r.Changed || !strings.Contains(r.Msg, "bad key") {
		t.Fatalf("invalid config: %+v %v", r, err)
	}
	if got, _ := f.file("/etc/minkms/config.yaml"); string(got.data) != "good: 1\n" {
		t.Fatalf("dest changed to %q", got.data)
	}
	if checked != "/etc/minkms/.config.yaml.kmsctl-tmp-validate" {
		t.Fatalf("validated %q", checked)
	}
	if _, ok := f.file(checked); ok {
		t.Fatal("temporary file left behind")
	}
	args["content"] = "better: 2\n"
	cycle(t, f, copyModule{}, args)
	if got, _ := f.file("/etc/minkms/config.yaml"); string(got.data) != "better: 2\n" || got.mode != 0o600 {
		t.Fatalf("dest %+v", got)
	}
	if _, ok := f.file(checked); ok {
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
	f := newFake(t, "h")
	f.mkdirAll("/mnt/minio-kms/data")
	for _, args := range []map[string]any{
		{"path": "/mnt/minio-kms/data/", "state": "directory", "owner": "kms", "recurse": true, "mode": "0700"},
		{"path": "/mnt//minio-kms/./data/", "state": "absent"},
	} {
		if _, err := apply(t, f, fileModule{}, args); err != nil {
			t.Fatalf("apply %v: %v", args, err)
		}
	}
	var mut []string
	for _, c := range f.callList() {
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
	f := newFake(t, "h")
	f.putFile("/etc/minkms/config.yaml", "good: 1\n", 0o600)
	f.on("minkms check", func(context.Context, string, string) (string, string, int, error) {
		f.mu.Lock()
		f.unreachable = true
		f.mu.Unlock()
		return "", "", 0, errFakeUnreachable
	})
	args := map[string]any{"content": "first: 1\n", "dest": "/etc/minkms/config.yaml", "validate": "minkms check %s", "secret": true}
	if _, err := apply(t, f, copyModule{}, args); err == nil {
		t.Fatal("copy over a dropped connection succeeded")
	}
	f.mu.Lock()
	f.unreachable = false
	f.mu.Unlock()
	f.reply("minkms check", "", 0)
	args["content"] = "second: 2\n"
	if _, err := apply(t, f, copyModule{}, args); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, ff := range f.files {
		if string(ff.data) == "first: 1\n" {
			t.Errorf("temporary copy %s of the interrupted run left behind", p)
		}
	}
}

// A directory copy with owner or group changes ownership recursively
// (chown -R on dest), so it refuses system directories like file does.
func TestCopyDirectoryOwnerRefusesSystemDirectories(t *testing.T) {
	for _, dest := range []string{"/etc", "/etc/", "//usr/./local/"} {
		f := newFake(t, "h")
		f.mkdirAll("/usr/local")
		e := testEnv(f, map[string]any{"src": "certs/", "dest": dest, "owner": "minkms"})
		e.Files = fstest.MapFS{"certs/ca.pem": {Data: []byte("CA")}}
		if _, err := (copyModule{}).Plan(context.Background(), e); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("plan dest %s: %v, want a refusal", dest, err)
		}
		if _, err := (copyModule{}).Apply(context.Background(), e); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("apply dest %s: %v, want a refusal", dest, err)
		}
		for _, c := range f.callList() {
			if strings.Contains(c, "chown") || strings.HasPrefix(c, "upload") {
				t.Errorf("dest %s: ran %q", dest, c)
			}
		}
	}
	// Without owner or group nothing changes recursively: allowed.
	f := newFake(t, "h")
	e := testEnv(f, map[string]any{"src": "certs/", "dest": "/etc/minkms/"})
	e.Files = fstest.MapFS{"certs/ca.pem": {Data: []byte("CA")}}
	if _, err := (copyModule{}).Plan(context.Background(), e); err != nil && strings.Contains(err.Error(), "refusing") {
		t.Errorf("plan without owner: %v", err)
	}
}
