package tasks

// Secrets: which values are secret, which are computed from secrets
// (taint), and the rule that keeps both off remote command lines.

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/kmsctl/kmsctl/redact"
)

// secrets tells secret values from others. A value is secret when a
// variable named as a secret (Engine.Secret) holds it, when it lies under
// such a key in a mapping, or when it contains a value registered with the
// redactor. A value computed from a secret is secret too: templates and
// expressions are evaluated twice, once more with every secret disguised
// (disguise), and a result that differs depends on a secret; it is
// registered with the redactor, so it is masked like the secret itself.
type secrets struct {
	red   *redact.Redactor
	named func(string) bool
}

// isNamed reports whether a variable (or mapping key) of this name holds a secret.
func (s *secrets) isNamed(name string) bool { return s.named != nil && s.named(name) }

// holds reports whether v contains a secret: a registered secret value in
// a string, or a key named as a secret in a mapping.
func (s *secrets) holds(v any) bool {
	switch x := v.(type) {
	case string:
		return s.red.Contains(x)
	case map[string]any:
		for k, e := range x {
			if s.isNamed(k) || s.holds(e) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(x, s.holds)
	case []string:
		return slices.ContainsFunc(x, s.red.Contains)
	}
	return false
}

// register adds every string in v to the redactor (those shorter than
// the redactor's minimum are ignored).
func (s *secrets) register(v any) {
	if s.red == nil {
		return
	}
	switch x := v.(type) {
	case string:
		s.red.Add(x)
	case map[string]any:
		for _, e := range x {
			s.register(e)
		}
	case []any:
		for _, e := range x {
			s.register(e)
		}
	case []string:
		for _, e := range x {
			s.red.Add(e)
		}
	}
}

// registerNamed registers the values held by secret names in v (under:
// v itself is held by one), so that they are masked and found by holds.
func (s *secrets) registerNamed(v any, under bool) {
	if s.red == nil {
		return
	}
	switch x := v.(type) {
	case string:
		if under {
			s.red.Add(x)
		}
	case map[string]any:
		for k, e := range x {
			s.registerNamed(e, under || s.isNamed(k))
		}
	case []any:
		for _, e := range x {
			s.registerNamed(e, under)
		}
	case []string:
		for _, e := range x {
			s.registerNamed(e, under)
		}
	}
}

// disguise returns v with every secret in it replaced by a different value
// of the same kind (see alter), and whether there was any. under says v is
// held by a secret name, so all of it is secret. v itself is never changed;
// parts without secrets are shared.
func (s *secrets) disguise(v any, under bool) (any, bool) {
	switch x := v.(type) {
	case string:
		if under || s.red.Contains(x) {
			return alter(x), true
		}
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			d, ok := s.disguise(e, under || s.isNamed(k))
			if !ok {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(x))
				for k2, e2 := range x {
					out[k2] = e2
				}
			}
			out[k] = d
		}
		if out != nil {
			return out, true
		}
	case []any:
		var out []any
		for i, e := range x {
			d, ok := s.disguise(e, under)
			if !ok {
				continue
			}
			if out == nil {
				out = slices.Clone(x)
			}
			out[i] = d
		}
		if out != nil {
			return out, true
		}
	case []string:
		var out []string
		for i, e := range x {
			if under || s.red.Contains(e) {
				if out == nil {
					out = slices.Clone(x)
				}
				out[i] = alter(e)
			}
		}
		if out != nil {
			return out, true
		}
	case int:
		if under {
			return x + 1, true
		}
	case int64:
		if under {
			return x + 1, true
		}
	case uint64:
		if under {
			return x + 1, true
		}
	case float64:
		if under {
			return x + 1, true
		}
	case bool:
		if under {
			return !x, true
		}
	}
	return v, false
}

// alter returns s with every letter and digit replaced by the next one of
// its kind (z by a, 9 by 0), so that the result has the shape of s (length,
// separators, character classes: a filter such as int still applies) but
// no character of it in the same place. A string without letters or digits
// gets one appended.
func alter(s string) string {
	b := []byte(s)
	changed := false
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = 'a' + (c-'a'+1)%26
		case c >= 'A' && c <= 'Z':
			b[i] = 'A' + (c-'A'+1)%26
		case c >= '0' && c <= '9':
			b[i] = '0' + (c-'0'+1)%10
		default:
			continue
		}
		changed = true
	}
	if !changed {
		return s + "x"
	}
	return string(b)
}

// scope is the variables a task sees on a host, and alt, the same with
// every secret disguised: nil when the variables hold no secret. A
// template or expression whose result differs between the two was
// computed from a secret.
type scope struct {
	vars, alt map[string]any
}

// mayDiffer reports whether any of the variables (paths, by their root)
// may differ between vars and alt: alt holds the very same value for every
// variable without a secret, so a cheap identity check tells.
func (sc scope) mayDiffer(refs [][]string) bool {
	for _, p := range refs {
		v, ok := sc.vars[p[0]]
		a, aok := sc.alt[p[0]]
		if ok != aok || !sameValue(v, a) {
			return true
		}
	}
	return false
}

// sameValue reports whether a and b are the same value: equal strings and
// numbers, the same map or list (not merely equal ones).
func sameValue(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if !va.IsValid() || !vb.IsValid() {
		return va.IsValid() == vb.IsValid()
	}
	if va.Type() != vb.Type() {
		return false
	}
	switch va.Kind() {
	case reflect.Map, reflect.Pointer, reflect.Func, reflect.Chan:
		return va.UnsafePointer() == vb.UnsafePointer()
	case reflect.Slice:
		return va.Len() == vb.Len() && (va.Len() == 0 || va.UnsafePointer() == vb.UnsafePointer())
	}
	return va.Comparable() && va.Equal(vb)
}

// with returns the scope with more variables over it: extra as they are in
// vars, altExtra (nil = extra, disguised where it holds secrets) in alt.
func (sc scope) with(s *secrets, extra, altExtra map[string]any) scope {
	out := scope{vars: merge(sc.vars, extra)}
	if altExtra == nil {
		d, ok := s.disguise(extra, false)
		if ok {
			altExtra = d.(map[string]any)
		}
	}
	if sc.alt != nil || altExtra != nil {
		base := sc.alt
		if base == nil {
			base = sc.vars
		}
		if altExtra == nil {
			altExtra = extra
		}
		out.alt = merge(base, altExtra)
	}
	return out
}

// render renders a template and reports whether the output was computed
// from a secret (it is then registered with the redactor) or holds one.
func (r *run) render(src string, sc scope) (string, bool, error) {
	return renderIn(&r.ev, &r.sec, src, sc)
}

func renderIn(ev *evaluator, s *secrets, src string, sc scope) (string, bool, error) {
	out, err := ev.render(src, sc.vars)
	if err != nil {
		return "", false, err
	}
	if sc.alt != nil && isTemplated(src) && sc.mayDiffer(ev.readsOf(src)) {
		if alt, err := ev.render(src, sc.alt); err != nil || alt != out {
			s.register(out)
			return out, true, nil
		}
	}
	return out, s.holds(out), nil
}

// evalIn evaluates an expression and reports, as renderIn does, whether
// its value was computed from a secret or holds one.
func evalIn(ev *evaluator, s *secrets, src string, sc scope) (any, bool, error) {
	v, err := ev.eval(src, sc.vars)
	if err != nil {
		return nil, false, err
	}
	if sc.alt != nil {
		if alt, err := ev.eval(src, sc.alt); err != nil || !reflect.DeepEqual(alt, v) {
			s.register(v)
			return v, true, nil
		}
	}
	return v, s.holds(v), nil
}

// renderValue renders every string inside v (maps and lists recursively)
// and reports whether any part of it is secret (see render).
func (r *run) renderValue(v any, sc scope) (any, bool, error) {
	switch x := v.(type) {
	case string:
		return r.render(x, sc)
	case map[string]any:
		out := make(map[string]any, len(x))
		secret := false
		for k, e := range x {
			o, sec, err := r.renderValue(e, sc)
			if err != nil {
				return nil, false, err
			}
			out[k], secret = o, secret || sec
		}
		return out, secret, nil
	case []any:
		out := make([]any, len(x))
		secret := false
		for i, e := range x {
			o, sec, err := r.renderValue(e, sc)
			if err != nil {
				return nil, false, err
			}
			out[i], secret = o, secret || sec
		}
		return out, secret, nil
	}
	return v, false, nil
}

// renderArgs renders a task's arguments and returns the names of those
// that are secret.
func (r *run) renderArgs(args map[string]any, sc scope) (map[string]any, map[string]bool, error) {
	out := make(map[string]any, len(args))
	var secret map[string]bool
	for _, k := range sortedKeys(args) {
		v, sec, err := r.renderValue(args[k], sc)
		if err != nil {
			return nil, nil, fmt.Errorf("argument %s: %w", k, err)
		}
		out[k] = v
		if sec {
			if secret == nil {
				secret = map[string]bool{}
			}
			secret[k] = true
		}
	}
	return out, secret, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RefusedError is a task refused by a safety rule: a secret that would
// reach a remote command line. Nothing of the task was done on any host;
// the CLI exits 4 for it (Refused reports true).
type RefusedError struct {
	Pos    string // the task's "file:line"
	Task   string // the task's name
	Reason string
}

// Error names the task, where it is and why it is refused.
func (e *RefusedError) Error() string {
	where := ""
	if e.Pos != "" {
		where = e.Pos + ": "
	}
	return fmt.Sprintf("%stask %q refused: %s", where, e.Task, e.Reason)
}

// Refused reports true: a safety rule refused the task.
func (e *RefusedError) Refused() bool { return true }

// IsRefused reports whether err's chain holds a refusal by a safety rule
// (an error with a Refused() bool method returning true, as RefusedError).
func IsRefused(err error) bool {
	var r interface{ Refused() bool }
	return errors.As(err, &r) && r.Refused()
}

// secretOnCommandLine is the refusal of a task whose argument arg, which
// modules put on a remote command line (ArgSpec.CmdLine), is secret.
// names are the secret variables the argument reads (may be empty).
func secretOnCommandLine(t Task, arg string, names []string) *RefusedError {
	what := "a value computed from a secret"
	if len(names) == 1 {
		what = "the secret variable " + names[0]
	} else if len(names) > 1 {
		what = "the secret variables " + strings.Join(names, ", ")
	}
	reason := fmt.Sprintf("argument %s of module %s reads %s: it would be on a command line on the host, "+
		"where every local user can read it (ps, /proc/PID/cmdline) while the command runs, no_log or not", arg, t.Module, what)
	if arg == "cmd" || arg == "argv" {
		reason += ". Pass the secret another way:\n" +
			"  - on standard input, with stdin: of command or shell; a program that reads its key from the environment " +
			"(minkms reads MINIO_KMS_API_KEY when --api-key is not given) gets it so:\n" +
			"      shell: MINIO_KMS_API_KEY=\"$(cat)\" minkms ...\n" +
			"      stdin: \"{{ kms_api_key }}\"\n" +
			"  - in an env file pushed with copy (content: \"MINIO_KMS_API_KEY={{ kms_api_key }}\", mode: \"0600\"; " +
			"it travels over SFTP) that the program or its systemd unit (EnvironmentFile=) reads\n" +
			"  - in a 0600 file pushed with copy, whose path the program is given"
	} else {
		reason += "; paths, names, owners and commands given to a module go to remote commands (stat, chmod, systemctl, sudo): " +
			"build them from variables that are not secret"
	}
	return &RefusedError{Pos: t.Pos, Task: t.DisplayName(), Reason: reason}
}

// reads lists the variables (as "a.b" paths) that the templates in v
// read and that are secret in sc, or in derived (variables set later from
// secrets, such as set_fact's), or not in sc but named as secrets. Names
// in {% if %} conditions are not reads: they print nothing.
func (s *secrets) reads(v any, sc scope, derived map[string]bool) []string {
	var out []string
	walkStrings(v, func(src string) {
		if !isTemplated(src) {
			return
		}
		for _, p := range templateRefs(src) {
			if s.readsPath(p, sc, derived) {
				name := strings.Join(p, ".")
				if !slices.Contains(out, name) {
					out = append(out, name)
				}
			}
		}
	})
	return out
}

// readsPath reports whether the variable path p is secret in sc (or its
// root in derived, or not in sc but named as a secret).
func (s *secrets) readsPath(p []string, sc scope, derived map[string]bool) bool {
	if derived[p[0]] {
		return true
	}
	v, ok := sc.vars[p[0]]
	if !ok {
		return s.isNamed(p[0])
	}
	if sc.alt == nil {
		return false
	}
	return pathDiffers(v, sc.alt[p[0]], p[1:])
}

// pathDiffers reports whether the value at path differs between v and
// alt; "*" in path stands for every key or index.
func pathDiffers(v, alt any, path []string) bool {
	if len(path) == 0 {
		return !reflect.DeepEqual(v, alt)
	}
	switch x := v.(type) {
	case map[string]any:
		y, _ := alt.(map[string]any)
		if path[0] == "*" {
			for k, e := range x {
				if pathDiffers(e, y[k], path[1:]) {
					return true
				}
			}
			return false
		}
		e, ok := x[path[0]]
		return ok && pathDiffers(e, y[path[0]], path[1:])
	case []any:
		y, _ := alt.([]any)
		for i, e := range x {
			var ye any
			if i < len(y) {
				ye = y[i]
			}
			if pathDiffers(e, ye, path[1:]) {
				return true
			}
		}
		return false
	}
	return !reflect.DeepEqual(v, alt)
}

// walkStrings calls f for every string in v (maps and lists recursively).
func walkStrings(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case map[string]any:
		for _, k := range sortedKeys(x) {
			walkStrings(x[k], f)
		}
	case []any:
		for _, e := range x {
			walkStrings(e, f)
		}
	}
}

// templateRefs lists the variables a template reads, each as a path: the
// variable's name, then the attributes and literal subscripts after it
// ("*" for a subscript that is not a literal: hostvars[item].x is
// hostvars, *, x). Names in {% if %} and {% elif %} conditions are left
// out (they print nothing), and so are filter, function and keyword names.
func templateRefs(src string) [][]string {
	var out [][]string
	for _, tag := range tagRE.FindAllString(src, -1) {
		body := tag[2 : len(tag)-2]
		if strings.HasPrefix(tag, "{%") {
			word := strings.Fields(strings.Trim(body, "-+ \t\n"))
			if len(word) > 0 && (word[0] == "if" || word[0] == "elif") {
				continue
			}
		}
		out = append(out, exprRefs(body)...)
	}
	return out
}

// allRefs lists every variable path a template reads, {% if %}
// conditions included.
func allRefs(src string) [][]string {
	var out [][]string
	for _, tag := range tagRE.FindAllString(src, -1) {
		out = append(out, exprRefs(tag[2:len(tag)-2])...)
	}
	return out
}

// exprRefs lists the variable paths read by the body of a tag or an
// expression (see templateRefs).
func exprRefs(body string) [][]string {
	var out [][]string
	prev := byte(0) // last non-space byte before the current position
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == '"' || c == '\'':
			i = skipString(body, i)
			prev = c
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(body) && isWordByte(body[j]) {
				j++
			}
			name := body[i:j]
			rest := strings.TrimLeft(body[j:], " \t\n")
			isRef := prev != '.' && prev != '|' && !strings.HasPrefix(rest, "(") && !tagKeywords[name] && !templateWords[name]
			path := []string{name}
			// Attributes and subscripts.
			for j < len(body) {
				if body[j] == '.' && j+1 < len(body) && (body[j+1] == '_' || isLetter(body[j+1])) {
					k := j + 1
					for k < len(body) && isWordByte(body[k]) {
						k++
					}
					path = append(path, body[j+1:k])
					j = k
					continue
				}
				if body[j] == '[' {
					end := closingBracket(body, j)
					inner := strings.TrimSpace(body[j+1 : end])
					seg := "*"
					if len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && skipString(inner, 0) == len(inner) {
						seg = inner[1 : len(inner)-1]
					}
					path = append(path, seg)
					j = min(end+1, len(body))
					continue
				}
				break
			}
			if isRef {
				out = append(out, path)
			}
			prev = body[j-1]
			i = j
		case c >= '0' && c <= '9':
			for i < len(body) && (isWordByte(body[i]) || body[i] == '.') {
				i++
			}
			prev = '0'
		default:
			if c != ' ' && c != '\t' && c != '\n' {
				prev = c
			}
			i++
		}
	}
	return out
}

// templateWords are words of pongo2 and Jinja tags that are not variables.
var templateWords = map[string]bool{"for": true, "endfor": true, "endif": true, "elif": true, "set": true,
	"with": true, "endwith": true, "macro": true, "endmacro": true, "autoescape": true, "endautoescape": true,
	"filter": true, "endfilter": true, "raw": true, "endraw": true, "comment": true, "endcomment": true,
	"firstof": true, "cycle": true, "reversed": true, "sorted": true, "only": true, "as": true, "empty": true}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// skipString returns the index just after the quoted string starting at i.
func skipString(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1
		}
	}
	return len(s)
}

// closingBracket returns the index of the ']' closing the '[' at i (or
// len(s)), skipping quoted strings and nested brackets.
func closingBracket(s string, i int) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '"', '\'':
			j = skipString(s, j) - 1
		case '[':
			depth++
		case ']':
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return len(s)
}
