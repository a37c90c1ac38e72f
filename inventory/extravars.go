package inventory

import (
	"fmt"
	"os"
	"strings"
)

// ParseExtraVars turns -e arguments into extra vars, later arguments
// overriding earlier ones. Each argument is one of:
//
//   - KEY=VALUE: one variable with a string value (the whole rest of the
//     argument, spaces included; unlike Ansible, one variable per -e);
//   - @FILE: a YAML or JSON file holding a mapping of variables (LoadVarsFile);
//   - {...}: an inline YAML or JSON mapping ({"kms_port": 7474}).
//
// Variable names must be identifiers; the values of the variables kmsctl
// knows are checked when used (Resolve, Node), reported at "-e".
func ParseExtraVars(args []string) (map[string]any, error) {
	out := map[string]any{}
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "@"):
			vars, err := LoadVarsFile(a[1:])
			if err != nil {
				return nil, err
			}
			for k, v := range vars {
				out[k] = v
			}
		case strings.HasPrefix(strings.TrimSpace(a), "{"):
			vars, err := ParseVars("-e", []byte(a))
			if err != nil {
				return nil, err
			}
			for k, v := range vars {
				out[k] = v
			}
		default:
			// Never echo what may be a secret value: only a key that is
			// not a secret's name is shown.
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				return nil, fmt.Errorf("parse -e argument %d: no \"=\" (want KEY=VALUE, @FILE or a {...} mapping)", i+1)
			}
			if !varNameRe.MatchString(k) {
				where := fmt.Sprintf("argument %d", i+1)
				if !IsSecret(k) {
					where = k + "=..."
				}
				return nil, fmt.Errorf("parse -e %s: KEY must be made of letters, digits and _, not starting with a digit (want KEY=VALUE)", where)
			}
			out[k] = v
		}
	}
	return out, nil
}

// LoadVarsFile reads a vars file (-e @FILE, a play's vars_files): a YAML or
// JSON mapping of variable names to values, decoded strictly like inventory
// vars (identifier names, no duplicates, known variables type-checked), with
// every problem reported at FILE:LINE:COL.
func LoadVarsFile(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read vars file: %w", err)
	}
	return ParseVars(path, data)
}

// ParseVars parses a vars mapping held in memory; name is used in positions.
// An empty document is an empty mapping.
func ParseVars(name string, data []byte) (map[string]any, error) {
	b := newBuilder()
	b.inv.files = append(b.inv.files, name)
	dst := map[string]variable{}
	b.parseVarsData(name, data, dst)
	if err := b.probs.err(); err != nil {
		return nil, err
	}
	return plain(dst), nil
}
