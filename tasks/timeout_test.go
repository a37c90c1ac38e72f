package tasks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/kmsctl/kmsctl/tasks"
)

// A run that failed only by waiting too long says so (the CLI exits 6);
// one with another failure does not.
func TestRunErrorTimedOut(t *testing.T) {
	hang := func(l *lab, host string) {
		l.fakes[host].ExpectMatch(`^hang`).AnyTimes().DoContext(func(ctx context.Context, _ string, _ []byte) (string, string, int, error) {
			<-ctx.Done()
			return "", "", 0, ctx.Err()
		})
	}
	cases := []struct {
		name string
		task Task
		fail bool // host b fails otherwise
		want bool
	}{
		{"wait_for", Task{Name: "w", Module: "wait_for", Args: map[string]any{"path": "/run/never", "timeout": "30ms", "sleep": "5ms"}}, false, true},
		{"task timeout", Task{Name: "w", Module: "shell", Args: map[string]any{"cmd": "hang"}, Timeout: 20 * time.Millisecond}, false, true},
		{"and another failure", Task{Name: "w", Module: "shell", Args: map[string]any{"cmd": "hang"}, Timeout: 20 * time.Millisecond}, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, "a", "b")
			hang(l, "a")
			if c.fail {
				l.fakes["b"].ExpectMatch(`^hang`).AnyTimes().Exit(1)
			} else {
				hang(l, "b")
			}
			_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a", "b"), Tasks: []Task{c.task}}})
			var re *RunError
			if !errors.As(err, &re) {
				t.Fatalf("want a RunError, got %v", err)
			}
			if re.TimedOut() != c.want {
				t.Fatalf("TimedOut() = %v, want %v: %v", re.TimedOut(), c.want, err)
			}
		})
	}
}
