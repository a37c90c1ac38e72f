package tasks_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/kmsctl/kmsctl/tasks"
)

// Bad input anywhere in the plays, handlers included, is found before the
// first host is touched.
func TestRunChecksEveryTaskBeforeAnyHost(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-file")
	cases := []struct {
		name string
		vars map[string]any
		task Task
		want string
	}{
		{"template syntax", nil, Task{Module: "debug", Args: map[string]any{"msg": "{{ x "}}, "parse template"},
		{"unknown filter", nil, Task{Module: "debug", Args: map[string]any{"msg": "{{ x | nosuchfilter }}"}}, "nosuchfilter"},
		{"name template", nil, Task{Name: "restart {% if %}", Module: "debug"}, "name: parse template"},
		{"service state", nil, Task{Module: "service", Args: map[string]any{"name": "minkms", "state": "gone"}}, `state "gone": want started, stopped, restarted or reloaded`},
		{"templated state", map[string]any{"s": "gone"}, Task{Module: "service", Args: map[string]any{"name": "minkms", "state": "{{ s }}"}}, `state "gone"`},
		{"file state", nil, Task{Module: "file", Args: map[string]any{"path": "/opt/x", "state": "gone"}}, `state "gone"`},
		{"wait_for state", nil, Task{Module: "wait_for", Args: map[string]any{"port": 1, "state": "up"}}, `state "up"`},
		{"assert that", nil, Task{Module: "assert", Args: map[string]any{"that": []any{"x ==="}}}, "that: parse expression"},
		{"command quote", nil, Task{Module: "command", Args: map[string]any{"cmd": "echo 'unclosed"}}, "split command"},
		{"copy src", nil, Task{Module: "copy", Args: map[string]any{"src": missing, "dest": "/etc/x"}}, "src " + missing + ": no such file or directory on the control machine"},
		{"templated copy src", map[string]any{"f": missing}, Task{Module: "copy", Args: map[string]any{"src": "{{ f }}", "dest": "/etc/x"}}, "src " + missing},
		{"template src", nil, Task{Module: "template", Args: map[string]any{"src": missing, "dest": "/etc/x"}}, "src " + missing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, "a")
			c.task.Pos = "site.yml:5"
			// The bad task is a handler, notified by a change on the first
			// task (a task when its name is the problem).
			p := Play{Name: "p", Hosts: l.hosts("a"), Vars: c.vars, Tasks: []Task{
				{Name: "change", Module: "copy", Args: map[string]any{"content": "x", "dest": "/etc/y"}, Notify: []string{"restart"}},
			}, Handlers: []Task{{Name: "restart", Module: "debug", Pos: "site.yml:9"}}}
			if c.task.Name != "" {
				p.Tasks = append(p.Tasks, c.task)
			} else {
				c.task.Name = "restart"
				p.Handlers = []Task{c.task}
			}
			_, err := l.eng.Run(context.Background(), []Play{p})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "site.yml:5") {
				t.Fatalf("want an error at site.yml:5 with %q, got %v", c.want, err)
			}
			if IsRefused(err) {
				t.Errorf("invalid input is not a refusal by a safety rule: %v", err)
			}
			if len(l.connects) != 0 || len(l.rec.events) != 0 {
				t.Fatalf("a host was touched: %v\n%s", l.connects, l.rec.all())
			}
			if err := l.eng.Validate([]Play{p}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// Values set while the play runs are not known before it: a src named by
// a fact is checked on the host, and the message names the path as given.
func TestValuesSetWhileRunningAreCheckedThen(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-file")
	l := newLab(t, "a")
	tasks := []Task{
		{Name: "fact", Module: "set_fact", Args: map[string]any{"f": missing}},
		{Name: "copy", Module: "copy", Args: map[string]any{"src": "{{ f }}", "dest": "/etc/x"}},
	}
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks}})
	if err == nil {
		t.Fatal("want the copy to fail")
	}
	if got := l.rec.results("copy")["a"]; got.Status != StatusFailed || !strings.Contains(got.Msg, missing+":") {
		t.Fatalf("copy result %+v", got)
	}
	if strings.Contains(err.Error(), " "+strings.TrimPrefix(missing, "/")) {
		t.Fatalf("the path is not shown as given: %v", err)
	}
}

// A fact set by an earlier play overrides the inventory's value: the
// check before the run does not judge that value.
func TestFactsOfEarlierPlaysAreNotJudgedBeforeTheRun(t *testing.T) {
	l := newLab(t, "a")
	hosts := l.hosts("a")
	hosts[0].Vars["conf"] = filepath.Join(t.TempDir(), "missing")
	plays := []Play{
		{Name: "one", Hosts: hosts, Tasks: []Task{{Name: "fact", Module: "set_fact", Args: map[string]any{"conf": "testdata/env.tmpl"}}}},
		{Name: "two", Hosts: hosts, Tasks: []Task{{Name: "push", Module: "copy", Args: map[string]any{"src": "{{ conf }}", "dest": "/etc/x"}}}},
	}
	if _, err := l.eng.Run(context.Background(), plays); err != nil {
		t.Fatal(err)
	}
}
