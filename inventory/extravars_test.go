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
