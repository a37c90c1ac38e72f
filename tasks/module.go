package tasks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Module is one kind of task (command, copy, service, ...). Modules are the
// seam for new kinds of work (the Key Manager modules register here too):
// implement Module and Registry.Register it.
//
// Check mode is structural: in --check the engine calls only Plan, which
// must not change anything and says what Apply would do; otherwise it calls
// only Apply, which usually starts with its own Plan and returns early when
// there is nothing to do, so that both report the same changed verdict.
type Module interface {
	// Spec describes the module's arguments for static validation.
	Spec() Spec
	// Plan reports read-only what Apply would change. A module that cannot
	// know without acting (command without creates/removes) returns a
	// Result with Skipped set.
	Plan(ctx context.Context, env *Env) (Result, error)
	// Apply makes the change and reports it. A non-nil error fails the
	// host's task (or marks it unreachable when the error has an
	// Unreachable() bool method returning true).
	Apply(ctx context.Context, env *Env) (Result, error)
}

// Result is what a module reports for one host.
type Result struct {
	Changed bool
	Failed  bool   // the module ran but its outcome is a failure (non-zero exit, failed assertion)
	Skipped bool   // nothing was done or planned (check mode for command without creates/removes)
	Msg     string // short human message
	RC      int    // exit code of a command
	Stdout  string
	Stderr  string
	Diff    string         // unified diff of a file content change (only when Env.Diff, never for secrets)
	Data    map[string]any // extra registered fields (path, state, checksum, enabled, ...)
	Facts   map[string]any // variables set on the host for later tasks (set_fact)
}

// Vars is the registered form of the result, as a task's register variable
// and in changed_when/failed_when/until expressions: rc, stdout,
// stdout_lines, stderr, stderr_lines, changed, failed, skipped, msg, plus Data.
func (r Result) Vars() map[string]any {
	m := make(map[string]any, 10+len(r.Data))
	for k, v := range r.Data {
		m[k] = v
	}
	m["changed"] = r.Changed
	m["failed"] = r.Failed
	m["skipped"] = r.Skipped
	m["msg"] = r.Msg
	m["rc"] = r.RC
	m["stdout"] = r.Stdout
	m["stderr"] = r.Stderr
	m["stdout_lines"] = lines(r.Stdout)
	m["stderr_lines"] = lines(r.Stderr)
	return m
}

func lines(s string) []any {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return []any{}
	}
	parts := strings.Split(s, "\n")
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = strings.TrimSuffix(p, "\r")
	}
	return out
}

// Env is what a module gets to act on one host for one task.
type Env struct {
	Conn  Conn           // the host's connection, wrapped for become when asked; nil for Spec.Local modules
	Host  Host           // the host
	Args  Args           // the task's arguments, templated for this host
	Vars  map[string]any // every variable visible to the task on this host
	Diff  bool           // --diff: fill Result.Diff for content changes
	NoLog bool           // the task is no_log: nothing secret may go into Msg
	Files fs.FS          // where relative local paths resolve (nil = working directory)

	eval   func(src string, vars map[string]any) (any, error)
	render func(src string, vars map[string]any) (string, error)
	sums   *sync.Map // local file sha256 cache for the run: sumKey → *sumEntry
}

// Eval evaluates an expression (see package doc) against the task's variables.
func (e *Env) Eval(src string) (any, error) { return e.eval(src, e.Vars) }

// EvalBool evaluates an expression that must be true or false.
func (e *Env) EvalBool(src string) (bool, error) {
	v, err := e.eval(src, e.Vars)
	if err != nil {
		return false, err
	}
	return asBool(src, v)
}

// Render renders a {{ template }} against the task's variables.
func (e *Env) Render(src string) (string, error) { return e.render(src, e.Vars) }

// ReadLocal reads a file on the machine running kmsctl: absolute paths from
// the file system, relative ones from Env.Files (or the working directory).
func (e *Env) ReadLocal(name string) ([]byte, error) {
	fsys, fname := e.localFS(name)
	b, err := fs.ReadFile(fsys, fname)
	if err != nil {
		return nil, fmt.Errorf("read local file: %w", err)
	}
	return b, nil
}

// OpenLocal opens a file on the machine running kmsctl, resolved like ReadLocal.
func (e *Env) OpenLocal(name string) (fs.File, error) {
	fsys, fname := e.localFS(name)
	f, err := fsys.Open(fname)
	if err != nil {
		return nil, fmt.Errorf("open local file: %w", err)
	}
	return f, nil
}

// localFS resolves a local path to a file system and a name in it.
func (e *Env) localFS(name string) (fs.FS, string) {
	switch {
	case filepath.IsAbs(name):
		vol := filepath.VolumeName(name)
		return os.DirFS(vol + string(filepath.Separator)), localName(strings.TrimPrefix(name, vol))
	case e.Files == nil:
		return os.DirFS("."), localName(name)
	}
	return e.Files, localName(name)
}

// localName turns a path into an fs.FS name ("." for the root). A
// relative path leaving its root ("../x") stays invalid, so opening it fails.
func localName(name string) string {
	n := path.Clean(filepath.ToSlash(name))
	if strings.HasPrefix(n, "/") {
		n = strings.TrimLeft(n, "/")
		if n == "" {
			n = "."
		}
	}
	return n
}

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
}

// Registry maps module names to modules. It is the seam for new modules.
// Register everything before Engine.Run; lookups are safe for concurrent use.
type Registry struct {
	mu   sync.RWMutex
	mods map[string]Module
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{mods: map[string]Module{}} }

// Builtin returns a new registry holding the built-in modules: command,
// shell, service, file, copy, template, fetch, wait_for, assert, set_fact,
// ping, stat, debug.
func Builtin() *Registry {
	r := NewRegistry()
	r.Register("command", commandModule{})
	r.Register("shell", shellModule{})
	r.Register("service", serviceModule{})
	r.Register("file", fileModule{})
	r.Register("copy", copyModule{})
	r.Register("template", templateModule{})
	r.Register("fetch", fetchModule{})
	r.Register("wait_for", waitForModule{})
	r.Register("assert", assertModule{})
	r.Register("set_fact", setFactModule{})
	r.Register("ping", pingModule{})
	r.Register("stat", statModule{})
	r.Register("debug", debugModule{})
	return r
}

// Register adds or replaces the module called name.
func (r *Registry) Register(name string, m Module) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mods[name] = m
}

// Lookup finds a module by name; "ansible.builtin.copy" finds "copy".
func (r *Registry) Lookup(name string) (Module, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if m, ok := r.mods[name]; ok {
		return m, true
	}
	m, ok := r.mods[strings.TrimPrefix(name, "ansible.builtin.")]
	return m, ok
}

// Names lists the registered module names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.mods))
	for n := range r.mods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks a task statically, as a playbook is decoded: the module
// exists, every argument is known, required ones are present, values have
// the right type (templated strings are checked at run time), and the
// task's expressions compile. It reports every problem, each naming t.Pos.
func (r *Registry) Validate(t Task) error {
	where := t.Pos
	if where == "" {
		where = "task " + strconv.Quote(t.DisplayName())
	}
	m, ok := r.Lookup(t.Module)
	if !ok {
		return fmt.Errorf("%s: unknown module %q (known: %s)", where, t.Module, strings.Join(r.Names(), ", "))
	}
	var errs []error
	for _, p := range checkArgs(m.Spec(), t.Args) {
		errs = append(errs, fmt.Errorf("%s: module %s: %s", where, t.Module, p))
	}
	for _, x := range []struct{ kw, src string }{{"when", t.When}, {"changed_when", t.ChangedWhen}, {"failed_when", t.FailedWhen}, {"until", t.Until}} {
		if x.src == "" {
			continue
		}
		if err := checkExpr(x.src); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, x.kw, err))
		}
	}
	if t.Retries < 0 {
		errs = append(errs, fmt.Errorf("%s: retries must not be negative", where))
	}
	return errors.Join(errs...)
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
