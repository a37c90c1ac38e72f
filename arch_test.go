// Tests of the project's shape: the import directions of docs/design.md §5.2 and a
// doc comment on every package.
package kmsctl_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/kmsctl/kmsctl"

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Deps       []string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", "./...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// rel returns the package path relative to the module ("" for the root).
func rel(path string) string {
	return strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
}

// top returns the first path element of a module package ("kms" for "kms/kmsim").
func top(path string) string {
	r := rel(path)
	if i := strings.IndexByte(r, '/'); i >= 0 {
		return r[:i]
	}
	return r
}

// allowed lists, per top-level folder, the other top-level folders of the
// module that its packages may depend on (directly or not), as
// docs/design.md §5.2 draws them. A folder may always use its own
// subpackages, and any folder may use the pure redact/.
var allowed = map[string][]string{
	"redact":    {},
	"hsm":       {},
	"yamlpos":   {},
	"safepath":  {},
	"inventory": {"yamlpos", "safepath"},
	"remote":    {},
	"kms":       {"hsm"},
	"tasks":     {}, // the engine stays generic: no Key Manager, no transport, no inventory
	"modules":   {"tasks", "safepath"},
	// the Key Manager modules: the engine, the client, HSM keys and the
	// resolved inventory host; never the transport
	"kmsmodules": {"tasks", "kms", "hsm", "inventory", "yamlpos", "safepath"},
	"playbooks":  {"tasks", "inventory", "yamlpos", "safepath"},
	// the file-backed run journal behind the engine's hook
	"journal": {"tasks"},
	// the local cluster locks: pure apart from the files it is given
	"lock": {},
	// the cluster leases on the nodes: pure apart from the connections it is given
	"lease": {},
	"cmd":   {"playbooks", "tasks", "modules", "kmsmodules", "inventory", "hsm", "kms", "remote", "yamlpos", "safepath", "journal", "lock", "lease"},
	"e2e":   {"remote", "hsm", "kms", "inventory"},
	"bench": {"remote", "hsm", "kms"},
}

// transportLibs are the SSH and SFTP libraries. Only the transport (remote/)
// and what wires or tests it may depend on them; the pure packages (the
// engine, modules, inventory, playbooks, the Key Manager client) may not.
var transportLibs = []string{"golang.org/x/crypto/ssh", "github.com/pkg/sftp"}

// transportUsers are the top-level folders allowed to depend on transportLibs.
var transportUsers = map[string]bool{"remote": true, "cmd": true, "e2e": true, "bench": true}

func TestImportDirections(t *testing.T) {
	for _, p := range listPackages(t) {
		if rel(p.ImportPath) == "" {
			continue
		}
		from := top(p.ImportPath)
		ok, known := allowed[from]
		if !known {
			t.Errorf("package %s lives in top-level folder %q, which has no import rule here; add one", p.ImportPath, from)
			continue
		}
		for _, d := range p.Deps {
			if d == "github.com/urfave/cli/v2" && !strings.HasPrefix(rel(p.ImportPath), "cmd/kmsctl") {
				t.Errorf("%s depends on urfave/cli: only cmd/kmsctl may", p.ImportPath)
			}
			for _, lib := range transportLibs {
				if (d == lib || strings.HasPrefix(d, lib+"/")) && !transportUsers[from] {
					t.Errorf("%s depends on %s: only %v may use the SSH and SFTP libraries", p.ImportPath, d, keys(transportUsers))
				}
			}
			if !strings.HasPrefix(d, module+"/") {
				continue
			}
			to := top(d)
			if to == from || to == "redact" {
				continue
			}
			permitted := false
			for _, a := range ok {
				permitted = permitted || a == to
			}
			if !permitted {
				t.Errorf("%s depends on %s: %s/ may use only %v", p.ImportPath, d, from, ok)
			}
		}
	}
}

func TestEveryPackageHasDocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if rel(p.ImportPath) == "" {
			continue
		}
		want := "Package " + p.Name + " "
		if p.Name == "main" {
			want = "Command "
		}
		if !strings.HasPrefix(p.Doc, strings.TrimSpace(want)) {
			t.Errorf("package %s has doc %q; want a comment starting %q", p.ImportPath, p.Doc, want)
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
