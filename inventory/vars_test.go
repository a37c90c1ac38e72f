package inventory

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/yamlpos"
)

func mustParse(t *testing.T, src string) *Inventory {
	t.Helper()
	inv, err := Parse("inv.yml", []byte(src))
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	return inv
}

const precedenceInv = `
all:
  vars:
    v_all: all
    v_parent: all
    v_child: all
    v_host: all
    v_extra: all
    v_sibling: all
  children:
    parent:
      vars:
        v_parent: parent
        v_child: parent
        v_host: parent
        v_extra: parent
      children:
        child:
          vars:
            v_child: child
            v_host: child
            v_extra: child
          hosts:
            h1:
              v_host: host
              v_extra: host
    zeta:
      vars:
        v_sibling: zeta
      hosts:
        h1:
    alpha:
      vars:
        v_sibling: alpha
      hosts:
        h1:
    prio:
      vars:
        ansible_group_priority: 5
        v_prio: prio
      hosts:
        h2:
    zz:
      vars:
        v_prio: zz
      hosts:
        h2:
`

// TestVarsPrecedence checks host > child group > parent group > all, -e over
// everything, and same-depth groups ordered by name (later wins) unless
// ansible_group_priority says otherwise.
func TestVarsPrecedence(t *testing.T) {
	inv := mustParse(t, precedenceInv)
	vars, err := inv.Vars("h1", map[string]any{"v_extra": "extra"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"v_all":     "all",
		"v_parent":  "parent",
		"v_child":   "child",
		"v_host":    "host",
		"v_extra":   "extra",
		"v_sibling": "zeta", // alpha and zeta are both depth 1: zeta sorts later and wins
	}
	for k, w := range want {
		if vars[k] != w {
			t.Errorf("%s = %v, want %q", k, vars[k], w)
		}
	}
	// A deeper group wins over a shallower one even if its name sorts first:
	// child (depth 2) over zeta (depth 1) is covered by v_child above;
	// here a priority beats the alphabetical order at the same depth.
	v2, err := inv.Vars("h2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v2["v_prio"] != "prio" {
		t.Errorf("v_prio = %v, want prio (ansible_group_priority 5 beats zz's default 1)", v2["v_prio"])
	}
	if _, ok := v2[VarGroupPriority]; ok {
		t.Errorf("ansible_group_priority leaked into host vars")
	}
	if got := vars["group_names"]; !reflect.DeepEqual(got, []any{"alpha", "child", "parent", "zeta"}) {
		t.Errorf("group_names = %v", got)
	}
	if vars["inventory_hostname"] != "h1" {
		t.Errorf("inventory_hostname = %v", vars["inventory_hostname"])
	}
	// Without -e the host value shows through.
	v1, _ := inv.Vars("h1", nil)
	if v1["v_extra"] != "host" {
		t.Errorf("v_extra without -e = %v, want host", v1["v_extra"])
	}
	// Layout defaults are present at the lowest precedence.
	if v1[VarStoragePath] != DefaultStoragePath || v1[VarEndpoint] != "h1:7373" {
		t.Errorf("defaults: storage %v endpoint %v", v1[VarStoragePath], v1[VarEndpoint])
	}
	if _, err := inv.Vars("nope", nil); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown host: err = %v", err)
	}
}

// TestVarsDeepCopy checks that callers cannot change the inventory through
// the returned map.
func TestVarsDeepCopy(t *testing.T) {
	inv := mustParse(t, "all:\n  hosts:\n    h1:\n      list: [a, b]\n      m: {k: v}\n")
	v, _ := inv.Vars("h1", nil)
	v["list"].([]any)[0] = "changed"
	v["m"].(map[string]any)["k"] = "changed"
	v2, _ := inv.Vars("h1", nil)
	if v2["list"].([]any)[0] != "a" || v2["m"].(map[string]any)["k"] != "v" {
		t.Errorf("inventory modified through Vars result: %v", v2)
	}
}

// TestLoadMerge checks that several -i files merge, later files winning.
func TestLoadMerge(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yml")
	b := filepath.Join(dir, "b.yml")
	os.WriteFile(a, []byte("all:\n  vars:\n    x: a\n  children:\n    kms:\n      hosts:\n        kms1:\n          ansible_port: 22\n"), 0o600)
	os.WriteFile(b, []byte("all:\n  vars:\n    x: b\n  children:\n    kms:\n      hosts:\n        kms2:\n        kms1:\n          ansible_port: 2222\n"), 0o600)
	inv, err := Load(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Hosts(); !reflect.DeepEqual(got, []string{"kms1", "kms2"}) {
		t.Errorf("Hosts = %v", got)
	}
	v, _ := inv.Vars("kms1", nil)
	if v["x"] != "b" || v["ansible_port"] != 2222 {
		t.Errorf("merged vars: x=%v port=%v, want b and 2222", v["x"], v["ansible_port"])
	}
	if pos, ok := inv.Origin("kms1", "ansible_port"); !ok || pos.File != b || pos.Line != 9 {
		t.Errorf("Origin(ansible_port) = %v %v, want %s:9", pos, ok, b)
	}
	if _, err := Load(filepath.Join(dir, "missing.yml")); err == nil || !strings.Contains(err.Error(), "missing.yml") {
		t.Errorf("missing file: err = %v", err)
	}
	if _, err := Load(); err == nil {
		t.Error("Load() with no file: want error")
	}
	// Problems in two files are all reported.
	os.WriteFile(a, []byte("all:\n  hosts:\n    h1:\n      ansible_port: x\n"), 0o600)
	os.WriteFile(b, []byte("all:\n  hosts:\n    h2:\n      kms_api: y\n"), 0o600)
	_, err = Load(a, b)
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 2 {
		t.Fatalf("want 2 problems, got %v", err)
	}
	if !strings.HasPrefix(ve.Errs[0].Error(), a+":4:21: ") || !strings.HasPrefix(ve.Errs[1].Error(), b+":4:16: ") {
		t.Errorf("positions: %v", err)
	}
	var one *yamlpos.Error
	if !errors.As(err, &one) || one.Field != "all.hosts.h1.ansible_port" {
		t.Errorf("errors.As *yamlpos.Error: %#v", one)
	}
}

func TestHostsAndGroupsOrder(t *testing.T) {
	inv := mustParse(t, `
all:
  hosts:
    zz:
  children:
    b:
      hosts:
        m1:
    a:
      hosts:
        a1:
        m1:
`)
	if got := inv.Hosts(); !reflect.DeepEqual(got, []string{"zz", "m1", "a1"}) {
		t.Errorf("Hosts = %v, want file order", got)
	}
	if got := inv.Groups(); !reflect.DeepEqual(got, []string{"all", "b", "a", "ungrouped"}) {
		t.Errorf("Groups = %v", got)
	}
	if got, _ := inv.GroupHosts("ungrouped"); !reflect.DeepEqual(got, []string{"zz"}) {
		t.Errorf("ungrouped = %v", got)
	}
	if got, _ := inv.HostGroups("m1"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("HostGroups(m1) = %v", got)
	}
}

// TestSecretsMasked puts a sentinel secret in the inventory and checks it
// never comes out of MaskedVars, Graph or a validation error.
func TestSecretsMasked(t *testing.T) {
	const sentinel = "SENTINEL-s3cr3t-4f9a2c"
	src := `
all:
  vars:
    vault_api_key: ` + sentinel + `
    motd: "key is ` + sentinel + `"
    nested:
      db_password: ` + sentinel + `
      plain: ok
  children:
    kms:
      vars:
        ansible_become_pass: ` + sentinel + `
        MINIO_KMS_HSM_KEY: ` + sentinel + `
      hosts:
        kms1:
          my_token: [` + sentinel + `]
          ansible_ssh_private_key_file: /keys/id
`
	inv := mustParse(t, src)
	mv, err := inv.MaskedVars("kms1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"vault_api_key", "ansible_become_pass", "MINIO_KMS_HSM_KEY", "my_token"} {
		if mv[k] != "[REDACTED]" {
			t.Errorf("%s = %v, want [REDACTED]", k, mv[k])
		}
	}
	if mv["ansible_ssh_private_key_file"] != "/keys/id" {
		t.Errorf("private_key_file path masked: %v", mv["ansible_ssh_private_key_file"])
	}
	if mv["motd"] != "key is [REDACTED]" {
		t.Errorf("secret inside another value: motd = %v", mv["motd"])
	}
	if n := mv["nested"].(map[string]any); n["db_password"] != "[REDACTED]" || n["plain"] != "ok" {
		t.Errorf("nested = %v", n)
	}
	var buf bytes.Buffer
	if err := inv.Graph(&buf, true); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), sentinel) {
		t.Errorf("Graph leaks the secret:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "{vault_api_key = [REDACTED]}") {
		t.Errorf("Graph does not show the masked secret:\n%s", buf.String())
	}
	// Vars (for the engine) keeps the real value.
	v, _ := inv.Vars("kms1", nil)
	if v["vault_api_key"] != sentinel {
		t.Errorf("Vars must keep secrets for the engine")
	}
	// An invalid inventory holding a secret: the error never quotes it.
	_, err = Parse("bad.yml", []byte(src+"          ansible_port: nope\n          vault_api_key: [\""+sentinel+"\"]\n    bad: [\n"))
	if err == nil {
		t.Fatal("want error")
	}
	if strings.Contains(err.Error(), sentinel) {
		t.Errorf("error leaks the secret: %v", err)
	}
	_, err = Parse("bad.yml", []byte(src+"          api_token2: !!int "+sentinel+"\n          other: !!int "+sentinel+"x\n"))
	if err == nil || strings.Contains(err.Error(), sentinel+"`") || !strings.Contains(err.Error(), "other: cannot decode value") {
		t.Errorf("decode error of a secret: %v", err)
	}
	_, err = Parse("bad.yml", []byte(src+"          ansible_port: nope\n"))
	if err == nil || strings.Contains(err.Error(), sentinel) {
		t.Errorf("error = %v", err)
	}
}

// TestSecrets: every secret string set anywhere in the inventory, also one
// a host overrides and one from host_vars/, without resolving a host; an
// empty one is nothing to mask.
func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"host_vars/kms2.yml": "vault_token: from-host-vars\n", "inventory.yml": `
all:
  vars:
    vault_api_key: from-all
    motd: not-a-secret
    db_password: ""
  children:
    kms:
      vars:
        ansible_become_pass: from-group
      hosts:
        kms1:
          vault_api_key: from-host
        kms2:
          vault_api_key: from-all
`})
	inv, err := Load(filepath.Join(dir, "inventory.yml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"from-all", "from-group", "from-host", "from-host-vars"}
	if got := inv.Secrets(); !slices.Equal(got, want) {
		t.Errorf("Secrets() = %q, want %q", got, want)
	}
}

func TestIsSecret(t *testing.T) {
	for name, want := range map[string]bool{
		"kms_api_key": true, "MINIO_KMS_HSM_KEY": true, "ansible_password": true, "ansible_become_pass": true,
		"ansible_ssh_pass": true, "vault_token": true, "client_secret": true, "tls_private": true,
		"ansible_ssh_private_key_file": false, "ansible_private_key_file": false, "kms_port": false,
		"ansible_user": false, "passenger": false, "kms_storage_path": false,
		"kms_api_key_file": false, "kms_hsm_key_command": false, "vault_password_command": false, "kms_api_address": false,
	} {
		if got := IsSecret(name); got != want {
			t.Errorf("IsSecret(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestConcurrentUse exercises the read API from several goroutines; run with
// -race it proves an Inventory is safe to share between the engine's workers.
func TestConcurrentUse(t *testing.T) {
	inv := mustParse(t, precedenceInv)
	done := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			for j := 0; j < 20; j++ {
				if _, err := inv.Vars("h1", map[string]any{"x": j}); err != nil {
					done <- err
					return
				}
				if _, err := inv.Select("parent:!h2"); err != nil {
					done <- err
					return
				}
				if _, err := inv.Node("h2", nil); err != nil {
					done <- err
					return
				}
				if _, err := inv.MaskedVars("h1", nil); err != nil {
					done <- err
					return
				}
				var buf bytes.Buffer
				if err := inv.Graph(&buf, true); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
