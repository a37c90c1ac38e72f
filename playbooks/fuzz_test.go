package playbooks

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: no input makes Decode panic, and a decoded playbook has a
// hosts pattern and a module for every task.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yml")
	files = append(files, "builtin/ping.yml", "builtin/facts.yml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	reg := builtin()
	f.Fuzz(func(t *testing.T, data []byte) {
		pb, err := Decode("fuzz.yml", data, nil, reg)
		if err != nil {
			return
		}
		for _, p := range pb.Plays {
			if p.Hosts == "" {
				t.Errorf("play %q decoded without hosts", p.Name)
			}
			for _, task := range append(p.Tasks, p.Handlers...) {
				if task.Module == "" || task.Pos == "" {
					t.Errorf("task %+v decoded without module or position", task)
				}
			}
		}
	})
}
