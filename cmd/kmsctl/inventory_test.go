package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/NAME, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestInventoryCommands(t *testing.T) {
	cases := []struct {
		golden string
		args   []string
	}{
		{"inventory-list.txt", []string{"inventory", "list"}},
		{"inventory-list-limit.txt", []string{"inventory", "list", "--limit", "kms:!kms2"}},
		{"inventory-list.json", []string{"inventory", "list", "--output", "json"}},
		{"inventory-graph.txt", []string{"inventory", "graph"}},
		{"inventory-graph-vars.txt", []string{"inventory", "graph", "--vars"}},
	}
	for _, c := range cases {
		te := testEnv(t)
		// The same value in the environment: masked wherever it appears.
		te.vars[envAPIKey] = sentinel
		if code := te.run(t, append(c.args, "-i", "testdata/inventory.yml")...); code != 0 {
			t.Fatalf("%q: exit %d: %s", c.args, code, te.errOut)
		}
		out := te.out.String()
		if strings.Contains(out, "SENTINEL") {
			t.Errorf("%q: the secret is printed:\n%s", c.args, out)
		}
		golden(t, c.golden, out)
		if strings.HasSuffix(c.golden, ".json") {
			var v struct {
				Hosts  map[string]map[string]any
				Groups map[string][]string
			}
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("inventory list --output json: %v", err)
			}
			if v.Hosts["kms1"]["ansible_host"] != "10.0.0.1" || len(v.Groups["kms"]) != 2 {
				t.Errorf("json = %+v", v)
			}
		}
	}
}

// TestInventoryListExtraVars: -e is over every other variable in the listing
// too (what a play sees), derived kms_endpoint included, secrets masked.
func TestInventoryListExtraVars(t *testing.T) {
	te := testEnv(t)
	// A secret comes from a file: on the command line it is refused.
	secrets := filepath.Join(t.TempDir(), "secrets.yml")
	if err := os.WriteFile(secrets, []byte("my_token: SENTINEL-e-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := te.run(t, "inventory", "list", "--limit", "kms1", "-i", "testdata/inventory.yml",
		"-e", `{"kms_port": 7400}`, "-e", "ansible_user=ops", "-e", "@"+secrets); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errOut)
	}
	out := te.out.String()
	for _, want := range []string{"  ansible_user: ops\n", "  kms_port: 7400\n", "  kms_endpoint: 10.0.0.1:7400\n", "  my_token: [REDACTED]\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SENTINEL") {
		t.Errorf("the secret is printed:\n%s", out)
	}
}
