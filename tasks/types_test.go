package tasks

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestStatusAndEventJSON(t *testing.T) {
	b, err := json.Marshal(Event{Type: EventHostResult, Status: StatusUnreachable})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"Type":"host_result"`) || !strings.Contains(string(b), `"Status":"unreachable"`) {
		t.Fatalf("json %s", b)
	}
	for s, want := range map[Status]string{StatusOK: "ok", StatusChanged: "changed", StatusSkipped: "skipped", StatusFailed: "failed", Status(9): "Status(9)"} {
		if s.String() != want {
			t.Errorf("%d: %s", s, s)
		}
	}
}

func TestRecapAndRunError(t *testing.T) {
	r := Recap{"b": {OK: 1}, "a": {Failed: 1}, "c": {Unreachable: 1}}
	if !slices.Equal(r.Hosts(), []string{"a", "b", "c"}) || !r.Failed() || !r.Unreachable() {
		t.Fatalf("recap helpers: %v %v %v", r.Hosts(), r.Failed(), r.Unreachable())
	}
	cause := errors.New("exit 3")
	re := &RunError{Hosts: []*HostError{
		{Host: "a", Task: "start", Pos: "site.yml:7", Err: cause},
		{Host: "c", Task: "ping", Unreachable: true, Err: &UnreachableError{Err: errors.New("no route")}},
	}}
	msg := re.Error()
	for _, w := range []string{`host a failed at task "start" (site.yml:7): exit 3`, `host c unreachable at task "ping": no route`} {
		if !strings.Contains(msg, w) {
			t.Errorf("%q lacks %q", msg, w)
		}
	}
	if !errors.Is(re, cause) || !IsUnreachable(re.Hosts[1]) || IsUnreachable(re.Hosts[0]) {
		t.Fatal("RunError does not unwrap to its causes")
	}
}
