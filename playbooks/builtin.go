package playbooks

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kmsctl/kmsctl/tasks"
)

//go:embed builtin/*.yml
var builtinFS embed.FS

// builtinDir is the directory of the embedded playbooks.
const builtinDir = "builtin"

// Info describes a built-in playbook.
type Info struct {
	// Name is what `kmsctl play NAME` takes.
	Name string
	// Description is the playbook's first comment line.
	Description string
}

// builtinFiles returns the embedded playbooks as a file system rooted at
// their directory.
func builtinFiles() fs.FS {
	sub, err := fs.Sub(builtinFS, builtinDir)
	if err != nil {
		panic(fmt.Sprintf("embedded playbooks: %v", err)) // impossible: the directory is embedded
	}
	return sub
}

// List returns the built-in playbooks, sorted by name.
func List() []Info {
	files := builtinFiles()
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(fmt.Sprintf("embedded playbooks: %v", err)) // impossible: the directory is embedded
	}
	var out []Info
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".yml")
		if !ok {
			continue
		}
		b, err := fs.ReadFile(files, e.Name())
		if err != nil {
			panic(fmt.Sprintf("embedded playbook %s: %v", e.Name(), err))
		}
		out = append(out, Info{Name: name, Description: description(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// description returns the text of the first comment line of a playbook.
func description(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if s, ok := strings.CutPrefix(line, "#"); ok {
			return strings.TrimSpace(s)
		}
		if line != "" && line != "---" {
			return ""
		}
	}
	return ""
}

// ErrUnknown is wrapped by Show and Load when no built-in playbook has the name.
var ErrUnknown = errors.New("no such built-in playbook")

// Show returns the YAML of the built-in playbook called name (".yml" optional).
func Show(name string) ([]byte, error) {
	name = strings.TrimSuffix(name, ".yml")
	b, err := fs.ReadFile(builtinFiles(), name+".yml")
	if err != nil || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("show playbook %q: %w (built-in: %s)", name, ErrUnknown, strings.Join(names(), ", "))
	}
	return b, nil
}

func names() []string {
	var out []string
	for _, i := range List() {
		out = append(out, i.Name)
	}
	return out
}

// Load decodes a playbook: the file at nameOrPath when one exists, else the
// built-in playbook of that name. reg validates its modules.
func Load(nameOrPath string, reg *tasks.Registry) (*Playbook, error) {
	b, err := os.ReadFile(nameOrPath)
	switch {
	case err == nil:
		dir := filepath.Dir(nameOrPath)
		return Decode(nameOrPath, b, os.DirFS(dir), reg)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read playbook: %w", err)
	}
	b, serr := Show(nameOrPath)
	if serr != nil {
		return nil, fmt.Errorf("load playbook %q: no such file, and %w (built-in: %s)", nameOrPath, ErrUnknown, strings.Join(names(), ", "))
	}
	name := strings.TrimSuffix(nameOrPath, ".yml")
	return Decode("builtin:"+name+".yml", b, builtinFiles(), reg)
}
