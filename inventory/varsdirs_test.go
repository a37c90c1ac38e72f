package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/yamlpos"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoadGroupAndHostVarsDirs checks that group_vars/ and host_vars/ next to
// the inventory are read as Ansible does, override the inventory file for the
// same group or host, and keep positions.
func TestLoadGroupAndHostVarsDirs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"inventory.yml": `all:
  vars:
    v_all: inline
  children:
    kms:
      vars:
        kms_storage_path: /mnt/inline
        v_group: inline
      hosts:
        kms1:
          v_host: inline
        kms2:
`,
		"group_vars/all.yml":        "v_all: from-dir\n",
		"group_vars/kms/a.yml":      "kms_storage_path: /data/kms\n",
		"group_vars/kms/b.yaml":     "v_group: from-dir-b\n",
		"group_vars/kms/notes.txt":  "ignored: [\n",
		"group_vars/unknown.yml":    "x: 1\n",
		"host_vars/kms1":            "v_host: from-dir\nansible_port: 2222\n",
		"host_vars/kms2.json":       `{"ansible_host": "10.9.9.2"}`,
		"host_vars/.kms1.yml.swp":   "garbage: [\n",
		"host_vars/not-a-host.yaml": "y: 2\n",
	})
	inv, err := Load(filepath.Join(dir, "inventory.yml"))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := inv.Vars("kms1", nil)
	for k, want := range map[string]any{"v_all": "from-dir", "kms_storage_path": "/data/kms", "v_group": "from-dir-b", "v_host": "from-dir", "ansible_port": 2222} {
		if v[k] != want {
			t.Errorf("kms1 %s = %v, want %v", k, v[k], want)
		}
	}
	if n, err := inv.Node("kms1", nil); err != nil || n.StoragePath != "/data/kms" {
		t.Errorf("Node storage path = %q, %v", n.StoragePath, err)
	}
	if c, _ := sshOf(inv, "kms2", nil); c.Address != "10.9.9.2" {
		t.Errorf("kms2 address from host_vars/kms2.json = %q", c.Address)
	}
	if pos, _ := inv.Origin("kms1", "kms_storage_path"); pos.File != filepath.Join(dir, "group_vars/kms/a.yml") || pos.Line != 1 {
		t.Errorf("Origin = %v", pos)
	}
	// A bad value in a vars file is reported at its file and line.
	writeFiles(t, dir, map[string]string{"host_vars/kms2.json": `{"ansible_host": "10.9.9.2",
 "kms_storage_path": "/etc"}`})
	_, err = Load(filepath.Join(dir, "inventory.yml"))
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 1 || !strings.HasPrefix(ve.Errs[0].Error(), filepath.Join(dir, "host_vars/kms2.json")+":2:22: kms_storage_path: ") {
		t.Errorf("bad host_vars value: %v", err)
	}
}

// TestLoadInventoryDirectory checks -i DIR: its YAML files in name order,
// then its group_vars/.
func TestLoadInventoryDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"01-kms.yml":          "all:\n  children:\n    kms:\n      hosts:\n        kms1:\n",
		"02-db.yaml":          "all:\n  children:\n    db:\n      hosts:\n        db1:\n",
		"README.md":           "not an inventory",
		"group_vars/kms.yml":  "role: kms\n",
		"group_vars/db.yml":   "role: db\n",
		"host_vars/db1.yml":   "ansible_user: postgres\n",
		"group_vars/all.yaml": "ansible_user: ops\n",
	})
	inv, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Hosts(); !reflect.DeepEqual(got, []string{"kms1", "db1"}) {
		t.Errorf("Hosts = %v", got)
	}
	kv, _ := inv.Vars("kms1", nil)
	dv, _ := inv.Vars("db1", nil)
	if kv["role"] != "kms" || dv["role"] != "db" || kv["ansible_user"] != "ops" || dv["ansible_user"] != "postgres" {
		t.Errorf("kms1 %v/%v, db1 %v/%v", kv["role"], kv["ansible_user"], dv["role"], dv["ansible_user"])
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .yml or .yaml files") {
		t.Errorf("empty directory: %v", err)
	}
}

// TestVarsDirsPrecedence checks Ansible's order between inventory-file and
// group_vars/ variables: group_vars/all beats a child group's inline vars,
// and group_vars/CHILD beats group_vars/all; host_vars/ beats inline host vars.
func TestVarsDirsPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"inv.yml": `all:
  children:
    kms:
      vars:
        a: kms-inline
        b: kms-inline
        c: kms-inline
      hosts:
        kms1:
          c: host-inline
          d: host-inline
`,
		"group_vars/all.yml": "a: all-dir\nb: all-dir\nc: all-dir\n",
		"group_vars/kms.yml": "b: kms-dir\n",
		"host_vars/kms1.yml": "d: host-dir\n",
	})
	inv, err := Load(filepath.Join(dir, "inv.yml"))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := inv.Vars("kms1", nil)
	want := map[string]string{"a": "all-dir", "b": "kms-dir", "c": "host-inline", "d": "host-dir"}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %v, want %s", k, v[k], w)
		}
	}
}
