package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kmsctl/kmsctl/yamlpos"
)

// inventoryFiles returns the inventory files of path (the file itself, or
// the *.yml and *.yaml files of a directory in name order) and the directory
// whose group_vars/ and host_vars/ apply.
func inventoryFiles(path string) ([]string, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("read inventory: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, filepath.Dir(path), nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, "", fmt.Errorf("read inventory directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if !e.IsDir() && (ext == ".yml" || ext == ".yaml") && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("read inventory directory %s: no .yml or .yaml files in it", path)
	}
	return files, path, nil
}

// varsFileExts are the extensions Ansible reads in group_vars/ and host_vars/
// ("" is a file without extension).
var varsFileExts = []string{"", ".yml", ".yaml", ".json"}

// loadVarsDirs applies DIR/group_vars/NAME and DIR/host_vars/NAME to the
// groups and hosts already loaded. NAME may be a file (NAME, NAME.yml,
// NAME.yaml or NAME.json) or a directory whose such files are read in name
// order. Their precedence is Ansible's (see Vars): group_vars/ over every
// group variable written in inventory files, host_vars/ over host variables
// written in inventory files. Files for groups or hosts that are not in the
// inventory are ignored, as in Ansible.
func (b *builder) loadVarsDirs(dir string) error {
	for _, kind := range []string{"group_vars", "host_vars"} {
		files, err := varsDirFiles(filepath.Join(dir, kind))
		if err != nil {
			return err
		}
		for _, f := range files {
			var dst map[string]variable
			if kind == "group_vars" {
				if g, ok := b.inv.groups[f.name]; ok {
					dst = g.dirVars
				}
			} else if h, ok := b.inv.hostByName[f.name]; ok {
				dst = h.dirVars
			}
			if dst == nil {
				continue
			}
			data, err := os.ReadFile(f.path)
			if err != nil {
				return fmt.Errorf("read vars file: %w", err)
			}
			b.parseVarsData(f.path, data, dst)
		}
	}
	return nil
}

type varsDirFile struct {
	name string // group or host name
	path string
}

// varsDirFiles lists the vars files of a group_vars/ or host_vars/ directory
// in name order; a missing directory has none.
func varsDirFiles(dir string) ([]varsDirFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read vars directory: %w", err)
	}
	var out []varsDirFile
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if e.IsDir() {
			sub, err := os.ReadDir(filepath.Join(dir, name))
			if err != nil {
				return nil, fmt.Errorf("read vars directory: %w", err)
			}
			for _, s := range sub {
				if !s.IsDir() && !strings.HasPrefix(s.Name(), ".") && slices.Contains(varsFileExts, filepath.Ext(s.Name())) {
					out = append(out, varsDirFile{name: name, path: filepath.Join(dir, name, s.Name())})
				}
			}
			continue
		}
		ext := filepath.Ext(name)
		if !slices.Contains(varsFileExts, ext) {
			continue
		}
		out = append(out, varsDirFile{name: strings.TrimSuffix(name, ext), path: filepath.Join(dir, name)})
	}
	return out, nil
}

// parseVarsData decodes one vars file (a mapping of variables, or empty)
// into dst, collecting problems with positions in b.
func (b *builder) parseVarsData(name string, data []byte, dst map[string]variable) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			b.probs.addErr(yamlpos.Syntax(name, err))
		}
		return
	}
	if len(doc.Content) > 0 {
		b.parseVars(name, dst, doc.Content[0], "")
	}
}
