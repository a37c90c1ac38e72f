package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/tasks"
)

// events is a small run: one task on two hosts, one ok and one failed.
func events() []tasks.Event {
	hosts := []string{"kms1", "kms2"}
	return []tasks.Event{
		{Type: tasks.EventPlayStart, Play: "site", Hosts: hosts},
		{Type: tasks.EventTaskStart, Play: "site", Task: "push config", Hosts: hosts},
		{Type: tasks.EventHostResult, Play: "site", Task: "push config", Host: "kms1", Status: tasks.StatusChanged, Changed: true, Msg: "create /etc/x", Diff: "--- a\n+++ b\n"},
		{Type: tasks.EventHostResult, Play: "site", Task: "push config", Host: "kms2", Status: tasks.StatusFailed, Msg: "permission denied\nline two", Stderr: "oops\n"},
		{Type: tasks.EventRecap, Duration: 1500 * time.Millisecond, Recap: tasks.Recap{
			"kms1": {OK: 1, Changed: 1},
			"kms2": {Failed: 1},
		}},
	}
}

func TestPlain(t *testing.T) {
	var b bytes.Buffer
	d := NewPlain(&b, 0)
	for _, e := range events() {
		d.Event(e)
	}
	d.Close()
	want := `PLAY [site] on 2 hosts
changed: [kms1] push config
--- a
+++ b
failed: [kms2] push config: permission denied ⏎ line two
  stderr: oops

PLAY RECAP
kms1 : ok=1 changed=1 unreachable=0 failed=0 skipped=0 ignored=0 interrupted=0
kms2 : ok=0 changed=0 unreachable=0 failed=1 skipped=0 ignored=0 interrupted=0
total time 1.5s
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	d := New(&b, Options{Format: "json", Terminal: true})
	for _, e := range events() {
		d.Event(e)
	}
	d.Close()
	var types []string
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		types = append(types, m["event"].(string))
		if m["event"] == "host_result" && m["host"] == "kms2" && (m["status"] != "failed" || m["stderr"] != "oops\n") {
			t.Errorf("kms2 result %v", m)
		}
		if m["event"] == "recap" {
			kms1 := m["recap"].(map[string]any)["kms1"].(map[string]any)
			if kms1["changed"] != float64(1) || m["duration_ms"] != float64(1500) {
				t.Errorf("recap %v", m)
			}
		}
	}
	if got := strings.Join(types, ","); got != "play_start,task_start,host_result,host_result,recap" {
		t.Errorf("events %s", got)
	}
}

// TestLive: the live view draws one spinner line per running host and
// erases it when results arrive; the results and the recap stay.
func TestLive(t *testing.T) {
	var b bytes.Buffer
	d := NewLive(&b, 0, 0, true).(*live)
	evs := events()
	d.Event(evs[0])
	d.Event(evs[1])
	d.mu.Lock()
	running := strings.Join(d.running, ",")
	d.mu.Unlock()
	if running != "kms1,kms2" {
		t.Errorf("running = %q", running)
	}
	for _, e := range evs[2:] {
		d.Event(e)
	}
	d.Close()
	out := b.String()
	for _, want := range []string{"[kms1] push config  ", "[kms2] push config  ", "\x1b[2F\x1b[J", "\x1b[33mchanged\x1b[0m: [kms1] push config", "\x1b[31mfailed\x1b[0m: [kms2] push config", "PLAY RECAP"} {
		if !strings.Contains(out, want) {
			t.Errorf("live output lacks %q:\n%q", want, out)
		}
	}
	// After the last result nothing is left running, and nothing is drawn.
	if d.drawn != 0 || len(d.running) != 0 {
		t.Errorf("drawn %d running %v after close", d.drawn, d.running)
	}
	if !strings.HasSuffix(out, "total time 1.5s\n") {
		t.Errorf("live output does not end with the recap:\n%q", out)
	}
}

func TestCut(t *testing.T) {
	if got := cut("⠋ [kms1] a very long task name  1.2s", 12); got != "⠋ [kms1] a…" || len([]rune(got)) >= 12 {
		t.Errorf("cut = %q", got)
	}
	if got := cut("short", 80); got != "short" {
		t.Errorf("cut = %q", got)
	}
}

func TestPlainPlayOnOneHost(t *testing.T) {
	var b bytes.Buffer
	d := NewPlain(&b, 0)
	d.Event(tasks.Event{Type: tasks.EventPlayStart, Play: "site", Hosts: []string{"kms1"}})
	d.Close()
	if got, want := b.String(), "PLAY [site] on 1 host\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0 hosts", 1: "1 host", 2: "2 hosts", 11: "11 hosts"} {
		if got := Count(n, "host"); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

// screen is what a terminal shows after the bytes written to it: lines of
// text, with the escapes the live view uses (cursor to the start of a line
// N lines up, erase to the end of the screen, colours) applied.
func screen(t *testing.T, out string) []string {
	t.Helper()
	lines := []string{""}
	row := 0
	for i := 0; i < len(out); i++ {
		switch c := out[i]; {
		case c == '\n':
			row++
			if row == len(lines) {
				lines = append(lines, "")
			}
		case c == '\x1b':
			j := i + 2 // past ESC [
			for j < len(out) && (out[j] >= '0' && out[j] <= '9' || out[j] == ';') {
				j++
			}
			arg := out[i+2 : j]
			switch out[j] {
			case 'F':
				n := 1
				fmt.Sscan(arg, &n)
				row = max(row-n, 0)
				lines[row] = ""
			case 'J':
				lines = lines[:row+1]
				lines[row] = ""
			case 'm':
			default:
				t.Fatalf("unexpected escape %q", out[i:j+1])
			}
			i = j
		default:
			lines[row] += out[i : i+1] // bytes: a rune's bytes join up again
		}
	}
	return lines
}

// TestLiveLeavesNoStaleLines: lines written to stderr on the same terminal
// while hosts run (the Ctrl-C notice, warnings) go above the live area,
// and when the run ends, interrupted or not, no spinner line is left on
// the screen.
func TestLiveLeavesNoStaleLines(t *testing.T) {
	for _, interrupted := range []bool{false, true} {
		term := &syncWriter{}
		d := NewLive(term, 0, 0, false)
		stderr := d.Above(term)
		evs := events()
		d.Event(evs[0])
		d.Event(evs[1]) // two live lines: kms1, kms2
		fmt.Fprintln(stderr, "kmsctl: interrupted: no new work is started")
		time.Sleep(250 * time.Millisecond) // the spinner turns
		if interrupted {
			d.Event(tasks.Event{Type: tasks.EventHostResult, Task: "push config", Host: "kms1", Status: tasks.StatusInterrupted, Msg: "interrupted"})
			fmt.Fprintln(stderr, "kmsctl: interrupted again: exiting at once")
			d.Close() // kms2 never reported
		} else {
			for _, e := range evs[2:] {
				d.Event(e)
			}
			d.Close()
		}
		lines := screen(t, term.String())
		text := strings.Join(lines, "\n")
		for _, l := range lines {
			if strings.ContainsAny(l, strings.Join(spinner[:], "")) {
				t.Errorf("interrupted=%v: stale spinner line %q on the screen:\n%s", interrupted, l, text)
			}
		}
		if !strings.Contains(text, "kmsctl: interrupted: no new work is started") {
			t.Errorf("interrupted=%v: the stderr line is gone:\n%s", interrupted, text)
		}
		if interrupted && !strings.Contains(text, "interrupted: [kms1] push config: interrupted") {
			t.Errorf("the interrupted result is not shown:\n%s", text)
		}
	}
}

// syncWriter is a bytes.Buffer safe for the live view's ticker and the test.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// -v shows each item of a loop (its name rendered with the item) under the
// task; without -v only the host's result; JSON always has them.
func TestLoopItems(t *testing.T) {
	evs := []tasks.Event{
		{Type: tasks.EventItemResult, Task: "remove /a", Host: "kms1", Status: tasks.StatusChanged, Changed: true, Msg: "remove /a"},
		{Type: tasks.EventItemResult, Task: "remove /b", Host: "kms1", Status: tasks.StatusOK},
		{Type: tasks.EventHostResult, Task: "remove /a, remove /b", Host: "kms1", Status: tasks.StatusChanged, Changed: true, Msg: "2 items: 1 changed, 1 ok"},
	}
	for _, c := range []struct {
		verbosity int
		want      string
	}{
		{0, "changed: [kms1] remove /a, remove /b\n"},
		{1, "  changed: [kms1] remove /a: remove /a\n  ok: [kms1] remove /b\nchanged: [kms1] remove /a, remove /b: 2 items: 1 changed, 1 ok\n"},
	} {
		var b bytes.Buffer
		d := NewPlain(&b, c.verbosity)
		for _, e := range evs {
			d.Event(e)
		}
		if b.String() != c.want {
			t.Errorf("-v=%d: got:\n%s\nwant:\n%s", c.verbosity, b.String(), c.want)
		}
	}
	var b bytes.Buffer
	d := NewJSON(&b)
	d.Event(evs[0])
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil || m["event"] != "item_result" || m["task"] != "remove /a" || m["status"] != "changed" || m["host"] != "kms1" {
		t.Fatalf("JSON %s: %v", b.String(), err)
	}
}

// TestQuiet: a quiet display draws nothing, in any format or on a terminal.
func TestQuiet(t *testing.T) {
	for _, o := range []Options{{Format: "text", Quiet: true}, {Format: "json", Quiet: true}, {Format: "text", Terminal: true, Quiet: true}} {
		var b bytes.Buffer
		d := New(&b, o)
		for _, e := range events() {
			d.Event(e)
		}
		d.Close()
		if b.Len() != 0 {
			t.Errorf("%+v drew %q", o, b.String())
		}
	}
}
