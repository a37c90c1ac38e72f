package inventory

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/yamlpos"
)

// FuzzParse checks that Parse never panics, that every failure is a
// *yamlpos.List whose problems carry the file name, and that whatever
// loads satisfies the invariants the rest of kmsctl relies on.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yml")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("all:\n  hosts:\n    h[1:3]:\n      ansible_port: 22\n"))
	f.Add([]byte("a: &a {children: {b: *a}}\n"))
	f.Add([]byte("all: {hosts: {h: {x: !!binary aGk=}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse("f.yml", data)
		if err != nil {
			var ve *yamlpos.List
			if !errors.As(err, &ve) || len(ve.Errs) == 0 {
				t.Fatalf("error is not a non-empty *yamlpos.List: %T %v", err, err)
			}
			for _, e := range ve.Errs {
				if !strings.HasPrefix(e.Pos.File, "f.yml") {
					t.Fatalf("problem without the file name: %v", e)
				}
			}
			return
		}
		hosts := inv.Hosts()
		if len(hosts) == 0 {
			t.Fatal("loaded an inventory without hosts")
		}
		sorted := slices.Clone(hosts)
		slices.Sort(sorted)
		if len(slices.Compact(sorted)) != len(hosts) {
			t.Fatalf("duplicate hosts: %v", hosts)
		}
		groups := inv.Groups()
		if groups[0] != GroupAll || groups[len(groups)-1] != GroupUngrouped {
			t.Fatalf("groups = %v", groups)
		}
		all, err := inv.Select("all")
		if err != nil || !slices.Equal(all, hosts) {
			t.Fatalf("Select(all) = %v, %v; want %v", all, err, hosts)
		}
		var graph bytes.Buffer
		if err := inv.Graph(&graph, true); err != nil {
			t.Fatal(err)
		}
		graphLines := map[string]bool{}
		for _, l := range strings.Split(graph.String(), "\n") {
			if _, name, ok := strings.Cut(l, "--"); ok {
				graphLines[name] = true
			}
		}
		for _, h := range hosts {
			if p := checkHostName(h); p != "" {
				t.Fatalf("loaded invalid host name: %s", p)
			}
			if _, err := inv.Vars(h, nil); err != nil {
				t.Fatalf("Vars(%s): %v", h, err)
			}
			if _, err := inv.Resolve(h, nil); err != nil {
				t.Fatalf("loaded, but Resolve(%s) fails: %v", h, err)
			}
			if _, err := inv.Node(h, nil); err != nil {
				t.Fatalf("loaded, but Node(%s) fails: %v", h, err)
			}
			if got, err := inv.Select(h); err != nil || !slices.Contains(got, h) {
				t.Fatalf("Select(%q) = %v, %v", h, got, err)
			}
			if !graphLines[h] {
				t.Fatalf("host %s missing from the graph", h)
			}
		}
	})
}
