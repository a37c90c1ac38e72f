package main

import (
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/journal"
)

// TestUnfinished: which runs `status`, `recover node` and `runs show`
// name as stopped unfinished, with their resume.
func TestUnfinished(t *testing.T) {
	step := []journal.Step{{Status: "changed"}}
	end := func(code int) *journal.End { return &journal.End{ExitCode: code} }
	for _, c := range []struct {
		name string
		run  journal.Run
		want bool
	}{
		{"killed after a step", journal.Run{Steps: step}, true},
		{"killed before any step", journal.Run{}, false},
		{"Ctrl-C after a step", journal.Run{Steps: step, End: end(exit.Interrupted)}, true},
		{"Ctrl-C before any step", journal.Run{End: end(exit.Interrupted)}, false},
		{"a host failed", journal.Run{Steps: step, End: end(exit.HostFailed)}, true},
		{"a host unreachable", journal.Run{Steps: step, End: end(exit.Unreachable)}, true},
		{"ended well", journal.Run{Steps: step, End: end(exit.OK)}, false},
		{"refused", journal.Run{Steps: step, End: end(exit.Refused)}, false},
		{"locked", journal.Run{End: end(exit.Locked)}, false},
	} {
		if got := unfinished(&c.run); got != c.want {
			t.Errorf("%s: unfinished = %v, want %v", c.name, got, c.want)
		}
	}
}
