package playbooks

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
	"github.com/kmsctl/kmsctl/yamlpos"
)

// Playbook is a decoded playbook: its plays, before their hosts: patterns
// are resolved against an inventory.
type Playbook struct {
	// Name is the built-in name or the file path the playbook came from.
	Name  string
	Plays []Play
	// Files resolves the playbook's relative local paths (copy src,
	// template src, vars_files): the playbook's directory.
	Files fs.FS
}

// Play is one play of a playbook.
type Play struct {
	Name string
	// Hosts is the inventory pattern of the play's hosts.
	Hosts          string
	Serial         []string
	AnyErrorsFatal *bool
	// Vars are the play's vars, with its vars_files merged over them.
	Vars     map[string]any
	Tasks    []tasks.Task
	Handlers []tasks.Task
	// Pos is "file:line" of the play.
	Pos string
}

// taskKeywords are the keys of a task that are not its module.
var taskKeywords = []string{
	"name", "when", "register", "changed_when", "failed_when", "until", "retries", "delay",
	"ignore_errors", "no_log", "tags", "timeout", "become", "become_user", "notify", "args",
	"loop", "with_items", "loop_control", "delegate_to", "run_once", "check_mode",
}

// unsupportedKeywords are Ansible task keywords kmsctl does not implement;
// they get a clear error rather than "unknown module".
var unsupportedKeywords = []string{
	"with_dict", "with_list", "with_fileglob", "vars", "block", "rescue", "always", "environment",
	"diff", "async", "poll", "local_action", "include_tasks", "import_tasks", "include_role",
	"import_role", "any_errors_fatal",
}

// handlerKeywords are the keys a handler accepts beyond a task's.
var handlerKeywords = []string{"listen"}

// playKeywords are the keys a play accepts.
var playKeywords = []string{
	"name", "hosts", "serial", "any_errors_fatal", "vars", "vars_files", "tasks", "handlers",
	"gather_facts", "tags", "become", "become_user",
}

// freeFormArg is the argument that receives the free-form string of
// command and shell (`command: systemctl daemon-reload`).
const freeFormArg = "cmd"

// freeFormModules accept a free-form string instead of an argument map.
var freeFormModules = []string{"command", "shell"}

// decoder collects every problem of one file.
type decoder struct {
	file  string
	files fs.FS
	reg   *tasks.Registry
	errs  []*yamlpos.Error
}

// pos is the "file:line" of a play or task (Play.Pos, tasks.Task.Pos).
func (d *decoder) pos(n *yaml.Node) string { return fmt.Sprintf("%s:%d", d.file, n.Line) }

// errorf records a problem at n.
func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &yamlpos.Error{Pos: yamlpos.Of(d.file, n), Problem: fmt.Sprintf(format, args...)})
}

// wrapf records a problem at n caused by err, which errors.As still finds
// (the *yamlpos.List of a vars file); the message ends with err's text.
func (d *decoder) wrapf(n *yaml.Node, err error, format string, args ...any) {
	d.errs = append(d.errs, &yamlpos.Error{Pos: yamlpos.Of(d.file, n), Problem: fmt.Sprintf(format, args...) + err.Error(), Err: err})
}

// single returns one problem as the *yamlpos.List every Decode error is.
func single(e *yamlpos.Error) error { return yamlpos.Join([]*yamlpos.Error{e}) }

// Decode decodes and validates playbook YAML. file names the source in
// error messages; files resolves vars_files and is kept for the plays'
// local paths; reg validates the modules and their arguments. Every problem
// is reported, each at its FILE:LINE:COL, as a *yamlpos.List.
func Decode(file string, data []byte, files fs.FS, reg *tasks.Registry) (*Playbook, error) {
	d := &decoder{file: file, files: files, reg: reg}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, single(yamlpos.Syntax(file, err))
	}
	pb := &Playbook{Name: file, Files: files}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, single(&yamlpos.Error{Pos: yamlpos.Pos{File: file}, Problem: "empty playbook: want a list of plays"})
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode {
		return nil, single(&yamlpos.Error{Pos: yamlpos.Of(file, root),
			Problem: "a playbook is a list of plays (- name: ..., hosts: ..., tasks: ...), got " + kindName(root)})
	}
	for _, n := range root.Content {
		if p, ok := d.play(n); ok {
			pb.Plays = append(pb.Plays, p)
		}
	}
	if len(root.Content) == 0 {
		d.errorf(root, "the playbook has no plays")
	}
	// Reported in file order: a play's own problems come before its tasks'.
	if err := yamlpos.Join(d.errs); err != nil {
		return nil, err
	}
	return pb, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// fields returns the key/value pairs of a mapping node, reporting
// duplicates and keys not in allowed.
func (d *decoder) fields(n *yaml.Node, what string, allowed []string, allowOther bool) ([][2]*yaml.Node, bool) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping, got %s", what, kindName(n))
		return nil, false
	}
	seen := map[string]bool{}
	var out [][2]*yaml.Node
	for _, kv := range mergePairs(n) {
		k, v := kv[0], kv[1]
		if seen[k.Value] {
			d.errorf(k, "%s: duplicate key %q", what, k.Value)
			continue
		}
		seen[k.Value] = true
		if !allowOther && !slices.Contains(allowed, k.Value) {
			d.errorf(k, "%s: unknown key %q (accepted: %s)", what, k.Value, strings.Join(allowed, ", "))
			continue
		}
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out, true
}

// mergePairs returns the key/value pairs of a mapping with YAML merge keys
// (<<: *defaults) expanded: merged pairs come first and keys written in the
// mapping itself override them. Merges nest at most maxMergeDepth deep.
func mergePairs(n *yaml.Node) [][2]*yaml.Node { return mergePairsDepth(n, maxMergeDepth) }

// maxMergeDepth bounds nested merge keys (a defence against alias bombs).
const maxMergeDepth = 8

func mergePairsDepth(n *yaml.Node, depth int) [][2]*yaml.Node {
	var own, merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag != "!!merge" {
			own = append(own, [2]*yaml.Node{k, v})
			continue
		}
		sources := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			sources = v.Content
		}
		for _, src := range sources {
			if src.Kind == yaml.AliasNode {
				src = src.Alias
			}
			if src.Kind == yaml.MappingNode && depth > 0 {
				merged = append(merged, mergePairsDepth(src, depth-1)...)
			}
		}
	}
	ownKeys := map[string]bool{}
	for _, kv := range own {
		ownKeys[kv[0].Value] = true
	}
	var out [][2]*yaml.Node
	seen := map[string]bool{}
	for _, kv := range merged {
		if !ownKeys[kv[0].Value] && !seen[kv[0].Value] {
			seen[kv[0].Value] = true
			out = append(out, kv)
		}
	}
	return append(out, own...)
}

func (d *decoder) str(n *yaml.Node, key string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		if n.Tag == "!!null" {
			return ""
		}
		d.errorf(n, "%s must be a string, got %s", key, kindName(n))
		return ""
	}
	return n.Value
}

// expr reads a condition: a string, a boolean, or a list of conditions that
// must all hold.
func (d *decoder) expr(n *yaml.Node, key string) string {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return ""
		}
		return n.Value
	case yaml.SequenceNode:
		var parts []string
		for _, c := range n.Content {
			if s := d.expr(c, key); s != "" {
				parts = append(parts, "("+s+")")
			}
		}
		return strings.Join(parts, " and ")
	}
	d.errorf(n, "%s must be an expression or a list of expressions, got %s", key, kindName(n))
	return ""
}

func (d *decoder) boolean(n *yaml.Node, key string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		d.errorf(n, "%s must be true or false, got %s", key, kindName(n))
	}
	return b
}

func (d *decoder) integer(n *yaml.Node, key string) int {
	var i int
	if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil || i < 0 {
		d.errorf(n, "%s must be a non-negative integer, got %s", key, kindName(n))
	}
	return i
}

// seconds reads a duration: seconds as a number or a Go duration string.
func (d *decoder) seconds(n *yaml.Node, key string) time.Duration {
	if n.Kind == yaml.ScalarNode {
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f >= 0 {
			return time.Duration(f * float64(time.Second))
		}
		if dur, err := time.ParseDuration(n.Value); err == nil && dur >= 0 {
			return dur
		}
	}
	d.errorf(n, "%s must be seconds or a duration such as \"1m30s\", got %s", key, kindName(n))
	return 0
}

// list reads a string or a list of strings.
func (d *decoder) list(n *yaml.Node, key string) []string {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return []string{n.Value}
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				d.errorf(c, "%s: each item must be a string, got %s", key, kindName(c))
				continue
			}
			out = append(out, c.Value)
		}
		return out
	}
	d.errorf(n, "%s must be a string or a list of strings, got %s", key, kindName(n))
	return nil
}

// vars decodes a mapping of variables.
func (d *decoder) vars(n *yaml.Node, key string) map[string]any {
	if n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping of variable names to values, got %s", key, kindName(n))
		return nil
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		d.wrapf(n, err, "%s: ", key)
	}
	return m
}

func (d *decoder) play(n *yaml.Node) (Play, bool) {
	p := Play{Pos: d.pos(n)}
	kv, ok := d.fields(n, "play", playKeywords, false)
	if !ok {
		return p, false
	}
	var (
		taskNodes, handlerNodes *yaml.Node
		tags                    []string
		become                  *bool
		becomeUser              string
		hasHosts                bool
		varsFiles               map[string]any
	)
	for _, f := range kv {
		k, v := f[0], f[1]
		switch k.Value {
		case "name":
			p.Name = d.str(v, "name")
		case "hosts":
			hasHosts = true
			p.Hosts = strings.Join(d.list(v, "hosts"), ",")
			if err := tasks.ParseTemplate(p.Hosts); err != nil {
				d.errorf(v, "hosts: %v", err)
			}
		case "serial":
			p.Serial = d.serial(v)
		case "any_errors_fatal":
			b := d.boolean(v, "any_errors_fatal")
			p.AnyErrorsFatal = &b
		case "vars":
			p.Vars = d.vars(v, "vars")
		case "vars_files":
			varsFiles = d.varsFiles(v)
		case "tasks":
			taskNodes = v
		case "handlers":
			handlerNodes = v
		case "gather_facts":
			if d.boolean(v, "gather_facts") {
				d.errorf(v, "gather_facts: kmsctl does not gather facts; set gather_facts: false or remove it")
			}
		case "tags":
			tags = d.list(v, "tags")
		case "become":
			b := d.boolean(v, "become")
			become = &b
		case "become_user":
			becomeUser = d.str(v, "become_user")
		}
	}
	if !hasHosts || strings.TrimSpace(p.Hosts) == "" {
		d.errorf(n, "play %q: hosts: is required (an inventory pattern such as all, a group or a host)", p.Name)
	}
	if len(varsFiles) > 0 {
		if p.Vars == nil {
			p.Vars = map[string]any{}
		}
		for k, v := range varsFiles {
			p.Vars[k] = v
		}
	}
	if p.Name == "" {
		p.Name = p.Hosts
	}
	handlers, handlerAt, topics := d.tasks(handlerNodes, "handlers", true)
	p.Handlers = handlers
	var taskAt []*yaml.Node
	p.Tasks, taskAt, _ = d.tasks(taskNodes, "tasks", false)
	names := map[string]bool{}
	for _, h := range p.Handlers {
		names[h.Name] = true
	}
	for j, list := range [][]tasks.Task{p.Tasks, p.Handlers} {
		at := [][]*yaml.Node{taskAt, handlerAt}[j]
		for i := range list {
			t := &list[i]
			t.Tags = append(t.Tags, tags...)
			if t.Become == nil {
				t.Become = become
			}
			if t.BecomeUser == "" {
				t.BecomeUser = becomeUser
			}
			t.Notify = d.resolveNotify(t, at[i], names, topics)
		}
	}
	return p, true
}

// resolveNotify replaces listen topics by the handlers listening to them
// and reports notified names no handler answers to, at the task's node n.
func (d *decoder) resolveNotify(t *tasks.Task, n *yaml.Node, names map[string]bool, topics map[string][]string) []string {
	var out []string
	for _, name := range t.Notify {
		switch {
		case names[name]:
			out = append(out, name)
		case len(topics[name]) > 0:
			out = append(out, topics[name]...)
		default:
			d.errorf(n, "notify: no handler is named or listens to %q", name)
		}
	}
	return out
}

func (d *decoder) serial(n *yaml.Node) []string {
	var out []string
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	for _, c := range items {
		v := strings.TrimSpace(c.Value)
		num := strings.TrimSuffix(v, "%")
		i, err := strconv.Atoi(num)
		if c.Kind != yaml.ScalarNode || err != nil || i <= 0 || (strings.HasSuffix(v, "%") && i > 100) {
			d.errorf(c, "serial must be a positive number, a percentage such as \"30%%\", or a list of them, got %s", kindName(c))
			continue
		}
		out = append(out, v)
	}
	return out
}

func (d *decoder) varsFiles(n *yaml.Node) map[string]any {
	vars := map[string]any{}
	for _, name := range d.list(n, "vars_files") {
		if d.files == nil {
			d.errorf(n, "vars_files %q: no directory to read it from", name)
			continue
		}
		b, err := fs.ReadFile(d.files, path.Clean(name))
		if err != nil {
			d.wrapf(n, err, "vars_files: read %q: ", name)
			continue
		}
		// Strict, like inventory vars, with positions in the vars file.
		m, err := inventory.ParseVars(path.Join(path.Dir(d.file), path.Clean(name)), b)
		if err != nil {
			d.wrapf(n, err, "vars_files: ")
			continue
		}
		for k, v := range m {
			vars[k] = v
		}
	}
	return vars
}

// tasks decodes a list of tasks (or handlers) and returns them with the
// node each was decoded from. For handlers it also returns the listen
// topics: topic → handler names.
func (d *decoder) tasks(n *yaml.Node, what string, handlers bool) ([]tasks.Task, []*yaml.Node, map[string][]string) {
	if n == nil || n.Tag == "!!null" {
		return nil, nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s must be a list of tasks, got %s", what, kindName(n))
		return nil, nil, nil
	}
	var out []tasks.Task
	var nodes []*yaml.Node
	topics := map[string][]string{}
	for _, c := range n.Content {
		t, listen, ok := d.task(c, handlers)
		if !ok {
			continue
		}
		if handlers && t.Name == "" {
			d.errorf(c, "a handler needs a name: tasks notify it by name")
		}
		for _, l := range listen {
			topics[l] = append(topics[l], t.Name)
		}
		out = append(out, t)
		nodes = append(nodes, c)
	}
	return out, nodes, topics
}

func (d *decoder) task(n *yaml.Node, handler bool) (tasks.Task, []string, bool) {
	t := tasks.Task{Pos: d.pos(n)}
	allowed := taskKeywords
	if handler {
		allowed = append(slices.Clone(taskKeywords), handlerKeywords...)
	}
	kv, ok := d.fields(n, "task", nil, true)
	if !ok {
		return t, nil, false
	}
	var (
		listen   []string
		module   *yaml.Node
		modArgs  *yaml.Node
		extra    map[string]any
		problems = len(d.errs)
	)
	for _, f := range kv {
		k, v := f[0], f[1]
		if slices.Contains(unsupportedKeywords, k.Value) {
			d.errorf(k, "task keyword %q is not supported by kmsctl (supported: %s)", k.Value, strings.Join(allowed, ", "))
			continue
		}
		if !slices.Contains(allowed, k.Value) {
			if module != nil {
				d.errorf(k, "task has two modules, %q and %q: a task runs exactly one module (or %q is a misspelt keyword; keywords: %s)",
					module.Value, k.Value, k.Value, strings.Join(allowed, ", "))
				continue
			}
			module, modArgs = k, v
			continue
		}
		switch k.Value {
		case "name":
			t.Name = d.str(v, "name")
		case "when":
			t.When = d.expr(v, "when")
		case "register":
			t.Register = d.str(v, "register")
		case "changed_when":
			t.ChangedWhen = d.expr(v, "changed_when")
		case "failed_when":
			t.FailedWhen = d.expr(v, "failed_when")
		case "until":
			t.Until = d.expr(v, "until")
		case "retries":
			t.Retries = d.integer(v, "retries")
		case "delay":
			t.Delay = d.seconds(v, "delay")
		case "ignore_errors":
			t.IgnoreErrors = d.boolean(v, "ignore_errors")
		case "no_log":
			t.NoLog = d.boolean(v, "no_log")
		case "tags":
			t.Tags = d.list(v, "tags")
		case "timeout":
			t.Timeout = d.seconds(v, "timeout")
		case "become":
			b := d.boolean(v, "become")
			t.Become = &b
		case "become_user":
			t.BecomeUser = d.str(v, "become_user")
		case "notify":
			t.Notify = d.list(v, "notify")
		case "listen":
			listen = d.list(v, "listen")
		case "args":
			extra = d.vars(v, "args")
		case "loop", "with_items":
			if t.Loop != nil {
				d.errorf(k, "give loop or with_items, not both")
			}
			t.Loop = d.loop(v, k.Value)
		case "loop_control":
			t.LoopVar = d.loopControl(v)
		case "delegate_to":
			t.DelegateTo = d.str(v, "delegate_to")
		case "run_once":
			t.RunOnce = d.boolean(v, "run_once")
		case "check_mode":
			b := d.boolean(v, "check_mode")
			t.CheckMode = &b
		}
	}
	if module == nil {
		d.errorf(n, "task %q has no module: give exactly one of %s", t.Name, strings.Join(d.reg.Names(), ", "))
		return t, nil, false
	}
	t.Module = module.Value
	t.Args = d.args(module, modArgs)
	for k, v := range extra {
		if t.Args == nil {
			t.Args = map[string]any{}
		}
		t.Args[k] = v
	}
	if len(d.errs) > problems {
		return t, nil, false
	}
	if err := d.reg.Validate(t); err != nil {
		d.validateErrs(n, t.Pos, err)
		return t, nil, false
	}
	return t, listen, true
}

// loop reads a loop: a list of items, or a string (an expression or a
// "{{ var }}" template yielding a list, evaluated at run time).
func (d *decoder) loop(n *yaml.Node, key string) any {
	switch {
	case n.Kind == yaml.SequenceNode:
		var items []any
		if err := n.Decode(&items); err != nil {
			d.wrapf(n, err, "%s: ", key)
		}
		if items == nil {
			items = []any{}
		}
		return items
	case n.Kind == yaml.ScalarNode && n.Tag != "!!null":
		return n.Value
	}
	d.errorf(n, "%s must be a list or an expression yielding one, got %s", key, kindName(n))
	return nil
}

// loopControl reads loop_control; only loop_var is supported.
func (d *decoder) loopControl(n *yaml.Node) string {
	kv, ok := d.fields(n, "loop_control", []string{"loop_var"}, false)
	if !ok {
		return ""
	}
	if len(kv) == 0 {
		return ""
	}
	return d.str(kv[0][1], "loop_var")
}

// args decodes a module's arguments: a mapping, nothing, or the free-form
// string of command and shell.
func (d *decoder) args(module, n *yaml.Node) map[string]any {
	switch {
	case n.Tag == "!!null":
		return map[string]any{}
	case n.Kind == yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			d.wrapf(n, err, "module %s: arguments: ", module.Value)
		}
		return m
	case n.Kind == yaml.ScalarNode && slices.Contains(freeFormModules, strings.TrimPrefix(module.Value, "ansible.builtin.")):
		return map[string]any{freeFormArg: n.Value}
	}
	d.errorf(n, "module %s: arguments must be a mapping (key: value), got %s", module.Value, kindName(n))
	return nil
}

// validateErrs records the problems tasks.Registry.Validate found in the
// task at node n: each names the task's "file:line" (where), which is
// replaced by the node's FILE:LINE:COL.
func (d *decoder) validateErrs(n *yaml.Node, where string, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		d.errs = append(d.errs, &yamlpos.Error{Pos: yamlpos.Of(d.file, n), Problem: strings.TrimPrefix(e.Error(), where+": "), Err: e})
	}
}
