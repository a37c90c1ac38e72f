package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/yamlpos"
)

func TestParseExtraVars(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "vars.yml")
	if err := os.WriteFile(f, []byte("kms_port: 7474\nlist: [a, b]\nx: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ParseExtraVars([]string{"x=1", "@" + f, "msg=hello world", `{"y": 2, "x": "inline"}`, "empty="})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"x": "inline", "kms_port": 7474, "list": []any{"a", "b"}, "msg": "hello world", "y": 2, "empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
	const sentinel = "SENTINEL-9b1e"
	for _, bad := range []string{"novalue", "1x=2", "my-var=3", "bad key=" + sentinel, "@" + filepath.Join(dir, "missing.yml"), "{a: [}"} {
		_, err := ParseExtraVars([]string{bad})
		if err == nil {
			t.Errorf("ParseExtraVars(%q): want error", bad)
		} else if strings.Contains(err.Error(), sentinel) {
			t.Errorf("error echoes the value: %v", err)
		}
	}
	// Which argument is wrong and why, without echoing it.
	_, err = ParseExtraVars([]string{"a=1", sentinel})
	if err == nil || strings.Contains(err.Error(), sentinel) ||
		!strings.Contains(err.Error(), `-e argument 2: no "=" (want KEY=VALUE`) {
		t.Errorf("ParseExtraVars(no =): %v", err)
	}
	_, err = ParseExtraVars([]string{"my-var=" + sentinel})
	if err == nil || strings.Contains(err.Error(), sentinel) ||
		!strings.Contains(err.Error(), `-e my-var=...: KEY must be made of letters, digits and _`) {
		t.Errorf("ParseExtraVars(bad key): %v", err)
	}
}

func TestLoadVarsFileStrict(t *testing.T) {
	f := filepath.Join(t.TempDir(), "v.yml")
	os.WriteFile(f, []byte("kms_port: abc\nok: 1\nok: 2\n1bad: x\n"), 0o600)
	_, err := LoadVarsFile(f)
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	if !strings.HasPrefix(ve.Errs[0].Error(), f+":1:11: kms_port: ") {
		t.Errorf("first problem: %v", ve.Errs[0])
	}
	if v, err := ParseVars("e.yml", nil); err != nil || len(v) != 0 {
		t.Errorf("empty vars file: %v %v", v, err)
	}
	if _, err := ParseVars("l.yml", []byte("- a\n")); err == nil {
		t.Error("a list is not a vars file")
	}
}

// TestExtraVarsKnownCheck: a misspelt kms_* variable on the command line is
// refused with the name it likely means, and known values are checked, all
// problems at once at "-e".
func TestExtraVarsKnownCheck(t *testing.T) {
	_, err := ParseExtraVars([]string{"kms_storge_path=/data/kms", "kms_port=abc", "ok=1"})
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 2 {
		t.Fatalf("want 2 problems, got %v", err)
	}
	want := `-e: kms_storge_path: unknown variable "kms_storge_path" looks like a misspelling (did you mean kms_storage_path?)`
	if got := ve.Errs[0].Error(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := ve.Errs[1].Error(); !strings.HasPrefix(got, `-e: kms_port: must be a port number, got "abc"`) {
		t.Errorf("value check: %s", got)
	}
	if isRefusal(err) {
		t.Errorf("a misspelling is invalid input, not a refusal: %v", err)
	}
	got, err := ParseExtraVars([]string{"kms_storage_path=/data/kms", "kms_port=7474", "my_var=x"})
	if err != nil || got["kms_storage_path"] != "/data/kms" || got["kms_port"] != "7474" {
		t.Errorf("valid -e: %v %v", got, err)
	}
	// The storage path rule applies to -e too, as a refusal.
	if _, err := ParseExtraVars([]string{"kms_storage_path=/root/.ssh"}); !isRefusal(err) {
		t.Errorf("-e kms_storage_path=/root/.ssh: %v, want a refusal", err)
	}
}

// TestExtraVarsSecretRefused: a secret given on the command line (KEY=VALUE
// or an inline mapping) is refused as a safety refusal pointing to -e @FILE,
// without echoing it; names that say where a secret is are not secrets, and
// a secret from a file is accepted.
func TestExtraVarsSecretRefused(t *testing.T) {
	const sentinel = "SENTINEL-5c2d"
	for _, arg := range []string{"kms_api_key=" + sentinel, "ansible_become_pass=" + sentinel, "MY_TOKEN=" + sentinel,
		`{"minkms_hsm_key": "` + sentinel + `"}`} {
		_, err := ParseExtraVars([]string{"x=1", arg})
		if err == nil || !isRefusal(err) {
			t.Errorf("ParseExtraVars(%q) = %v, want a refusal", arg, err)
			continue
		}
		if strings.Contains(err.Error(), sentinel) || !strings.Contains(err.Error(), "visible to every user of this machine") ||
			!strings.Contains(err.Error(), "-e @FILE") {
			t.Errorf("ParseExtraVars(%q): %v", arg, err)
		}
	}
	for _, arg := range []string{"kms_api_key_file=/home/op/api.key", "ansible_ssh_private_key_file=~/.ssh/id", "vault_password_command=pass show kms"} {
		if _, err := ParseExtraVars([]string{arg}); err != nil {
			t.Errorf("ParseExtraVars(%q): %v; it names where a secret is", arg, err)
		}
	}
	f := filepath.Join(t.TempDir(), "secrets.yml")
	if err := os.WriteFile(f, []byte("minkms_hsm_key: "+sentinel+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ParseExtraVars([]string{"@" + f}); err != nil || got["minkms_hsm_key"] != sentinel {
		t.Errorf("-e @FILE with a secret: %v %v", got, err)
	}
}

// TestKeyVariablesRefused: the admin API key and the HSM key are never a
// variable's value, not even in a 0600 vars file: the refusal says where
// they belong and never echoes them.
func TestKeyVariablesRefused(t *testing.T) {
	const sentinel = "SENTINEL-7e1f"
	for name, env := range map[string]string{"kms_api_key": "MINIO_KMS_API_KEY", "kms_hsm_key": "MINIO_KMS_HSM_KEY"} {
		f := filepath.Join(t.TempDir(), "secrets.yml")
		if err := os.WriteFile(f, []byte(name+": "+sentinel+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ParseExtraVars([]string{"@" + f})
		if err == nil || !isRefusal(err) {
			t.Fatalf("-e @FILE with %s: %v, want a refusal", name, err)
		}
		for _, want := range []string{f + ":1:", env, name + "_file", name + "_command", "chmod 600 FILE"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("-e @FILE with %s: %v, want it to name %q", name, err, want)
			}
		}
		if strings.Contains(err.Error(), sentinel) {
			t.Errorf("the refusal echoes the key: %v", err)
		}
	}
}

// isRefusal reports whether err is a refusal by a safety rule.
func isRefusal(err error) bool {
	var r interface{ Refused() bool }
	return errors.As(err, &r) && r.Refused()
}

// TestExtraVarsEveryProblemAtOnce: every -e problem is reported in one go,
// whatever comes before it: secrets (KEY=VALUE or several in one inline
// mapping), bad values and misspellings.
func TestExtraVarsEveryProblemAtOnce(t *testing.T) {
	_, err := ParseExtraVars([]string{"kms_api_key=x", "kms_port=abc", "kms_storge_path=/x", "ansible_become_pass=y", "ok=1",
		`{"my_token": "t", "db_password": "p"}`})
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 6 {
		t.Fatalf("want 6 problems, got %v", err)
	}
	for _, field := range []string{"kms_api_key", "kms_port", "kms_storge_path", "ansible_become_pass", "my_token", "db_password"} {
		if !slices.ContainsFunc(ve.Errs, func(e *yamlpos.Error) bool { return e.Field == field }) {
			t.Errorf("no problem for %s: %v", field, err)
		}
	}
}
