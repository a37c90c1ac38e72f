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

// ArgsChecker is implemented by a Module that checks its arguments beyond
// its Spec as a playbook is decoded (Registry.Validate), so that a problem
// is found by --syntax-check and before any host is touched. Arguments
// holding a template are not known yet (Args.Literal): CheckArgs leaves
// them alone, and Plan and Apply check every value again.
type ArgsChecker interface {
	CheckArgs(args Args) error
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
	// Memo is shared by every module call of one Engine.Run, for work worth
	// doing once per run rather than once per host (copy's checksums of
	// local files). Key it with a type of the module's own. nil = no sharing.
	Memo *sync.Map
	// Secret holds the names of the arguments whose value is, holds or was
	// computed from a secret (see package doc, Secrets): content built
	// from a secret is written 0600 and never shown in a diff.
	Secret map[string]bool
	// Peer returns the connection to another host, named as the inventory
	// names it, for a module that moves a file from one host to the task's
	// (copy's from_host): a host of the run, or one outside every play,
	// connected on first use and shared with delegate_to, wrapped for
	// become as the task's own connection is (with that host's
	// ansible_become_user). nil when the engine offers none (an Env built
	// by hand without it; Spec.Local modules).
	Peer func(ctx context.Context, host string) (Conn, error)

	ev  *evaluator     // the run's; nil (an Env built by hand) = a fresh one per call
	sec *secrets       // the run's; nil for an Env built by hand
	alt map[string]any // Vars with every secret disguised; nil when they hold none
}

// evaluator returns the run's evaluator, or a fresh one for an Env built
// outside Engine.Run (a module's unit test).
func (e *Env) evaluator() *evaluator {
	if e.ev == nil {
		return &evaluator{}
	}
	return e.ev
}

// secrets returns the run's secrets, or none for an Env built by hand.
func (e *Env) secrets() *secrets {
	if e.sec == nil {
		return &secrets{}
	}
	return e.sec
}

// AddSecret registers value, a secret the module read itself (a key from
// a file, a command or a host), with the run's redactor (Engine.Redactor),
// so that it is masked wherever it could be shown: messages, output,
// diffs, the run log. A value that later holds it is secret too (it may
// not reach a remote command line). Register a secret as soon as it is
// read, before anything could quote it. An Env built by hand has no
// redactor: AddSecret does nothing.
func (e *Env) AddSecret(value string) { e.secrets().register(value) }

// Eval evaluates an expression (see package doc) against the task's
// variables. A value computed from a secret is registered with the
// redactor, so it is masked wherever it is shown.
func (e *Env) Eval(src string) (any, error) {
	v, _, err := evalIn(e.evaluator(), e.secrets(), src, scope{vars: e.Vars, alt: e.alt})
	return v, err
}

// EvalBool evaluates an expression that must be true or false.
func (e *Env) EvalBool(src string) (bool, error) { return e.evaluator().evalBool(src, e.Vars) }

// Render renders a {{ template }} against the task's variables. Output
// computed from a secret is registered with the redactor.
func (e *Env) Render(src string) (string, error) {
	out, _, err := e.RenderSecret(src)
	return out, err
}

// RenderSecret is Render, also reporting whether the output holds or was
// computed from a secret (the template module writes it 0600, without diff).
func (e *Env) RenderSecret(src string) (string, bool, error) {
	return renderIn(e.evaluator(), e.secrets(), src, scope{vars: e.Vars, alt: e.alt})
}

// ReadLocal reads a file on the machine running kmsctl, resolved like LocalFS.
func (e *Env) ReadLocal(name string) ([]byte, error) {
	fsys, fname := e.LocalFS(name)
	b, err := fs.ReadFile(fsys, fname)
	if err != nil {
		return nil, fmt.Errorf("read local file: %w", asGiven(err, name))
	}
	return b, nil
}

// asGiven returns err with the path of a *fs.PathError replaced by name,
// the path as the playbook gives it ("/tmp/x", where the file system
// LocalFS returns knows it as "tmp/x").
func asGiven(err error, name string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: name, Err: pe.Err}
	}
	return err
}

// OpenLocal opens a file on the machine running kmsctl, resolved like LocalFS.
func (e *Env) OpenLocal(name string) (fs.File, error) {
	fsys, fname := e.LocalFS(name)
	f, err := fsys.Open(fname)
	if err != nil {
		return nil, fmt.Errorf("open local file: %w", asGiven(err, name))
	}
	return f, nil
}

// LocalFS resolves a path on the machine running kmsctl to a file system
// and a name in it: absolute paths from the file system, relative ones
// from Env.Files (or the working directory).
func (e *Env) LocalFS(name string) (fs.FS, string) {
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

// Registry maps module names to modules. It is the seam for new modules.
// Register everything before Engine.Run; lookups are safe for concurrent use.
type Registry struct {
	mu   sync.RWMutex
	mods map[string]Module
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{mods: map[string]Module{}} }

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
// the right type (templated strings are checked at run time), the module's
// own checks pass (ArgsChecker), and the task's expressions compile. It
// reports every problem, each naming t.Pos.
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
	probs := checkArgs(m.Spec(), t.Args)
	for _, p := range probs {
		errs = append(errs, fmt.Errorf("%s: module %s: %s", where, t.Module, p))
	}
	if c, ok := m.(ArgsChecker); ok && len(probs) == 0 {
		if err := c.CheckArgs(Args(t.Args)); err != nil {
			errs = append(errs, fmt.Errorf("%s: module %s: %w", where, t.Module, err))
		}
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
	for _, k := range sortedKeys(t.Args) {
		walkStrings(t.Args[k], func(s string) {
			if err := ParseTemplate(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: module %s: argument %s: %w", where, t.Module, k, err))
			}
		})
	}
	for _, x := range []struct {
		kw  string
		val any
	}{{"name", t.Name}, {"delegate_to", t.DelegateTo}, {"loop", t.Loop}} {
		if s, ok := x.val.(string); ok && x.kw == "loop" && !isTemplated(s) {
			if err := checkExpr(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: loop: %w", where, err))
			}
			continue
		}
		walkStrings(x.val, func(s string) {
			if err := ParseTemplate(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", where, x.kw, err))
			}
		})
	}
	return errors.Join(errs...)
}

// ParseTemplate checks the syntax of a template (see package doc,
// Templates) without rendering it: unknown tags and filters, unclosed
// blocks. Variables are not looked up.
func ParseTemplate(src string) error {
	if !isTemplated(src) {
		return nil
	}
	var ev evaluator
	if _, err := ev.compileTemplate(wrapTemplate(src)); err != nil {
		return fmt.Errorf("parse template %q: %w", src, err)
	}
	return nil
}

// RenderTemplate renders a template (see package doc, Templates) against
// vars, outside any run: for what is known before one, such as a play's
// hosts: pattern over the extra vars.
func RenderTemplate(src string, vars map[string]any) (string, error) {
	var ev evaluator
	return ev.render(src, vars)
}

// ParseExpr checks the syntax of an expression (see package doc,
// Expressions) without evaluating it.
func ParseExpr(src string) error { return checkExpr(src) }
