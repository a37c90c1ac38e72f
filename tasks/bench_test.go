package tasks_test

import (
	"context"
	"fmt"
	"testing"

	. "github.com/kmsctl/kmsctl/tasks"
)

// BenchmarkEngineOverhead measures the engine's own cost per host and task
// (templating, expressions, events) on in-memory hosts: 50 hosts, 8 tasks.
func BenchmarkEngineOverhead(b *testing.B) {
	var names []string
	for i := range 50 {
		names = append(names, fmt.Sprintf("kms%02d", i))
	}
	l := newLab(b, names...)
	l.eng.Forks = 50
	l.eng.Sink = SinkFunc(func(Event) {})
	hosts := l.hosts(names...)
	tasks := []Task{
		{Name: "ping", Module: "ping"},
		{Name: "cmd", Module: "command", Args: map[string]any{"cmd": "true {{ hv }}"}, Register: "r", ChangedWhen: "r.rc != 0"},
		{Name: "dir", Module: "file", Args: map[string]any{"path": "/mnt/{{ inventory_hostname }}", "state": "directory", "mode": "0750"}},
		{Name: "conf", Module: "copy", Args: map[string]any{"content": "node: {{ inventory_hostname }}\n", "dest": "/etc/minkms/config.yaml", "mode": "0600"}},
		{Name: "fact", Module: "set_fact", Args: map[string]any{"x": "{{ hv }}-1"}},
		{Name: "assert", Module: "assert", Args: map[string]any{"that": []any{"r.rc == 0", "x is defined"}}},
		{Name: "when", Module: "shell", Args: map[string]any{"cmd": "true"}, When: "r.rc == 1"},
		{Name: "wait", Module: "wait_for", Args: map[string]any{"path": "/etc/minkms/config.yaml"}},
	}
	play := []Play{{Name: "bench", Hosts: hosts, Tasks: tasks}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.eng.Run(context.Background(), play); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(len(hosts)*len(tasks)), "µs/host-task")
}
