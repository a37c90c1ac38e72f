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

//go:embed builtin/*.yml builtin/templates/*.j2
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

// ErrAmbiguous is wrapped by Load when a bare name means both a file in
// the current directory and a built-in playbook.
var ErrAmbiguous = errors.New("names both a file in the current directory and a built-in playbook")

// BuiltinPrefix names a built-in playbook explicitly ("builtin:ping"),
// whatever files are in the current directory.
const BuiltinPrefix = "builtin:"

// Show returns the YAML of the built-in playbook called name (".yml" and
// BuiltinPrefix optional), or the text of one of their templates named
// "templates/NAME.j2" (as the playbooks' src: names it).
func Show(name string) ([]byte, error) {
	if tpl, ok := strings.CutPrefix(strings.TrimPrefix(name, BuiltinPrefix), "templates/"); ok {
		b, err := fs.ReadFile(builtinFiles(), "templates/"+tpl)
		if err != nil || strings.ContainsAny(tpl, "/\\") {
			return nil, fmt.Errorf("show template %q: %w (templates: %s)", name, ErrUnknown, strings.Join(templateNames(), ", "))
		}
		return b, nil
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, BuiltinPrefix), ".yml")
	b, err := fs.ReadFile(builtinFiles(), name+".yml")
	if err != nil || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("show playbook %q: %w (built-in: %s)", name, ErrUnknown, strings.Join(names(), ", "))
	}
	return b, nil
}

// templateNames are the built-in templates as Show takes them.
func templateNames() []string {
	entries, err := fs.ReadDir(builtinFiles(), "templates")
	if err != nil {
		panic(fmt.Sprintf("embedded templates: %v", err)) // impossible: the directory is embedded
	}
	var out []string
	for _, e := range entries {
		out = append(out, "templates/"+e.Name())
	}
	return out
}

func names() []string {
	var out []string
	for _, i := range List() {
		out = append(out, i.Name)
	}
	return out
}

// Load decodes a playbook; reg validates its modules. nameOrPath is a
// file, or the name of a built-in playbook: "builtin:NAME" always names
// the built-in; a path with a directory ("./ping.yml") always names a
// file; a bare NAME (".yml" optional) names the built-in when there is
// one, else the file. A bare NAME that means both a built-in and a file
// NAME or NAME.yml in the current directory is refused (ErrAmbiguous),
// with both explicit forms in the message, rather than one being run
// silently.
func Load(nameOrPath string, reg *tasks.Registry) (*Playbook, error) {
	if name, ok := strings.CutPrefix(nameOrPath, BuiltinPrefix); ok {
		return loadBuiltin(name, reg)
	}
	bare := !strings.ContainsAny(nameOrPath, "/\\")
	if _, err := Show(nameOrPath); bare && err == nil {
		name := strings.TrimSuffix(nameOrPath, ".yml")
		var files []string
		for _, f := range []string{name, name + ".yml"} {
			if _, err := os.Stat(f); err == nil {
				files = append(files, "./"+f)
			}
		}
		if len(files) > 0 {
			return nil, fmt.Errorf("load playbook %q: %w: name the file as %s, or the built-in as %s%s", nameOrPath, ErrAmbiguous, strings.Join(files, " or "), BuiltinPrefix, name)
		}
		return loadBuiltin(name, reg)
	}
	b, err := os.ReadFile(nameOrPath)
	switch {
	case err == nil:
		dir := filepath.Dir(nameOrPath)
		return Decode(nameOrPath, b, os.DirFS(dir), reg)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read playbook: %w", err)
	}
	return nil, fmt.Errorf("load playbook %q: no such file, and %w (built-in: %s)", nameOrPath, ErrUnknown, strings.Join(names(), ", "))
}

// loadBuiltin decodes the built-in playbook called name.
func loadBuiltin(name string, reg *tasks.Registry) (*Playbook, error) {
	b, err := Show(name)
	if err != nil {
		return nil, fmt.Errorf("load playbook %s%s: %w", BuiltinPrefix, name, err)
	}
	name = strings.TrimSuffix(name, ".yml")
	return Decode(BuiltinPrefix+name+".yml", b, builtinFiles(), reg)
}
