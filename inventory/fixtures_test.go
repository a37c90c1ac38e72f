package inventory

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/yamlpos"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestFixtures loads every fixture: each testdata/valid/X.yml must load and
// its Graph (with vars) must equal X.graph; each testdata/invalid/X.yml must
// fail with exactly the error lines of X.err, every one with a position.
func TestFixtures(t *testing.T) {
	for _, dir := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no fixtures in testdata/%s", dir)
		}
		for _, f := range files {
			t.Run(dir+"/"+filepath.Base(f), func(t *testing.T) {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				inv, err := Parse(filepath.Base(f), data)
				var got, golden string
				if dir == "valid" {
					if err != nil {
						t.Fatalf("valid fixture failed to load:\n%v", err)
					}
					var buf bytes.Buffer
					if err := inv.Graph(&buf, true); err != nil {
						t.Fatal(err)
					}
					got, golden = buf.String(), strings.TrimSuffix(f, ".yml")+".graph"
				} else {
					if err == nil {
						t.Fatalf("invalid fixture loaded without error")
					}
					var ve *yamlpos.List
					if !errors.As(err, &ve) {
						t.Fatalf("error is %T, want *yamlpos.List: %v", err, err)
					}
					for _, e := range ve.Errs {
						if e.Pos.File != filepath.Base(f) || (e.Pos.Line == 0 && !strings.Contains(e.Problem, "empty") && !strings.Contains(e.Problem, "no hosts")) {
							t.Errorf("error without a file:line position: %v", e)
						}
					}
					got, golden = err.Error()+"\n", strings.TrimSuffix(f, ".yml")+".err"
				}
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("read golden (run go test -update once and review it): %v", err)
				}
				if got != string(want) {
					t.Errorf("output differs from %s\n--- got:\n%s--- want:\n%s", golden, got, want)
				}
			})
		}
	}
}
