package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseExtraVars(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vars.yml")
	if err := os.WriteFile(file, []byte("a: from-file\nn: 3\nlist: [x, y]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := parseExtraVars([]string{"a=1", "@" + file, `{"b": {"c": true}}`, "eq=x=y", "n=override"})
	if err != nil {
		t.Fatal(err)
	}
	if got["a"] != "from-file" || got["n"] != "override" || got["eq"] != "x=y" {
		t.Errorf("got %v", got)
	}
	if b, ok := got["b"].(map[string]any); !ok || b["c"] != true {
		t.Errorf("b = %v", got["b"])
	}
	for _, bad := range []string{"novalue", "=x", "@/nonexistent.yml", "{not json", "@" + filepath.Dir(file)} {
		if _, err := parseExtraVars([]string{bad}); err == nil {
			t.Errorf("parseExtraVars(%q) accepted", bad)
		} else if !strings.Contains(err.Error(), "extra vars") {
			t.Errorf("parseExtraVars(%q) error %q does not say extra vars", bad, err)
		}
	}
}
