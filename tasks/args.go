package tasks

import (
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ArgType is the type an argument must have.
type ArgType int

// Argument types. A string holding a {{ template }} passes static
// validation for every type and is converted after templating.
const (
	ArgString   ArgType = iota // a string (numbers are accepted and formatted)
	ArgBool                    // true/false, or yes/no/on/off strings
	ArgInt                     // an integer
	ArgMode                    // file mode: an octal string "0600" or the integer YAML decodes 0600 to
	ArgList                    // a list of strings, or one string
	ArgDuration                // seconds as a number, or a Go duration string "1m30s"
	ArgMap                     // a mapping
	ArgAny                     // anything
)

// String names the type for error messages.
func (t ArgType) String() string {
	return [...]string{"string", "boolean", "integer", "file mode", "list", "duration", "mapping", "any"}[t]
}

// ArgSpec describes one argument.
type ArgSpec struct {
	Type     ArgType
	Required bool
	// CmdLine says the module puts the value on a remote command line (a
	// command, a path, a unit or user name): every user of the host can
	// read it there (ps, /proc/PID/cmdline), so the engine refuses a task
	// whose value here is, or is computed from, a secret.
	CmdLine bool
}

// Spec describes a module's arguments.
type Spec struct {
	Args map[string]ArgSpec
	// ExactlyOneOf lists groups of arguments of which exactly one must be given.
	ExactlyOneOf [][]string
	// AnyArgs accepts arguments of any name (set_fact).
	AnyArgs bool
	// Local modules run on the control machine only: the engine does not
	// connect to the host for them (assert, set_fact).
	Local bool
	// SetsFacts says every argument becomes a host variable (set_fact).
	SetsFacts bool
	// ReadOnly says Apply never changes anything, on the host or on the
	// control machine (stat, ping, assert): its calls are not journaled
	// (Engine.Journal). A module that may change something leaves it false.
	ReadOnly bool
	// ClusterLock says the module changes a Key Manager cluster's
	// membership or state (kms_remove_node, kms_add_node, kms_restore):
	// a run of a play that uses it must first hold the lock of its hosts'
	// clusters (and their leases on the nodes), so that two such runs,
	// from one bastion or two, never change one cluster at once.
	ClusterLock bool
}

// checkArgs returns the problems of args against spec.
func checkArgs(spec Spec, args map[string]any) []string {
	var probs []string
	names := make([]string, 0, len(args))
	for k := range args {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		as, ok := spec.Args[k]
		if !ok {
			if !spec.AnyArgs {
				probs = append(probs, fmt.Sprintf("unknown argument %q (accepted: %s)", k, strings.Join(specNames(spec), ", ")))
			}
			continue
		}
		if err := checkType(as.Type, args[k]); err != nil {
			probs = append(probs, fmt.Sprintf("argument %q: %v", k, err))
		}
	}
	for _, k := range specNames(spec) {
		if spec.Args[k].Required {
			if _, ok := args[k]; !ok {
				probs = append(probs, fmt.Sprintf("missing required argument %q", k))
			}
		}
	}
	for _, group := range spec.ExactlyOneOf {
		n := 0
		for _, k := range group {
			if _, ok := args[k]; ok {
				n++
			}
		}
		if n != 1 {
			probs = append(probs, fmt.Sprintf("exactly one of %s is required, %d given", strings.Join(group, ", "), n))
		}
	}
	return probs
}

func specNames(spec Spec) []string {
	names := make([]string, 0, len(spec.Args))
	for k := range spec.Args {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Literal reports whether the argument is missing or holds no template:
// its value is known as the playbook is decoded (see ArgsChecker).
func (a Args) Literal(name string) bool { return !isTemplated(a[name]) }

func isTemplated(v any) bool {
	s, ok := v.(string)
	return ok && (strings.Contains(s, "{{") || strings.Contains(s, "{%"))
}

func checkType(t ArgType, v any) error {
	if isTemplated(v) || t == ArgAny {
		return nil
	}
	var err error
	switch t {
	case ArgString:
		_, err = toString(v)
	case ArgBool:
		_, err = toBool(v)
	case ArgInt:
		_, err = toInt(v)
	case ArgMode:
		_, err = toMode(v)
	case ArgList:
		_, err = toList(v)
	case ArgDuration:
		_, err = toDuration(v)
	case ArgMap:
		if _, ok := v.(map[string]any); !ok {
			err = fmt.Errorf("want a mapping, got %s", kindOf(v))
		}
	}
	return err
}

// Args are a task's templated arguments with typed getters. Getters return
// the zero value (or the given default) for missing arguments and an error
// naming the argument for wrongly typed ones.
type Args map[string]any

// Has reports whether the argument was given.
func (a Args) Has(name string) bool { _, ok := a[name]; return ok }

// String returns a string argument.
func (a Args) String(name string) (string, error) {
	v, ok := a[name]
	if !ok || v == nil {
		return "", nil
	}
	s, err := toString(v)
	if err != nil {
		return "", fmt.Errorf("argument %s: %w", name, err)
	}
	return s, nil
}

// Bool returns a boolean argument, def when missing.
func (a Args) Bool(name string, def bool) (bool, error) {
	v, ok := a[name]
	if !ok || v == nil {
		return def, nil
	}
	b, err := toBool(v)
	if err != nil {
		return false, fmt.Errorf("argument %s: %w", name, err)
	}
	return b, nil
}

// Int returns an integer argument, def when missing.
func (a Args) Int(name string, def int) (int, error) {
	v, ok := a[name]
	if !ok || v == nil {
		return def, nil
	}
	n, err := toInt(v)
	if err != nil {
		return 0, fmt.Errorf("argument %s: %w", name, err)
	}
	return n, nil
}

// Mode returns a file mode argument and whether it was given.
func (a Args) Mode(name string) (fs.FileMode, bool, error) {
	v, ok := a[name]
	if !ok || v == nil {
		return 0, false, nil
	}
	m, err := toMode(v)
	if err != nil {
		return 0, false, fmt.Errorf("argument %s: %w", name, err)
	}
	return m, true, nil
}

// List returns a list-of-strings argument.
func (a Args) List(name string) ([]string, error) {
	v, ok := a[name]
	if !ok || v == nil {
		return nil, nil
	}
	l, err := toList(v)
	if err != nil {
		return nil, fmt.Errorf("argument %s: %w", name, err)
	}
	return l, nil
}

// Duration returns a duration argument, def when missing.
func (a Args) Duration(name string, def time.Duration) (time.Duration, error) {
	v, ok := a[name]
	if !ok || v == nil {
		return def, nil
	}
	d, err := toDuration(v)
	if err != nil {
		return 0, fmt.Errorf("argument %s: %w", name, err)
	}
	return d, nil
}

func toString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("want a string, got %s", kindOf(v))
}

func toBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "yes", "true", "on", "1", "y":
			return true, nil
		case "no", "false", "off", "0", "n", "":
			return false, nil
		}
		return false, fmt.Errorf("want a boolean, got %q", x)
	case int:
		return x != 0, nil
	}
	return false, fmt.Errorf("want a boolean, got %s", kindOf(v))
}

func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case uint64:
		return int(x), nil
	case float64:
		if x != float64(int(x)) {
			return 0, fmt.Errorf("want an integer, got %v", x)
		}
		return int(x), nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil {
			return 0, fmt.Errorf("want an integer, got %q", x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("want an integer, got %s", kindOf(v))
}

func toMode(v any) (fs.FileMode, error) {
	var n uint64
	switch x := v.(type) {
	case int:
		// YAML decodes an unquoted 0600 to 384: the value is already the
		// mode. A larger number is the classic unquoted "mode: 600" mistake.
		if x < 0 || x > 0o777 {
			return 0, fmt.Errorf("file mode %d is not an octal mode: quote it, as in \"0600\"", x)
		}
		n = uint64(x)
	case string:
		s := strings.TrimPrefix(strings.TrimSpace(x), "0o")
		var err error
		n, err = strconv.ParseUint(s, 8, 32)
		if err != nil {
			return 0, fmt.Errorf("want an octal file mode such as \"0640\", got %q", x)
		}
	default:
		return 0, fmt.Errorf("want an octal file mode such as \"0640\", got %s", kindOf(v))
	}
	if n > 0o7777 {
		return 0, fmt.Errorf("file mode %o is out of range (quote it: \"0640\")", n)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

func toList(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case []string:
		return x, nil
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			s, err := toString(e)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list, got %s", kindOf(v))
}

func toDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case int:
		return time.Duration(x) * time.Second, nil
	case float64:
		return time.Duration(x * float64(time.Second)), nil
	case string:
		s := strings.TrimSpace(x)
		if n, err := strconv.ParseFloat(s, 64); err == nil {
			return time.Duration(n * float64(time.Second)), nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("want seconds or a duration such as \"1m30s\", got %q", x)
		}
		return d, nil
	case time.Duration:
		return x, nil
	}
	return 0, fmt.Errorf("want seconds or a duration, got %s", kindOf(v))
}
