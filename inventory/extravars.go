package inventory

import (
	"fmt"
	"os"
	"strings"

	"github.com/kmsctl/kmsctl/yamlpos"
)

// ParseExtraVars turns -e arguments into extra vars, later arguments
// overriding earlier ones. Each argument is one of:
//
//   - KEY=VALUE: one variable with a string value (the whole rest of the
//     argument, spaces included; unlike Ansible, one variable per -e);
//   - @FILE: a YAML or JSON file holding a mapping of variables (LoadVarsFile);
//   - {...}: an inline YAML or JSON mapping ({"kms_port": 7474}).
//
// Variable names must be identifiers. The variables written on the command
// line (KEY=VALUE and {...}) get the inventory's known-variable check, like
// a vars file: the values of the variables kmsctl knows are checked (again
// when used, by Resolve and Node), and a misspelt kms_*/ansible_* name is
// refused with the name it is likely meant to be. A secret variable (IsSecret) on the command line is refused, since
// every user of the machine can read it in ps: it belongs in -e @FILE. Every
// such problem is reported at once, at "-e", in a *yamlpos.List; a refused
// secret wraps an error with a Refused() bool method that returns true.
func ParseExtraVars(args []string) (map[string]any, error) {
	out := map[string]any{}
	var probs problems
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
				if secretOnCommandLine(&probs, k) {
					continue
				}
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
			if secretOnCommandLine(&probs, k) {
				continue
			}
			if e := checkVar(k, v); e != nil {
				e.Pos, e.Field = extraPos, k
				probs.addErr(e)
				continue
			}
			if s := suggestKnown(k); s != "" {
				probs.add(extraPos, k, fmt.Sprintf("unknown variable %q looks like a misspelling", k), "did you mean "+s+"?")
				continue
			}
			out[k] = v
		}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// secretOnCommandLine records a refusal when the variable name, given on
// kmsctl's command line, holds a secret (IsSecret), and reports
// whether it did.
func secretOnCommandLine(probs *problems, name string) bool {
	if !IsSecret(name) {
		return false
	}
	const problem = "a secret on kmsctl's command line is visible to every user of this machine (ps, /proc/PID/cmdline) and stays in the shell history"
	probs.addErr(&yamlpos.Error{Pos: extraPos, Field: name, Problem: problem,
		Hint: "write it to a file only you can read, chmod 600 FILE, and pass -e @FILE; the admin API key and the HSM key belong in MINIO_KMS_API_KEY and MINIO_KMS_HSM_KEY",
		Err:  refusal("secret variable " + name + " given on the command line")})
	return true
}

// refusal is an error refused by a safety rule (the CLI exits 4 for it).
type refusal string

// Error returns the refusal's description.
func (r refusal) Error() string { return string(r) }

// Refused reports that this is a refusal by a safety rule.
func (refusal) Refused() bool { return true }

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
