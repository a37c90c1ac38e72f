package tasks_test

import (
	"context"
	"strings"
	"testing"

	. "github.com/kmsctl/kmsctl/tasks"
)

// A task's name is rendered for each host and, in a loop, for each item;
// each item's outcome is reported.
func TestTaskNamesRenderedPerHostAndItem(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].SetFile("/opt/a", "x", 0o644)
	tasks := []Task{
		{Name: "remove {{ item }}", Module: "file", Args: map[string]any{"path": "{{ item }}", "state": "absent"}, Loop: []any{"/opt/a", "/opt/b"}},
		{Name: "touch {{ item }}", Module: "debug", Loop: []any{"1", "2", "3", "4"}},
		{Name: "on {{ inventory_hostname }}", Module: "debug"},
	}
	if _, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks}}); err != nil {
		t.Fatal(err)
	}
	var items []string
	for _, e := range l.rec.events {
		if e.Type == EventItemResult {
			items = append(items, e.Task+"="+e.Status.String())
		}
	}
	if got := strings.Join(items, " "); got != "remove /opt/a=changed remove /opt/b=ok touch 1=ok touch 2=ok touch 3=ok touch 4=ok" {
		t.Fatalf("item results %q", got)
	}
	for _, want := range []string{"remove /opt/a, remove /opt/b/a=changed", "touch 1, touch 2, touch 3, … (4 items)/a=ok", "on a/a=ok"} {
		if !strings.Contains(strings.Join(l.rec.trace(), " "), want) {
			t.Errorf("trace %q lacks %q", l.rec.trace(), want)
		}
	}
	for _, e := range l.rec.events {
		if (e.Type == EventHostResult || e.Type == EventItemResult) && strings.Contains(e.Task, "{{") {
			t.Errorf("a result's name is shown unrendered: %+v", e)
		}
	}
}
