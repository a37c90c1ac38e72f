package tasks

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"github.com/flosch/pongo2/v6"
)

// isDefinedRE matches Jinja's "x is defined" / "x.y is not defined" tests,
// which are rewritten to defined("x") calls before expr compiles them.
var isDefinedRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s+is\s+(not\s+)?(defined|undefined)\b`)

// wholeTemplateRE matches an expression written as one "{{ ... }}".
var wholeTemplateRE = regexp.MustCompile(`^\s*\{\{(.*)\}\}\s*$`)

// identRE matches the variable names a template context can hold.
var identRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// rewriteExpr turns the Ansible habits expr does not know into expr syntax.
func rewriteExpr(src string) string {
	if m := wholeTemplateRE.FindStringSubmatch(src); m != nil && !strings.Contains(m[1], "{{") {
		src = m[1]
	}
	return isDefinedRE.ReplaceAllStringFunc(src, func(s string) string {
		m := isDefinedRE.FindStringSubmatch(s)
		neg := (m[2] != "") != (m[3] == "undefined")
		if neg {
			return fmt.Sprintf("(not defined(%q))", m[1])
		}
		return fmt.Sprintf("defined(%q)", m[1])
	})
}

// checkExpr checks an expression's syntax (variables are unknown yet).
func checkExpr(src string) error {
	if _, err := parser.Parse(rewriteExpr(src)); err != nil {
		return fmt.Errorf("parse expression %q: %w", src, err)
	}
	return nil
}

// inPatcher rewrites "a in b" into a call of __in, which also accepts a
// string on the right ('ERROR' in result.stderr), as Jinja does.
type inPatcher struct{}

func (inPatcher) Visit(node *ast.Node) {
	if b, ok := (*node).(*ast.BinaryNode); ok && b.Operator == "in" {
		ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "__in"}, Arguments: []ast.Node{b.Left, b.Right}})
	}
}

// exprFuncs are the functions added to expr's builtins, for Ansible habits:
// length(x) (also x | length()), default(x, fallback) (x | default("y")),
// and __in behind the in operator.
var exprFuncs = map[string]func(params ...any) (any, error){
	"__in": func(p ...any) (any, error) {
		if len(p) != 2 {
			return nil, fmt.Errorf("in: want 2 operands")
		}
		return contains(p[1], p[0])
	},
	"length": func(p ...any) (any, error) {
		if len(p) != 1 {
			return nil, fmt.Errorf("length: want 1 argument")
		}
		if p[0] == nil {
			return 0, nil
		}
		v := reflect.ValueOf(p[0])
		switch v.Kind() {
		case reflect.String, reflect.Slice, reflect.Array, reflect.Map:
			return v.Len(), nil
		}
		return nil, fmt.Errorf("length of %s", kindOf(p[0]))
	},
	"default": func(p ...any) (any, error) {
		if len(p) != 2 {
			return nil, fmt.Errorf("default: want a value and a fallback")
		}
		if p[0] == nil {
			return p[1], nil
		}
		return p[0], nil
	},
}

// contains reports whether item is in container: a substring of a string,
// an element of a list, or a key of a map.
func contains(container, item any) (bool, error) {
	if container == nil {
		return false, nil
	}
	if s, ok := container.(string); ok {
		sub, ok := item.(string)
		if !ok {
			return false, fmt.Errorf("in: %s in a string", kindOf(item))
		}
		return strings.Contains(s, sub), nil
	}
	v := reflect.ValueOf(container)
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if equalValues(v.Index(i).Interface(), item) {
				return true, nil
			}
		}
		return false, nil
	case reflect.Map:
		k := reflect.ValueOf(item)
		if !k.IsValid() || !k.Type().AssignableTo(v.Type().Key()) {
			return false, nil
		}
		return v.MapIndex(k).IsValid(), nil
	}
	return false, fmt.Errorf("in: cannot look into %s", kindOf(container))
}

func equalValues(a, b any) bool {
	if fa, ok := number(a); ok {
		if fb, ok := number(b); ok {
			return fa == fb
		}
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// compileExpr compiles an expression; shadow lists variables named like
// expr builtins or exprFuncs (count, last, max, length, ...), which then
// mean the variable.
func compileExpr(src string, shadow []string) (*vm.Program, error) {
	opts := []expr.Option{expr.AllowUndefinedVariables(), expr.Patch(inPatcher{})}
	for _, name := range shadow {
		if _, ok := builtin.Index[name]; ok {
			opts = append(opts, expr.DisableBuiltin(name))
		}
	}
	for name, fn := range exprFuncs {
		if !slices.Contains(shadow, name) || name == "__in" {
			opts = append(opts, expr.Function(name, fn))
		}
	}
	p, err := expr.Compile(rewriteExpr(src), opts...)
	if err != nil {
		return nil, fmt.Errorf("compile expression %q: %w", src, err)
	}
	return p, nil
}

// lookupPath finds a dotted variable path ("result.rc") in vars.
func lookupPath(vars map[string]any, path string) (any, bool) {
	var cur any = vars
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[part]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// evaluator compiles and caches expressions and templates for one run.
type evaluator struct {
	progs sync.Map // source + shadowed builtins → *vm.Program
	tpls  sync.Map // string → *pongo2.Template
	refs  sync.Map // template → [][]string, the variables it reads (allRefs)

	// tplMu guards tplSet: pongo2's TemplateSet.FromString writes the
	// set's fields unlocked, so compilation is serialised. Each evaluator
	// owns its set so that concurrent runs never share pongo2.DefaultSet.
	tplMu  sync.Mutex
	tplSet *pongo2.TemplateSet
}

// readsOf returns the variable paths a template reads (allRefs), cached.
func (ev *evaluator) readsOf(src string) [][]string {
	if r, ok := ev.refs.Load(src); ok {
		return r.([][]string)
	}
	r := allRefs(src)
	ev.refs.Store(src, r)
	return r
}

// compileTemplate parses a pongo2 template in the evaluator's own set.
func (ev *evaluator) compileTemplate(src string) (*pongo2.Template, error) {
	ev.tplMu.Lock()
	defer ev.tplMu.Unlock()
	if ev.tplSet == nil {
		ev.tplSet = pongo2.NewSet("kmsctl", pongo2.DefaultLoader)
	}
	return ev.tplSet.FromString(src)
}

// eval evaluates an expr-lang expression against vars. Undefined variables
// are nil; defined("a.b") tells whether a variable exists.
func (ev *evaluator) eval(src string, vars map[string]any) (any, error) {
	var shadow []string
	for k := range vars {
		_, isBuiltin := builtin.Index[k]
		_, isFunc := exprFuncs[k]
		if isBuiltin || isFunc {
			shadow = append(shadow, k)
		}
	}
	sort.Strings(shadow)
	key := src + "\x00" + strings.Join(shadow, ",")
	var prog *vm.Program
	if p, ok := ev.progs.Load(key); ok {
		prog = p.(*vm.Program)
	} else {
		p, err := compileExpr(src, shadow)
		if err != nil {
			return nil, err
		}
		ev.progs.Store(key, p)
		prog = p
	}
	env := make(map[string]any, len(vars)+1)
	for k, v := range vars {
		env[k] = v
	}
	env["defined"] = func(path string) bool { _, ok := lookupPath(vars, path); return ok }
	out, err := expr.Run(prog, env)
	if err != nil {
		return nil, fmt.Errorf("evaluate %q: %w", src, err)
	}
	return out, nil
}

func asBool(src string, v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("expression %q gave %s %v, want true or false", src, kindOf(v), v)
}

func (ev *evaluator) evalBool(src string, vars map[string]any) (bool, error) {
	v, err := ev.eval(src, vars)
	if err != nil {
		return false, err
	}
	return asBool(src, v)
}

// tagRE finds the {{ ... }} and {% ... %} parts of a template.
var tagRE = regexp.MustCompile(`(?s)\{\{.*?\}\}|\{%.*?%\}`)

// jinjaFilterRE matches a Jinja filter call with one argument,
// "| default('x')", which pongo2 writes "|default:'x'".
var jinjaFilterRE = regexp.MustCompile(`\|\s*([A-Za-z_]\w*)\s*\(\s*((?:"[^"]*"|'[^']*'|[^()'",])*?)\s*\)`)

// jinjaAliasRE matches Jinja filter names pongo2 spells differently.
var jinjaAliasRE = regexp.MustCompile(`\|\s*(int|d)\b`)

// jinjaToPongo2 rewrites the Jinja filter habits pongo2 lacks inside tags:
// x | default('y') → x|default:'y', x | int → x|integer, x | d('y').
func jinjaToPongo2(src string) string {
	return tagRE.ReplaceAllStringFunc(src, func(tag string) string {
		tag = jinjaFilterRE.ReplaceAllString(tag, "|$1:$2")
		return jinjaAliasRE.ReplaceAllStringFunc(tag, func(m string) string {
			if strings.HasSuffix(m, "d") {
				return "|default"
			}
			return "|integer"
		})
	})
}

var (
	// printTagRE finds the {{ ... }} parts of a template.
	printTagRE = regexp.MustCompile(`(?s)\{\{(.*?)\}\}`)
	// stringLitRE matches quoted strings inside a tag.
	stringLitRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	// nameRE matches names inside a tag.
	nameRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	// boundRE finds names a template defines itself (for, set, with, macro).
	boundRE = regexp.MustCompile(`\{%-?\s*(?:for\s+([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\b|set\s+([A-Za-z_]\w*)|with\s+([A-Za-z_]\w*)\s*=|macro\s+([A-Za-z_]\w*))`)
	// defaultRE spots a tag that supplies its own fallback.
	defaultRE = regexp.MustCompile(`\|\s*(default|d)\b`)
)

// tagKeywords are words in a {{ }} tag that are not variables.
var tagKeywords = map[string]bool{"and": true, "or": true, "not": true, "in": true, "is": true,
	"true": true, "false": true, "True": true, "False": true, "none": true, "None": true, "nil": true,
	"if": true, "else": true, "forloop": true, "pongo2": true}

// undefinedVars lists the variables a template prints without defining
// them, so that a missing variable fails the task instead of rendering as
// "" (an env file with an empty key). Tags with a default filter are
// exempt; only the first name of a path (a in a.b) is checked.
func undefinedVars(src string, vars map[string]any) []string {
	bound := map[string]bool{}
	for _, m := range boundRE.FindAllStringSubmatch(src, -1) {
		for _, n := range m[1:] {
			bound[n] = true
		}
	}
	var missing []string
	for _, tag := range printTagRE.FindAllStringSubmatch(src, -1) {
		body := stringLitRE.ReplaceAllString(tag[1], `""`)
		if defaultRE.MatchString(body) {
			continue
		}
		for _, loc := range nameRE.FindAllStringIndex(body, -1) {
			name := body[loc[0]:loc[1]]
			prev := strings.TrimRight(body[:loc[0]], " \t\n")
			if loc[0] > 0 && isWordByte(body[loc[0]-1]) {
				continue // inside a number such as 1e5
			}
			if strings.HasSuffix(prev, ".") || strings.HasSuffix(prev, "|") || strings.HasPrefix(strings.TrimLeft(body[loc[1]:], " "), "(") {
				continue // attribute, filter or function name
			}
			if tagKeywords[name] || bound[name] {
				continue
			}
			if _, ok := vars[name]; !ok && !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
	}
	return missing
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// wrapTemplate turns a template into the pongo2 source compiled for it:
// Jinja habits rewritten, HTML autoescaping off.
func wrapTemplate(src string) string {
	return "{% autoescape off %}" + jinjaToPongo2(src) + "{% endautoescape %}"
}

// render renders a pongo2 (Jinja-like) template against vars. Strings
// without "{{" or "{%" are returned as they are. HTML autoescaping is off.
func (ev *evaluator) render(src string, vars map[string]any) (string, error) {
	if !strings.Contains(src, "{{") && !strings.Contains(src, "{%") {
		return src, nil
	}
	var tpl *pongo2.Template
	if t, ok := ev.tpls.Load(src); ok {
		tpl = t.(*pongo2.Template)
	} else {
		t, err := ev.compileTemplate(wrapTemplate(src))
		if err != nil {
			return "", fmt.Errorf("parse template %q: %w", src, err)
		}
		ev.tpls.Store(src, t)
		tpl = t
	}
	if missing := undefinedVars(src, vars); len(missing) > 0 {
		return "", fmt.Errorf("render template %q: undefined variable %s (if it may be missing, give a fallback: {{ %s | default('') }})",
			src, strings.Join(missing, ", "), missing[0])
	}
	ctx := make(pongo2.Context, len(vars))
	for k, v := range vars {
		if identRE.MatchString(k) {
			ctx[k] = v
		}
	}
	out, err := tpl.Execute(ctx)
	if err != nil {
		return "", fmt.Errorf("render template %q: %w", src, err)
	}
	return out, nil
}

// renderValue renders every string inside v (maps and lists recursively).
func (ev *evaluator) renderValue(v any, vars map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		return ev.render(x, vars)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := ev.renderValue(e, vars)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := ev.renderValue(e, vars)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}
