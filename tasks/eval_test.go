package tasks

import (
	"fmt"
	"strings"
	"testing"
)

func TestExpressions(t *testing.T) {
	ev := &evaluator{}
	vars := map[string]any{
		"r":    map[string]any{"rc": 0, "stdout": "all ok\n", "stdout_lines": []any{"a", "b", "c"}},
		"list": []any{"x", "y"},
		"n":    3,
		"flag": true,
		"nest": map[string]any{"deep": map[string]any{"v": "1"}},
		"last": "kms3", "count": 2, // variables named like expr builtins
	}
	cases := map[string]bool{
		"r.rc == 0":                     true,
		`r.stdout contains "ok"`:        true,
		`"x" in list`:                   true,
		`"z" in list`:                   false,
		"n > 2 and not (n > 5)":         true,
		"len(r.stdout_lines) == 3":      true,
		"missing?.field == nil":         true,
		"missing == nil":                true,
		"r is defined":                  true,
		"nest.deep.v is defined":        true,
		"nest.deep.w is defined":        false,
		"missing is defined":            false,
		"missing is not defined":        true,
		"missing is undefined":          true,
		"r is defined and r.rc == 0":    true,
		`defined("nest.deep")`:          true,
		"{{ flag }}":                    true,
		"{{ n == 3 and flag }}":         true,
		"missing":                       false,
		`nest.deep.v == "1" or n == 0`:  true,
		`last == "kms3" and count == 2`: true,
		"max(n, 5) == 5":                true,
	}
	for src, want := range cases {
		got, err := ev.evalBool(src, vars)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", src, got, err, want)
		}
	}
	for _, bad := range []string{"n", `"str"`, "r.rc ==", "missing.field == 1"} {
		if _, err := ev.evalBool(bad, vars); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestRender(t *testing.T) {
	ev := &evaluator{}
	vars := map[string]any{"name": "kms1", "port": 7373, "nodes": []any{"a", "b"}, "m": map[string]any{"k": "v"}, "bad-key": 1}
	cases := map[string]string{
		"plain":                        "plain",
		"{{ name }}:{{ port }}":        "kms1:7373",
		`{{ missing|default:"dflt" }}`: "dflt",
		"{{ m.k }}":                    "v",
		"<{{ name }}&>":                "<kms1&>",
		"{% for n in nodes %}{{ n }},{% endfor %}": "a,b,",
		`{% if port > 7000 %}high{% endif %}`:      "high",
	}
	for src, want := range cases {
		got, err := ev.render(src, vars)
		if err != nil || got != want {
			t.Errorf("render %q = %q, %v; want %q", src, got, err, want)
		}
	}
	if _, err := ev.render("{% if %}", vars); err == nil {
		t.Error("bad template rendered")
	}
	for _, src := range []string{"KEY={{ hsm_key }}", "{{ name }}-{{ nodes[0] }}-{{ other.x }}", "{% for n in nodes %}{{ n }}{{ gone }}{% endfor %}"} {
		if _, err := ev.render(src, vars); err == nil || !strings.Contains(err.Error(), "undefined variable") {
			t.Errorf("render %q: %v, want an undefined variable error", src, err)
		}
	}
	for _, src := range []string{`{{ m.k|upper }}`, `{% set x = 1 %}{{ x }}`, `{{ 1e3 }}`, `{% for k, v in m %}{{ k }}={{ v }}{{ forloop.Counter }}{% endfor %}`} {
		if _, err := ev.render(src, vars); err != nil {
			t.Errorf("render %q: %v", src, err)
		}
	}
	out, err := ev.renderValue(map[string]any{"l": []any{"{{ name }}", 1}, "s": "x{{ port }}"}, vars)
	if err != nil {
		t.Fatal(err)
	}
	m := out.(map[string]any)
	if m["l"].([]any)[0] != "kms1" || m["l"].([]any)[1] != 1 || m["s"] != "x7373" {
		t.Fatalf("renderValue %v", m)
	}
}

// TestRenderConcurrent compiles distinct templates from many goroutines and
// two evaluators at once, as the host workers of concurrent runs do; under
// -race it fails if template compilation shares unguarded state.
func TestRenderConcurrent(t *testing.T) {
	evs := []*evaluator{{}, {}}
	vars := map[string]any{"name": "kms1"}
	const workers = 8
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			ev := evs[w%len(evs)]
			for i := range 20 {
				want := fmt.Sprintf("kms1-%d-%d", w, i)
				got, err := ev.render(fmt.Sprintf("{{ name }}-%d-%d", w, i), vars)
				if err == nil && got != want {
					err = fmt.Errorf("got %q, want %q", got, want)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
