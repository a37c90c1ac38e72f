package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// decodeExtraVars runs "kmsctl play site.yml" with the given -e values and
// returns the extra vars decodeOptions made of them.
func decodeExtraVars(t *testing.T, values ...string) (map[string]any, error) {
	t.Helper()
	var got map[string]any
	app := newApp(testEnv(t).env)
	for _, c := range app.Commands {
		if c.Name == "play" {
			c.Action = func(ctx *cli.Context) error {
				o, err := decodeOptions(ctx, 0)
				got = o.ExtraVars
				return err
			}
		}
	}
	args := []string{"kmsctl", "play"}
	for _, v := range values {
		args = append(args, "-e", v)
	}
	err := app.Run(reorderArgs(app, append(args, "site.yml")))
	return got, err
}

func TestParseExtraVars(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vars.yml")
	if err := os.WriteFile(file, []byte("a: from-file\nn: 3\nlist: [x, y]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := decodeExtraVars(t, "a=1", "@"+file, `{"b": {"c": true}}`, "eq=x=y", "n=override")
	if err != nil {
		t.Fatal(err)
	}
	if got["a"] != "from-file" || got["n"] != "override" || got["eq"] != "x=y" {
		t.Errorf("got %v", got)
	}
	if b, ok := got["b"].(map[string]any); !ok || b["c"] != true {
		t.Errorf("b = %v", got["b"])
	}
	// inventory.ParseExtraVars is stricter than the parser cmd/kmsctl had:
	// names must be identifiers (" a =1" and "my-var=1" are refused).
	for _, bad := range []string{"novalue", "=x", " a =1", "my-var=1", "@/nonexistent.yml", "{not json", "@" + filepath.Dir(file)} {
		if _, err := decodeExtraVars(t, bad); err == nil {
			t.Errorf("-e %q accepted", bad)
		} else if !strings.Contains(err.Error(), "extra vars") {
			t.Errorf("-e %q: error %q does not say extra vars", bad, err)
		}
	}
}
