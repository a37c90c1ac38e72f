package modules

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/safepath"
	"github.com/kmsctl/kmsctl/tasks"
)

// layout is a host's Key Manager layout, as the inventory gives it in the
// host's variables.
var layout = map[string]any{
	"kms_config_file": "/opt/minkms/config.yaml", "kms_env_file": "/opt/minkms/env",
	"kms_certs_dir": "/opt/minkms/certs", "kms_binary": "/opt/minkms/bin/minkms", "kms_storage_path": "/opt/minkms/data",
}

// refusedOnHost asserts that Plan and Apply of m refuse args with a
// *safepath.Error and change nothing on the host.
func refusedOnHost(t *testing.T, m tasks.Module, args map[string]any, files fstest.MapFS) {
	t.Helper()
	f := fake.New(t, "h")
	for _, d := range []string{"/etc/minkms/certs", "/etc/pam.d", "/root/.ssh", "/var/lib/dpkg", "/lib/systemd", "/opt/minkms/certs", "/opt/minkms/bin", "/home/alice/.ssh"} {
		f.MkdirAll(d)
	}
	f.SetFile("/etc/default/minkms", "MINIO_KMS_HSM_KEY="+sentinel, 0o600)
	f.SetFile("/opt/minkms/env", "MINIO_KMS_HSM_KEY="+sentinel, 0o600)
	before := f.Snapshot()
	for _, run := range []func(context.Context, *tasks.Env) (tasks.Result, error){m.Plan, m.Apply} {
		e := testEnv(f, args)
		e.Vars, e.Files = layout, files
		_, err := run(context.Background(), e)
		var se *safepath.Error
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("%v: %v, want a *safepath.Error", args, err)
		}
	}
	if f.Snapshot() != before {
		t.Errorf("%v: a refused operation changed the host", args)
	}
	for _, c := range callList(f) {
		if strings.HasPrefix(c, "rm") || strings.HasPrefix(c, "ch") || strings.HasPrefix(c, "upload") {
			t.Errorf("%v: ran %q", args, c)
		}
	}
}

// TestFileDangerousPathRule: what --check showed file would remove before
// the shared rule is refused, each on its own, and so is any path holding
// the host's Key Manager files (from its layout variables); a ".." path
// that cleans to a harmless directory is not.
func TestFileDangerousPathRule(t *testing.T) {
	for _, p := range []string{"/etc/minkms", "/etc/default/minkms", "/root/.ssh", "/home/alice/.ssh", "/etc/pam.d", "/var/lib/dpkg",
		"/lib/systemd", "/mnt/x/../../etc/pam.d",
		"/opt/minkms", "/opt/minkms/env", "/opt/minkms/certs", "/opt/minkms/bin"} {
		refusedOnHost(t, fileModule{}, map[string]any{"path": p, "state": "absent"}, nil)
		refusedOnHost(t, fileModule{}, map[string]any{"path": p, "state": "directory", "owner": "x", "recurse": true}, nil)
	}
	f := fake.New(t, "h")
	f.MkdirAll("/mnt/kms")
	f.MkdirAll("/opt/minkms/data")
	for _, p := range []string{"/mnt/data/../kms", "/opt/minkms/data"} {
		e := testEnv(f, map[string]any{"path": p, "state": "absent"})
		e.Vars = layout
		if _, err := (fileModule{}).Apply(context.Background(), e); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	}
	if calls := strings.Join(callList(f), "\n"); !strings.Contains(calls, "rm -rf -- /mnt/kms") || !strings.Contains(calls, "rm -rf -- /opt/minkms/data") {
		t.Errorf("calls:\n%s", calls)
	}
}

// TestCopyDirectoryChownDangerousPathRule: copy's chown -R of a copied
// directory follows the same rule, with the host's layout protected.
func TestCopyDirectoryChownDangerousPathRule(t *testing.T) {
	files := fstest.MapFS{"certs/ca.pem": {Data: []byte("CA")}}
	for _, dest := range []string{"/root/.ssh", "/etc/pam.d", "/opt/minkms", "/opt/minkms/certs"} {
		refusedOnHost(t, copyModule{}, map[string]any{"src": "certs/", "dest": dest, "owner": "minkms"}, files)
	}
}

// TestFileCheckArgs: a literal path the rule refuses for state=absent or
// recurse is refused as the playbook is decoded; templated ones wait for
// the host.
func TestFileCheckArgs(t *testing.T) {
	reg := tasks.NewRegistry()
	Register(reg)
	for _, args := range []map[string]any{
		{"path": "/", "state": "absent"},
		{"path": "/etc/pam.d", "state": "absent"},
		{"path": "/root/.ssh", "state": "directory", "recurse": true, "owner": "x"},
		{"path": "/mnt/../etc", "state": "absent"},
	} {
		err := reg.Validate(tasks.Task{Module: "file", Args: args, Pos: "p.yml:3"})
		var se *safepath.Error
		if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), "p.yml:3: module file: path: refusing ") {
			t.Errorf("Validate %v = %v, want a refusal", args, err)
		}
	}
	for _, args := range []map[string]any{
		{"path": "/", "state": "directory"},
		{"path": "/mnt/kms", "state": "absent"},
		{"path": "{{ p }}", "state": "absent"},
		{"path": "/etc", "state": "{{ s }}"},
		{"path": "/etc", "state": "directory", "recurse": "{{ r }}"},
	} {
		if err := reg.Validate(tasks.Task{Module: "file", Args: args, Pos: "p.yml:3"}); err != nil {
			t.Errorf("Validate %v = %v", args, err)
		}
	}
}
