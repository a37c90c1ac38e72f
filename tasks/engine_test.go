package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/modules"
	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/remote/fake"
	. "github.com/kmsctl/kmsctl/tasks"
)

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Event(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// results returns the host results of a task by host.
func (r *recorder) results(task string) map[string]Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Event{}
	for _, e := range r.events {
		if e.Type == EventHostResult && e.Task == task {
			out[e.Host] = e
		}
	}
	return out
}

// trace lists "task/host=status" for every host result, in order.
func (r *recorder) trace() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Type == EventHostResult {
			out = append(out, e.Task+"/"+e.Host+"="+e.Status.String())
		}
	}
	return out
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		fmt.Fprintf(&b, "%+v\n", e)
	}
	return b.String()
}

// lab is a set of fake hosts and an engine connected to them. The hosts run
// any command line (the tests are about the engine): the fake emulates
// what it knows and lets everything else succeed silently.
type lab struct {
	fakes    map[string]*fake.Conn
	connects map[string]int
	mu       sync.Mutex
	rec      *recorder
	eng      *Engine
}

func newLab(t testing.TB, names ...string) *lab {
	l := &lab{fakes: map[string]*fake.Conn{}, connects: map[string]int{}, rec: &recorder{}}
	for _, n := range names {
		l.fakes[n] = fake.New(t, n)
		l.fakes[n].AllowUnscripted()
	}
	l.eng = &Engine{Sink: l.rec, Modules: builtin(), Connect: func(ctx context.Context, h Host) (Conn, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.connects[h.Name]++
		f, ok := l.fakes[h.Name]
		if !ok {
			return nil, errors.New("no route to host " + h.Name)
		}
		f.Reopen() // a new connection to the host
		return f, nil
	}}
	return l
}

func (l *lab) hosts(names ...string) []Host {
	var hs []Host
	for _, n := range names {
		hs = append(hs, Host{Name: n, Vars: map[string]any{"hv": "host-" + n}})
	}
	return hs
}

// builtin returns a registry holding the general modules.
func builtin() *Registry {
	r := NewRegistry()
	modules.Register(r)
	return r
}

func sh(name, cmd string) Task {
	return Task{Name: name, Module: "shell", Args: map[string]any{"cmd": cmd}}
}

func ptr[T any](v T) *T { return &v }

func TestRunOKChangedAndRecap(t *testing.T) {
	l := newLab(t, "a", "b")
	play := Play{Name: "p", Hosts: l.hosts("a", "b"), Tasks: []Task{
		sh("run", "true"),
		{Name: "ping", Module: "ping"},
	}}
	recap, err := l.eng.Run(context.Background(), []Play{play})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, l.rec.all())
	}
	for _, h := range []string{"a", "b"} {
		if got := *recap[h]; got != (HostStats{OK: 2, Changed: 1}) {
			t.Errorf("recap %s = %+v, want OK 2 Changed 1", h, got)
		}
		if l.connects[h] != 1 || closes(l.fakes[h]) != 1 {
			t.Errorf("host %s: %d connects, %d closes; want 1 and 1", h, l.connects[h], closes(l.fakes[h]))
		}
	}
	if recap.Failed() || recap.Unreachable() {
		t.Errorf("recap says failed/unreachable: %+v", recap)
	}
	last := l.rec.events[len(l.rec.events)-1]
	if last.Type != EventRecap || last.Recap["a"].OK != 2 {
		t.Errorf("last event %+v, want the recap", last)
	}
	if got := l.rec.results("run")["a"]; got.Status != StatusChanged || !got.Changed {
		t.Errorf("run on a: %+v, want changed", got)
	}
}

func TestConnectOncePerRunAcrossPlays(t *testing.T) {
	l := newLab(t, "a")
	p := Play{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{sh("x", "true")}}
	if _, err := l.eng.Run(context.Background(), []Play{p, p, p}); err != nil {
		t.Fatal(err)
	}
	if l.connects["a"] != 1 || closes(l.fakes["a"]) != 1 {
		t.Fatalf("connects %d closes %d, want 1 1", l.connects["a"], closes(l.fakes["a"]))
	}
}

func TestDuplicateHostRunsOnce(t *testing.T) {
	l := newLab(t, "a")
	hosts := append(l.hosts("a"), l.hosts("a")...)
	recap, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: hosts, Tasks: []Task{sh("x", "true")}}})
	if err != nil || recap["a"].OK != 1 || len(callList(l.fakes["a"])) != 1 {
		t.Fatalf("err %v recap %+v calls %v", err, recap["a"], callList(l.fakes["a"]))
	}
}

func TestForksBound(t *testing.T) {
	names := []string{"h1", "h2", "h3", "h4", "h5", "h6"}
	l := newLab(t, names...)
	var inflight, maxInflight atomic.Int32
	started := make(chan struct{}, len(names))
	release := make(chan struct{})
	for _, f := range l.fakes {
		f.ExpectMatch(`^block`).AnyTimes().DoContext(func(ctx context.Context, _ string, _ []byte) (string, string, int, error) {
			n := inflight.Add(1)
			for {
				m := maxInflight.Load()
				if n <= m || maxInflight.CompareAndSwap(m, n) {
					break
				}
			}
			started <- struct{}{}
			<-release
			inflight.Add(-1)
			return "", "", 0, nil
		})
	}
	l.eng.Forks = 2
	done := make(chan error)
	go func() {
		_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts(names...), Tasks: []Task{sh("b", "block")}}})
		done <- err
	}()
	<-started
	<-started // two in flight, none released
	for range names {
		release <- struct{}{}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := maxInflight.Load(); got != 2 {
		t.Fatalf("max concurrent runs = %d, want 2 (forks)", got)
	}
}

func TestSerialRunsPlayPerBatch(t *testing.T) {
	l := newLab(t, "a", "b", "c")
	p := Play{Name: "p", Hosts: l.hosts("a", "b", "c"), Serial: []string{"1", "2"},
		Tasks: []Task{sh("t1", "true"), sh("t2", "true")}}
	if _, err := l.eng.Run(context.Background(), []Play{p}); err != nil {
		t.Fatal(err)
	}
	tr := l.rec.trace()
	// a runs both tasks before b and c start.
	if !slices.Equal(tr[:2], []string{"t1/a=changed", "t2/a=changed"}) || len(tr) != 6 {
		t.Fatalf("trace %v", tr)
	}
	rest := tr[2:]
	if !slices.Contains(rest[:2], "t1/b=changed") || !slices.Contains(rest[:2], "t1/c=changed") {
		t.Fatalf("second batch did not run t1 on b and c first: %v", tr)
	}
}

func TestAnyErrorsFatal(t *testing.T) {
	for _, aef := range []bool{true, false} {
		t.Run(fmt.Sprint(aef), func(t *testing.T) {
			l := newLab(t, "a", "b", "c")
			l.fakes["b"].ExpectMatch(`^step1`).AnyTimes().Exit(3)
			p := Play{Name: "p", Hosts: l.hosts("a", "b", "c"), AnyErrorsFatal: &aef,
				Tasks: []Task{sh("step1", "step1"), sh("step2", "true")}}
			p2 := Play{Name: "p2", Hosts: l.hosts("a", "c"), Tasks: []Task{sh("next", "true")}}
			recap, err := l.eng.Run(context.Background(), []Play{p, p2})
			var re *RunError
			if !errors.As(err, &re) || len(re.Hosts) != 1 || re.Hosts[0].Host != "b" || re.Hosts[0].Unreachable {
				t.Fatalf("err = %v, want a RunError for b", err)
			}
			if !recap.Failed() || recap["b"].Failed != 1 {
				t.Fatalf("recap %+v", recap["b"])
			}
			step2 := l.rec.results("step2")
			if aef {
				if len(step2) != 0 || len(l.rec.results("next")) != 0 {
					t.Fatalf("play went on after a failure with any_errors_fatal: %v", l.rec.trace())
				}
			} else {
				if len(step2) != 2 || step2["a"].Status != StatusChanged || step2["c"].Status != StatusChanged {
					t.Fatalf("step2 = %v, want a and c", l.rec.trace())
				}
				if _, ok := step2["b"]; ok {
					t.Fatal("failed host b kept running")
				}
				if len(l.rec.results("next")) != 2 {
					t.Fatalf("next play did not run: %v", l.rec.trace())
				}
			}
		})
	}
}

func TestUnreachableIsNotFailed(t *testing.T) {
	l := newLab(t, "a", "c")
	l.fakes["c"].SetUnreachable(true)
	p := Play{Name: "p", Hosts: l.hosts("a", "b", "c"), Tasks: []Task{sh("t1", "true"), sh("t2", "true")}}
	recap, err := l.eng.Run(context.Background(), []Play{p})
	var re *RunError
	if !errors.As(err, &re) || len(re.Hosts) != 2 {
		t.Fatalf("err = %v", err)
	}
	for _, he := range re.Hosts {
		if !he.Unreachable {
			t.Errorf("%s not marked unreachable: %v", he.Host, he)
		}
	}
	if recap.Failed() || !recap.Unreachable() {
		t.Fatalf("recap failed=%v unreachable=%v", recap.Failed(), recap.Unreachable())
	}
	if recap["b"].Unreachable != 1 || recap["c"].Unreachable != 1 || recap["a"].OK != 2 {
		t.Fatalf("recap a=%+v b=%+v c=%+v", *recap["a"], *recap["b"], *recap["c"])
	}
	if r := l.rec.results("t2"); len(r) != 1 || r["a"].Status != StatusChanged {
		t.Fatalf("t2 should run on a only: %v", l.rec.trace())
	}
	if !strings.Contains(l.rec.results("t1")["b"].Msg, "no route to host b") {
		t.Errorf("unreachable message lacks the connect error: %q", l.rec.results("t1")["b"].Msg)
	}
}

func TestWhenRegisterChangedFailedWhen(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].ExpectMatch(`^echo-boom`).AnyTimes().Stdout("boom\n").Exit(1)
	tasks := []Task{
		{Name: "reg", Module: "command", Args: map[string]any{"argv": []any{"echo", "hello", "world"}}, Register: "r", ChangedWhen: "false"},
		{Name: "yes", Module: "shell", Args: map[string]any{"cmd": "true"}, When: `r.stdout == "hello world\n" and r.rc == 0 and r.stdout_lines[0] == "hello world"`},
		{Name: "no", Module: "shell", Args: map[string]any{"cmd": "true"}, When: "r.rc != 0"},
		{Name: "undef", Module: "shell", Args: map[string]any{"cmd": "true"}, When: "nothere is defined"},
		{Name: "undef2", Module: "shell", Args: map[string]any{"cmd": "true"}, When: "nothere is not defined and r.changed == false"},
		{Name: "tolerated", Module: "shell", Args: map[string]any{"cmd": "echo-boom"}, Register: "b", FailedWhen: `b.stdout contains "bang"`},
		{Name: "after", Module: "shell", Args: map[string]any{"cmd": "true"}, When: "b.rc == 1 and not b.failed"},
		{Name: "failnow", Module: "shell", Args: map[string]any{"cmd": "true"}, FailedWhen: "result.rc == 0"},
	}
	recap, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks}})
	want := []string{"reg/a=ok", "yes/a=changed", "no/a=skipped", "undef/a=skipped", "undef2/a=changed",
		"tolerated/a=changed", "after/a=changed", "failnow/a=failed"}
	if got := l.rec.trace(); !slices.Equal(got, want) {
		t.Fatalf("trace\n got %v\nwant %v", got, want)
	}
	if err == nil || recap["a"].Failed != 1 || recap["a"].Skipped != 2 {
		t.Fatalf("err %v recap %+v", err, recap["a"])
	}
	if !strings.Contains(l.rec.results("failnow")["a"].Msg, "failed_when") {
		t.Errorf("failnow msg %q", l.rec.results("failnow")["a"].Msg)
	}
}

func TestUntilRetries(t *testing.T) {
	l := newLab(t, "a")
	var n atomic.Int32
	l.fakes["a"].ExpectMatch(`^probe`).AnyTimes().DoContext(func(context.Context, string, []byte) (string, string, int, error) {
		if n.Add(1) < 3 {
			return "", "", 1, nil
		}
		return "ready\n", "", 0, nil
	})
	l.fakes["a"].ExpectMatch(`^never`).AnyTimes().Exit(1)
	tasks := []Task{
		{Name: "wait", Module: "shell", Args: map[string]any{"cmd": "probe"}, Register: "w", Until: "w.rc == 0", Retries: 5, Delay: time.Millisecond},
		{Name: "check", Module: "assert", Args: map[string]any{"that": []any{"w.attempts == 3", `w.stdout == "ready\n"`}}},
		{Name: "exhaust", Module: "shell", Args: map[string]any{"cmd": "never"}, Until: "result.rc == 0", Retries: 2, Delay: time.Millisecond},
	}
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks}})
	want := []string{"wait/a=changed", "check/a=ok", "exhaust/a=failed"}
	if got := l.rec.trace(); !slices.Equal(got, want) {
		t.Fatalf("trace %v, want %v\n%s", got, want, l.rec.all())
	}
	if err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if c := slices.Index(callList(l.fakes["a"]), "never"); c < 0 || strings.Count(strings.Join(callList(l.fakes["a"]), ","), "never") != 3 {
		t.Fatalf("never ran %v", callList(l.fakes["a"]))
	}
}

func TestLoop(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].ExpectMatch(`^echo bad`).AnyTimes().Exit(1)
	p := Play{Name: "p", Hosts: l.hosts("a"), Vars: map[string]any{"nodes": []any{"kms1", "kms2", "kms3"}},
		Tasks: []Task{
			{Name: "files", Module: "copy", Loop: []any{map[string]any{"n": "a", "c": "1"}, map[string]any{"n": "b", "c": "{{ inventory_hostname }}"}},
				Args: map[string]any{"content": "{{ item.c }}", "dest": "/etc/minkms/{{ item.n }}"}, Register: "files"},
			{Name: "nodes", Module: "command", Loop: "{{ nodes }}", LoopVar: "node", When: `node != "kms2"`,
				Args: map[string]any{"argv": []any{"echo", "{{ node }}"}}, Register: "out"},
			{Name: "check", Module: "assert", Args: map[string]any{"that": []any{
				"len(files.results) == 2", "files.changed", `out.results[0].stdout == "kms1\n"`, "out.results[1].skipped",
				`out.results[2].node == "kms3"`, `out.msg == "3 items: 2 changed, 1 skipped"`}}},
			{Name: "expr", Module: "set_fact", Loop: "filter(nodes, # != \"kms1\")", Args: map[string]any{"last": "{{ item }}"}},
			{Name: "last", Module: "assert", Args: map[string]any{"that": `last == "kms3"`}},
			{Name: "partly bad", Module: "command", Loop: []any{"good", "bad", "good2"}, Args: map[string]any{"cmd": "echo {{ item }}"}},
		}}
	_, err := l.eng.Run(context.Background(), []Play{p})
	want := []string{"files/a=changed", "nodes/a=changed", "check/a=ok", "expr/a=ok", "last/a=ok", "partly bad/a=failed"}
	if got := l.rec.trace(); !slices.Equal(got, want) {
		t.Fatalf("trace %v, want %v\n%s", got, want, l.rec.all())
	}
	if f, ok := l.fakes["a"].File("/etc/minkms/b"); !ok || f.Content != "a" {
		t.Fatalf("item file %+v", f)
	}
	if err == nil || !strings.Contains(err.Error(), "item bad") {
		t.Fatalf("err %v", err)
	}
	if !slices.Contains(callList(l.fakes["a"]), "echo good2") {
		t.Fatal("loop stopped at the failing item")
	}
}

func TestDelegateTo(t *testing.T) {
	l := newLab(t, "dead", "peer", "outside")
	l.fakes["dead"].SetUnreachable(true)
	hosts := l.hosts("dead", "peer")
	hosts[0].Vars["healthy"] = "peer"
	aef := false
	p := Play{Name: "p", Hosts: hosts[:1], AnyErrorsFatal: &aef, Tasks: []Task{
		{Name: "edit", Module: "command", Args: map[string]any{"cmd": "cluster-edit {{ inventory_hostname }}"}, DelegateTo: "{{ healthy }}", Register: "r"},
		{Name: "outside", Module: "command", Args: map[string]any{"cmd": "hello"}, DelegateTo: "outside"},
		{Name: "nowhere", Module: "ping", DelegateTo: "ghost"},
	}}
	recap, err := l.eng.Run(context.Background(), []Play{p})
	if !slices.Contains(callList(l.fakes["peer"]), "cluster-edit dead") || !slices.Contains(callList(l.fakes["outside"]), "hello") {
		t.Fatalf("delegated commands: peer %v, outside %v", callList(l.fakes["peer"]), callList(l.fakes["outside"]))
	}
	if len(callList(l.fakes["dead"])) != 0 {
		t.Fatalf("the dead host was used: %v", callList(l.fakes["dead"]))
	}
	if got := l.rec.trace(); !slices.Equal(got, []string{"edit/dead=changed", "outside/dead=changed", "nowhere/dead=failed"}) {
		t.Fatalf("trace %v", got)
	}
	if recap["dead"].Unreachable != 0 || recap["dead"].Failed != 1 || err == nil || !strings.Contains(err.Error(), "delegate to ghost") {
		t.Fatalf("recap %+v err %v", *recap["dead"], err)
	}
	if closes(l.fakes["outside"]) != 1 || closes(l.fakes["peer"]) != 1 {
		t.Fatal("delegate connections not closed")
	}
}

// TestPeer: a module reaches another host through Env.Peer (copy's
// from_host): a host outside the play is connected once, become as the
// task, and closed at the end; a peer that cannot be reached fails the
// task without making the task's host unreachable.
func TestPeer(t *testing.T) {
	l := newLab(t, "kms3", "kms1")
	l.fakes["kms1"].SetFile("/usr/local/bin/minkms", "the peer's binary", 0o755)
	var users []string
	var mu sync.Mutex
	l.eng.Become = func(c Conn, user string) Conn {
		mu.Lock()
		defer mu.Unlock()
		users = append(users, c.Host()+" as "+user)
		return c
	}
	copyFrom := func(name, from string) Task {
		return Task{Name: name, Module: "copy", Become: ptr(true),
			Args: map[string]any{"src": "/usr/local/bin/minkms", "from_host": from, "dest": "/usr/local/bin/minkms", "mode": "0755"}}
	}
	aef := false
	recap, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("kms3"), AnyErrorsFatal: &aef,
		Tasks: []Task{copyFrom("binary", "kms1"), copyFrom("again", "kms1"), copyFrom("nowhere", "ghost")}}})
	if f, ok := l.fakes["kms3"].File("/usr/local/bin/minkms"); !ok || f.Content != "the peer's binary" {
		t.Fatalf("copied %+v", f)
	}
	if got := l.rec.trace(); !slices.Equal(got, []string{"binary/kms3=changed", "again/kms3=ok", "nowhere/kms3=failed"}) {
		t.Fatalf("trace %v", got)
	}
	if !slices.Contains(users, "kms1 as root") || !slices.Contains(users, "kms3 as root") {
		t.Errorf("become %v", users)
	}
	if l.connects["kms1"] != 1 || closes(l.fakes["kms1"]) != 1 {
		t.Errorf("peer connected %d times, closed %d times", l.connects["kms1"], closes(l.fakes["kms1"]))
	}
	if recap["kms3"].Unreachable != 0 || err == nil || !strings.Contains(err.Error(), "peer ghost") {
		t.Fatalf("recap %+v err %v", *recap["kms3"], err)
	}
}

func TestDelegateConcurrently(t *testing.T) {
	names := []string{"peer", "h1", "h2", "h3", "h4"}
	l := newLab(t, names...)
	p := Play{Name: "p", Hosts: l.hosts(names...), Tasks: []Task{
		{Name: "via peer", Module: "command", Args: map[string]any{"cmd": "from {{ inventory_hostname }}"}, DelegateTo: "peer"},
	}}
	if _, err := l.eng.Run(context.Background(), []Play{p}); err != nil {
		t.Fatal(err)
	}
	if got := len(callList(l.fakes["peer"])); got != 5 || l.connects["peer"] != 1 {
		t.Fatalf("peer ran %d commands over %d connections", got, l.connects["peer"])
	}
}

func TestRunOnce(t *testing.T) {
	l := newLab(t, "a", "b", "c")
	p := Play{Name: "p", Hosts: l.hosts("a", "b", "c"), Tasks: []Task{
		{Name: "once", Module: "command", Args: map[string]any{"cmd": "echo {{ inventory_hostname }}"}, RunOnce: true, Register: "leader"},
		{Name: "fact", Module: "set_fact", Args: map[string]any{"chosen": "{{ inventory_hostname }}"}, RunOnce: true},
		{Name: "all see it", Module: "assert", Args: map[string]any{"that": []any{`leader.stdout == "a\n"`, `chosen == "a"`}}},
	}}
	if _, err := l.eng.Run(context.Background(), []Play{p}); err != nil {
		t.Fatalf("%v\n%s", err, l.rec.all())
	}
	if r := l.rec.results("once"); len(r) != 1 || r["a"].Status != StatusChanged {
		t.Fatalf("once ran on %v", l.rec.trace())
	}
	if len(l.rec.results("all see it")) != 3 {
		t.Fatalf("trace %v", l.rec.trace())
	}
}

func TestIgnoreErrors(t *testing.T) {
	l := newLab(t, "a")
	tasks := []Task{
		{Name: "bad", Module: "shell", Args: map[string]any{"cmd": "false"}, IgnoreErrors: true},
		sh("good", "true"),
	}
	recap, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks}})
	if err != nil {
		t.Fatalf("ignored failure returned %v", err)
	}
	if *recap["a"] != (HostStats{OK: 1, Changed: 1, Ignored: 1}) {
		t.Fatalf("recap %+v", *recap["a"])
	}
	if e := l.rec.results("bad")["a"]; e.Status != StatusFailed || !e.Ignored {
		t.Fatalf("bad event %+v", e)
	}
}

func TestTags(t *testing.T) {
	tasks := []Task{
		{Name: "a", Module: "ping", Tags: []string{"a"}},
		{Name: "b", Module: "ping", Tags: []string{"b"}},
		{Name: "always", Module: "ping", Tags: []string{"always"}},
		{Name: "never", Module: "ping", Tags: []string{"never", "debug"}},
		{Name: "untagged", Module: "ping"},
	}
	cases := []struct {
		tags, skip []string
		want       []string
	}{
		{nil, nil, []string{"a", "b", "always", "untagged"}},
		{[]string{"a"}, nil, []string{"a", "always"}},
		{nil, []string{"a"}, []string{"b", "always", "untagged"}},
		{[]string{"debug"}, nil, []string{"always", "never"}},
		{[]string{"a"}, []string{"always"}, []string{"a"}},
	}
	for _, c := range cases {
		l := newLab(t, "h")
		l.eng.Tags, l.eng.SkipTags = c.tags, c.skip
		if _, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("h"), Tasks: tasks}}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range l.rec.trace() {
			got = append(got, strings.TrimSuffix(s, "/h=ok"))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("tags %v skip %v: ran %v, want %v", c.tags, c.skip, got, c.want)
		}
	}
}

func TestTimeout(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].ExpectMatch(`^hang`).AnyTimes().DoContext(func(ctx context.Context, _ string, _ []byte) (string, string, int, error) {
		<-ctx.Done()
		return "", "", 0, ctx.Err()
	})
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"),
		Tasks: []Task{{Name: "hang", Module: "shell", Args: map[string]any{"cmd": "hang"}, Timeout: 20 * time.Millisecond}}}})
	if err == nil || !strings.Contains(err.Error(), "timed out after 20ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestHandlersRunOnceAtEndAndAfterFailure(t *testing.T) {
	l := newLab(t, "a", "b")
	l.fakes["b"].ExpectMatch(`^later`).AnyTimes().Exit(1)
	aef := false
	p := Play{Name: "p", Hosts: l.hosts("a", "b"), AnyErrorsFatal: &aef,
		Tasks: []Task{
			{Name: "push", Module: "copy", Args: map[string]any{"content": "x", "dest": "/etc/app.conf"}, Notify: []string{"restart app"}},
			{Name: "push again", Module: "copy", Args: map[string]any{"content": "y", "dest": "/etc/app2.conf"}, Notify: []string{"restart app", "unused"}},
			sh("later", "later"),
			sh("last", "true"),
		},
		Handlers: []Task{
			{Name: "unused", Module: "shell", Args: map[string]any{"cmd": "true"}, When: "false"},
			{Name: "restart app", Module: "shell", Args: map[string]any{"cmd": "restart-app"}},
			{Name: "never notified", Module: "shell", Args: map[string]any{"cmd": "nope"}},
		}}
	for _, f := range l.fakes {
		f.ExpectMatch(`^restart-app`).AnyTimes()
	}
	recap, err := l.eng.Run(context.Background(), []Play{p})
	if err == nil || recap["b"].Failed != 1 {
		t.Fatalf("err %v", err)
	}
	tr := l.rec.trace()
	if len(tr) < 5 {
		t.Fatalf("trace %v\n%s", tr, l.rec.all())
	}
	want := []string{"last/a=changed", "unused/a=skipped", "unused/b=skipped", "restart app/a=changed", "restart app/b=changed"}
	got := tr[len(tr)-5:]
	slices.Sort(got[1:3])
	slices.Sort(got[3:5])
	if !slices.Equal(got, want) {
		t.Fatalf("trace tail %v, want %v (handlers in definition order, once, also on failed b)", tr, want)
	}
	for _, h := range []string{"a", "b"} {
		n := 0
		for _, c := range callList(l.fakes[h]) {
			if c == "restart-app" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: handler ran %d times", h, n)
		}
	}
	if slices.Contains(callList(l.fakes["a"]), "nope") {
		t.Error("un-notified handler ran")
	}
}

func TestHandlerNotNotifiedWhenUnchanged(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].SetFile("/etc/app.conf", "x", 0o644)
	p := Play{Name: "p", Hosts: l.hosts("a"),
		Tasks:    []Task{{Name: "push", Module: "copy", Args: map[string]any{"content": "x", "dest": "/etc/app.conf"}, Notify: []string{"h"}}},
		Handlers: []Task{{Name: "h", Module: "shell", Args: map[string]any{"cmd": "handler"}}}}
	if _, err := l.eng.Run(context.Background(), []Play{p}); err != nil {
		t.Fatal(err)
	}
	if len(l.rec.results("h")) != 0 {
		t.Fatal("handler ran though nothing changed")
	}
}

func TestCancelStopsNewTasksButRunsHandlers(t *testing.T) {
	l := newLab(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handlerCtxErr error
	l.fakes["a"].ExpectMatch(`^deploy`).AnyTimes().DoContext(func(context.Context, string, []byte) (string, string, int, error) {
		cancel() // the operator presses Ctrl-C while this runs
		return "", "", 0, nil
	})
	l.fakes["a"].ExpectMatch(`^restart`).AnyTimes().DoContext(func(hctx context.Context, _ string, _ []byte) (string, string, int, error) {
		handlerCtxErr = hctx.Err()
		return "", "", 0, nil
	})
	p := Play{Name: "p", Hosts: l.hosts("a"),
		Tasks:    []Task{{Name: "deploy", Module: "shell", Args: map[string]any{"cmd": "deploy"}, Notify: []string{"restart"}}, sh("next", "true")},
		Handlers: []Task{{Name: "restart", Module: "shell", Args: map[string]any{"cmd": "restart"}}}}
	recap, err := l.eng.Run(ctx, []Play{p, p})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var re *RunError
	if !errors.As(err, &re) || re.Cancelled == nil {
		t.Fatalf("err = %#v, want a RunError with Cancelled", err)
	}
	want := []string{"deploy/a=changed", "restart/a=changed"}
	if got := l.rec.trace(); !slices.Equal(got, want) {
		t.Fatalf("trace %v, want %v", got, want)
	}
	if handlerCtxErr != nil {
		t.Fatalf("handler ran with a cancelled context: %v", handlerCtxErr)
	}
	if recap["a"].OK != 2 || l.rec.events[len(l.rec.events)-1].Type != EventRecap {
		t.Fatalf("recap %+v / last event missing", recap["a"])
	}
}

func TestHandlersAfterCancelAreBounded(t *testing.T) {
	l := newLab(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l.fakes["a"].ExpectMatch(`^deploy`).AnyTimes().DoContext(func(context.Context, string, []byte) (string, string, int, error) {
		cancel()
		return "", "", 0, nil
	})
	l.fakes["a"].ExpectMatch(`^hang`).AnyTimes().DoContext(func(hctx context.Context, _ string, _ []byte) (string, string, int, error) {
		<-hctx.Done()
		return "", "", 0, hctx.Err()
	})
	l.eng.HandlerTimeout = 20 * time.Millisecond
	p := Play{Name: "p", Hosts: l.hosts("a"),
		Tasks:    []Task{{Name: "deploy", Module: "shell", Args: map[string]any{"cmd": "deploy"}, Notify: []string{"restart"}}},
		Handlers: []Task{{Name: "restart", Module: "shell", Args: map[string]any{"cmd": "hang"}}}}
	recap, err := l.eng.Run(ctx, []Play{p})
	// The handler cut by HandlerTimeout is interrupted, not failed.
	if !errors.Is(err, context.Canceled) || recap["a"].Interrupted != 1 || recap["a"].Failed != 0 {
		t.Fatalf("err %v recap %+v", err, recap["a"])
	}
	if ev := l.rec.results("restart")["a"]; ev.Status != StatusInterrupted || !strings.Contains(ev.Msg, "deadline exceeded") {
		t.Fatalf("handler result %+v", ev)
	}
}

// TestInterruptedIsNotFailed: a task the cancelled run cuts short is
// reported once, as interrupted: its result, the recap's Interrupted
// count, and not as a failed host in the RunError. A changed result names
// the handlers it notified.
func TestInterruptedIsNotFailed(t *testing.T) {
	l := newLab(t, "a", "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{}, 2)
	for _, f := range l.fakes {
		f.ExpectMatch(`^deploy`).AnyTimes()
		f.ExpectMatch(`^wipe`).AnyTimes().DoContext(func(hctx context.Context, _ string, _ []byte) (string, string, int, error) {
			started <- struct{}{}
			<-hctx.Done()
			return "", "", 0, hctx.Err()
		})
	}
	go func() {
		<-started
		<-started
		cancel()
	}()
	p := Play{Name: "p", Hosts: l.hosts("a", "b"),
		Tasks: []Task{
			{Name: "deploy", Module: "shell", Args: map[string]any{"cmd": "deploy"}, Notify: []string{"restart"}},
			{Name: "wipe", Module: "shell", Args: map[string]any{"cmd": "wipe"}},
			sh("never", "true"),
		},
		Handlers: []Task{sh("restart", "true")}}
	recap, err := l.eng.Run(ctx, []Play{p})
	var re *RunError
	if !errors.As(err, &re) || re.Cancelled == nil || len(re.Hosts) != 0 {
		t.Fatalf("err %#v, want a cancelled RunError without host errors", err)
	}
	for _, h := range []string{"a", "b"} {
		if got := *recap[h]; got != (HostStats{OK: 2, Changed: 2, Interrupted: 1}) {
			t.Errorf("recap %s = %+v", h, got)
		}
		if ev := l.rec.results("wipe")[h]; ev.Status != StatusInterrupted || ev.Ignored || !strings.Contains(ev.Msg, "context canceled") {
			t.Errorf("wipe on %s: %+v", h, ev)
		}
		if ev := l.rec.results("deploy")[h]; !slices.Equal(ev.Notified, []string{"restart"}) {
			t.Errorf("deploy on %s notified %v", h, ev.Notified)
		}
		if ev := l.rec.results("restart")[h]; ev.Status != StatusChanged || len(ev.Notified) != 0 {
			t.Errorf("owed handler on %s: %+v", h, ev)
		}
	}
	if Status(StatusInterrupted).String() != "interrupted" {
		t.Errorf("StatusInterrupted is %q", StatusInterrupted)
	}
}

func TestCancelStartsNoFurtherHost(t *testing.T) {
	l := newLab(t, "a", "b", "c")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ran atomic.Int32
	for _, f := range l.fakes {
		f.ExpectMatch(`^work`).AnyTimes().DoContext(func(context.Context, string, []byte) (string, string, int, error) {
			ran.Add(1)
			cancel()
			return "", "", 0, nil
		})
	}
	l.eng.Forks = 1
	_, err := l.eng.Run(ctx, []Play{{Name: "p", Hosts: l.hosts("a", "b", "c"), Tasks: []Task{sh("w", "work")}}})
	if !errors.Is(err, context.Canceled) || ran.Load() != 1 {
		t.Fatalf("err %v, ran on %d hosts; want cancelled after 1", err, ran.Load())
	}
	// A later run on the same Engine works normally.
	if _, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a", "b", "c"), Tasks: []Task{sh("t", "true")}}}); err != nil {
		t.Fatal(err)
	}
}

func TestNoLogHidesSecrets(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].ExpectMatch(`^use-secret`).AnyTimes().DoContext(func(_ context.Context, _ string, stdin []byte) (string, string, int, error) {
		return "got " + string(stdin), "error near " + string(stdin), 1, nil
	})
	l.eng.Diff = true
	tasks := []Task{
		{Name: "secret cmd", Module: "command", Args: map[string]any{"cmd": "use-secret", "stdin": "{{ key }}"}, NoLog: true, IgnoreErrors: true},
		{Name: "secret file", Module: "copy", Args: map[string]any{"content": "KEY={{ key }}\n", "dest": "/etc/default/minkms"}, NoLog: true},
		{Name: "secret fail", Module: "command", Args: map[string]any{"cmd": "use-secret", "stdin": "{{ key }}"}, NoLog: true},
	}
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Vars: map[string]any{"key": sentinel}, Tasks: tasks}})
	if err == nil {
		t.Fatal("want the last task to fail")
	}
	if strings.Contains(err.Error(), sentinel) || strings.Contains(fmt.Sprintf("%+v", err), sentinel) {
		t.Fatalf("secret in error: %v", err)
	}
	if strings.Contains(l.rec.all(), sentinel) {
		t.Fatalf("secret in events:\n%s", l.rec.all())
	}
	if got := l.rec.results("secret cmd")["a"].Msg; got != "the output has been hidden due to no_log: true" {
		t.Fatalf("no_log message %q", got)
	}
	for _, c := range callList(l.fakes["a"]) {
		if strings.Contains(c, sentinel) {
			t.Fatalf("secret in a command line: %q", c)
		}
	}
	if f, ok := l.fakes["a"].File("/etc/default/minkms"); !ok || f.Content != "KEY="+sentinel+"\n" {
		t.Fatal("secret file not written")
	}
}

func TestRedactorMasksOutput(t *testing.T) {
	l := newLab(t, "a")
	l.eng.Redactor = redact.New(sentinel)
	l.fakes["a"].ExpectMatch(`^leak`).AnyTimes().Stdout(sentinel + "\n").Exit(2)
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{sh("leak", "leak")}}})
	if err == nil {
		t.Fatal("want failure")
	}
	ev := l.rec.results("leak")["a"]
	if !strings.Contains(ev.Stdout, redact.Mask) || strings.Contains(l.rec.all(), sentinel) {
		t.Fatalf("stdout not masked: %q", ev.Stdout)
	}
}

func TestCheckModeRunsPlanOnly(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].SetFile("/etc/app.conf", "old\n", 0o644)
	l.fakes["a"].SetUnit("minkms.service", fake.Unit{})
	l.eng.Check, l.eng.Diff = true, true
	before := l.fakes["a"].Snapshot()
	tasks := []Task{
		sh("cmd", "rm -rf /"),
		{Name: "guarded", Module: "command", Args: map[string]any{"cmd": "make-thing", "creates": "/opt/thing"}},
		{Name: "conf", Module: "copy", Args: map[string]any{"content": "new\n", "dest": "/etc/app.conf"}, Notify: []string{"restart"}},
		{Name: "svc", Module: "service", Args: map[string]any{"name": "minkms.service", "state": "started", "enabled": true}},
		{Name: "dir", Module: "file", Args: map[string]any{"path": "/mnt/minio-kms", "state": "directory"}},
		{Name: "wait", Module: "wait_for", Args: map[string]any{"port": 7373, "timeout": 3600}},
	}
	handlers := []Task{{Name: "restart", Module: "service", Args: map[string]any{"name": "minkms.service", "state": "restarted"}}}
	recap, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks, Handlers: handlers}})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, l.rec.all())
	}
	want := []string{"cmd/a=skipped", "guarded/a=changed", "conf/a=changed", "svc/a=changed", "dir/a=changed", "wait/a=ok", "restart/a=changed"}
	if got := l.rec.trace(); !slices.Equal(got, want) {
		t.Fatalf("trace %v, want %v", got, want)
	}
	if after := l.fakes["a"].Snapshot(); after != before {
		t.Fatalf("check mode changed the host:\n%s\n---\n%s", before, after)
	}
	for _, c := range callList(l.fakes["a"]) {
		if c == "rm -rf /" || c == "make-thing" || strings.HasPrefix(c, "upload") || strings.Contains(c, "systemctl start") {
			t.Fatalf("check mode ran %q", c)
		}
	}
	if d := l.rec.results("conf")["a"].Diff; !strings.Contains(d, "-old") || !strings.Contains(d, "+new") {
		t.Fatalf("diff %q", d)
	}
	if recap["a"].Changed != 5 {
		t.Fatalf("recap %+v", *recap["a"])
	}
}

func TestTaskCheckModeOverride(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].ExpectMatch(`^systemctl is-active`).AnyTimes().Stdout("active\n").Exit(0)
	l.eng.Check = true
	tasks := []Task{
		{Name: "probe", Module: "shell", Args: map[string]any{"cmd": "systemctl is-active minkms"}, CheckMode: ptr(false), Register: "st", ChangedWhen: "false"},
		{Name: "use", Module: "assert", Args: map[string]any{"that": `st.stdout == "active\n"`}},
		{Name: "mutate", Module: "shell", Args: map[string]any{"cmd": "reboot"}},
	}
	if _, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks}}); err != nil {
		t.Fatalf("%v\n%s", err, l.rec.all())
	}
	if got := l.rec.trace(); !slices.Equal(got, []string{"probe/a=ok", "use/a=ok", "mutate/a=skipped"}) {
		t.Fatalf("trace %v", got)
	}
	if slices.Contains(callList(l.fakes["a"]), "reboot") {
		t.Fatal("check mode ran a mutation")
	}
	l2 := newLab(t, "a")
	_, err := l2.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l2.hosts("a"), Tasks: []Task{
		{Name: "always plan", Module: "copy", Args: map[string]any{"content": "x", "dest": "/etc/x"}, CheckMode: ptr(true)}}}})
	if err != nil || l2.rec.results("always plan")["a"].Status != StatusChanged {
		t.Fatalf("%v %v", err, l2.rec.trace())
	}
	if _, ok := l2.fakes["a"].File("/etc/x"); ok {
		t.Fatal("check_mode: true wrote a file")
	}
}

func TestDiffNeverForSecretFiles(t *testing.T) {
	l := newLab(t, "a")
	l.fakes["a"].SetFile("/etc/default/minkms", "MINIO_KMS_HSM_KEY=old-"+sentinel+"\n", 0o600)
	l.eng.Diff = true
	tasks := []Task{
		{Name: "env", Module: "copy", Args: map[string]any{"content": "MINIO_KMS_HSM_KEY=" + sentinel + "\n", "dest": "/etc/default/minkms", "secret": true}},
		{Name: "tpl", Module: "template", Args: map[string]any{"src": "testdata/env.tmpl", "dest": "/etc/default/other", "secret": "yes"}},
		{Name: "plain", Module: "copy", Args: map[string]any{"content": "hello\n", "dest": "/etc/plain"}},
	}
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Vars: map[string]any{"hsm_key": sentinel}, Tasks: tasks}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"env", "tpl"} {
		if e := l.rec.results(n)["a"]; e.Status != StatusChanged || e.Diff != "" {
			t.Fatalf("%s: %+v", n, e)
		}
	}
	if d := l.rec.results("plain")["a"].Diff; !strings.Contains(d, "+hello") {
		t.Fatalf("plain diff %q", d)
	}
	if strings.Contains(l.rec.all(), sentinel) {
		t.Fatal("secret in events")
	}
	if f, ok := l.fakes["a"].File("/etc/default/other"); !ok || f.Mode != 0o600 || !strings.Contains(f.Content, sentinel) {
		t.Fatalf("template result %+v", f)
	}
}

func TestBecome(t *testing.T) {
	l := newLab(t, "a")
	var users []string
	l.eng.Become = func(c Conn, user string) Conn {
		users = append(users, user)
		return c
	}
	hosts := l.hosts("a")
	hosts[0].Vars["ansible_become"] = true
	tasks := []Task{
		sh("host default", "true"),
		{Name: "as minkms", Module: "shell", Args: map[string]any{"cmd": "true"}, BecomeUser: "minkms-user"},
		{Name: "off", Module: "shell", Args: map[string]any{"cmd": "true"}, Become: ptr(false)},
		{Name: "local", Module: "set_fact", Args: map[string]any{"x": 1}},
	}
	if _, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: hosts, Tasks: tasks}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(users, []string{"root", "minkms-user"}) {
		t.Fatalf("become users %v", users)
	}
	l2 := newLab(t, "a")
	_, err := l2.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l2.hosts("a"), Tasks: []Task{{Name: "x", Module: "ping", Become: ptr(true)}}}})
	if err == nil || !strings.Contains(err.Error(), "no Become") {
		t.Fatalf("err = %v", err)
	}
}

func TestVariablePrecedenceAndTemplates(t *testing.T) {
	l := newLab(t, "a")
	l.eng.ExtraVars = map[string]any{"x": "extra"}
	hosts := []Host{{Name: "a", Vars: map[string]any{"x": "host", "y": "host", "z": "host", "w": "host"}}}
	p := Play{Name: "p", Hosts: hosts, Vars: map[string]any{"x": "play", "y": "play", "z": "play"},
		Tasks: []Task{
			{Name: "fact", Module: "set_fact", Args: map[string]any{"z": "fact-{{ w }}", "x": "fact"}},
			{Name: "show", Module: "command", Args: map[string]any{"argv": []any{"echo", "{{ x }}", "{{ y }}", "{{ z }}", "{{ w }}", "{{ missing | default:\"dflt\" }}", "{{ inventory_hostname }}"}}, Register: "out"},
			{Name: "check", Module: "assert", Args: map[string]any{"that": `out.stdout == "extra play fact-host host dflt a\n"`}},
		}}
	if _, err := l.eng.Run(context.Background(), []Play{p}); err != nil {
		t.Fatalf("%v\n%s", err, l.rec.all())
	}
}

// TestHostvarsExtraVarsWin: in hostvars, as in a host's own variables,
// extra vars (-e) win over play vars, which win over the inventory's.
func TestHostvarsExtraVarsWin(t *testing.T) {
	l := newLab(t, "a", "b")
	l.eng.ExtraVars = map[string]any{"x": "extra"}
	hosts := []Host{
		{Name: "a", Vars: map[string]any{"x": "host-a"}},
		{Name: "b", Vars: map[string]any{"x": "host-b", "y": "host-b", "z": "host-b"}},
	}
	p := Play{Name: "p", Hosts: hosts, Vars: map[string]any{"x": "play", "y": "play"},
		Tasks: []Task{{Name: "check", Module: "assert", Args: map[string]any{"that": []any{
			`x == "extra"`, `hostvars["b"]["x"] == "extra"`, `hostvars["b"]["y"] == "play"`, `hostvars["b"]["z"] == "host-b"`}}}}}
	if _, err := l.eng.Run(context.Background(), []Play{p}); err != nil {
		t.Fatalf("%v\n%s", err, l.rec.all())
	}
}

func TestTemplatedVars(t *testing.T) {
	l := newLab(t, "a")
	hosts := []Host{{Name: "a", Vars: map[string]any{"kms_base": "/etc/minkms", "kms_config": "{{ kms_base }}/config.yaml"}}}
	p := Play{Name: "p", Hosts: hosts, Vars: map[string]any{"conf_copy": "{{ kms_config }}.bak", "self": "{{ self }}"},
		Tasks: []Task{{Name: "check", Module: "assert", Args: map[string]any{"that": []any{
			`kms_config == "/etc/minkms/config.yaml"`, `conf_copy == "/etc/minkms/config.yaml.bak"`}}}}}
	if _, err := l.eng.Run(context.Background(), []Play{p}); err != nil {
		t.Fatalf("%v\n%s", err, l.rec.all())
	}
}

func TestAssertAndSetFact(t *testing.T) {
	l := newLab(t, "a")
	tasks := []Task{
		{Name: "set", Module: "set_fact", Args: map[string]any{"n": 3, "name": "{{ inventory_hostname }}-x"}},
		{Name: "ok", Module: "assert", Args: map[string]any{"that": []any{"n == 3", `name == "a-x"`}, "success_msg": "fine"}},
		{Name: "bad", Module: "assert", Args: map[string]any{"that": []any{"n == 3", "n > 5"}, "fail_msg": "n too small"}},
	}
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks}})
	if err == nil || !strings.Contains(err.Error(), "n too small") {
		t.Fatalf("err = %v", err)
	}
	if got := l.rec.results("ok")["a"].Msg; got != "fine" {
		t.Fatalf("ok msg %q", got)
	}
	if l.connects["a"] != 0 {
		t.Fatalf("local modules connected to the host %d times", l.connects["a"])
	}
}

// TestAssertRefuse: an assert with refuse: true that finds an expression
// false is a refusal by a safety rule (IsRefused: the CLI exits 4), and
// the host's next task does not run; without it, a failed task.
func TestAssertRefuse(t *testing.T) {
	for _, refuse := range []bool{true, false} {
		l := newLab(t, "a")
		tasks := []Task{
			{Name: "guard", Module: "assert", Args: map[string]any{"that": []any{"1 == 2"}, "fail_msg": "node is up", "refuse": refuse}},
			{Name: "after", Module: "set_fact", Args: map[string]any{"x": 1}},
		}
		_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: tasks}})
		if err == nil || !strings.Contains(err.Error(), "node is up") || IsRefused(err) != refuse {
			t.Errorf("refuse %v: err = %v, refused %v", refuse, err, IsRefused(err))
		}
		if _, ran := l.rec.results("after")["a"]; ran {
			t.Errorf("refuse %v: the task after the failed assert ran", refuse)
		}
	}
}

func TestValidate(t *testing.T) {
	r := builtin()
	cases := []struct {
		task Task
		want []string // substrings of the error; none = valid
	}{
		{Task{Module: "copy", Args: map[string]any{"content": "x", "dest": "/a", "mode": "0600"}, Pos: "site.yml:3"}, nil},
		{Task{Module: "copy", Args: map[string]any{"content": "x", "dest": "{{ d }}", "mode": "{{ m }}"}}, nil},
		{Task{Module: "ansible.builtin.ping"}, nil},
		{Task{Module: "nosuch", Pos: "site.yml:4"}, []string{"site.yml:4", `unknown module "nosuch"`}},
		{Task{Module: "copy", Args: map[string]any{"dest": "/a", "colour": "red", "mode": true}, Pos: "site.yml:5"},
			[]string{"site.yml:5", `unknown argument "colour"`, `argument "mode"`, "exactly one of src, content"}},
		{Task{Module: "file", Args: map[string]any{"state": "absent"}, Pos: "p.yml:9"}, []string{"p.yml:9", `missing required argument "path"`}},
		{Task{Module: "wait_for", Args: map[string]any{"port": "abc"}}, []string{`argument "port"`}},
		{Task{Module: "ping", When: "a ==", Pos: "x.yml:1"}, []string{"x.yml:1", "when"}},
		{Task{Module: "set_fact", Args: map[string]any{"anything": 1}}, nil},
	}
	for _, c := range cases {
		err := r.Validate(c.task)
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%+v: %v", c.task, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: accepted", c.task)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q lacks %q", c.task, err, w)
			}
		}
	}
}

func TestRunRejectsInvalidPlays(t *testing.T) {
	l := newLab(t, "a")
	p := Play{Name: "p", Pos: "site.yml:1", Hosts: l.hosts("a"), Serial: []string{"zero"},
		Tasks: []Task{{Name: "x", Module: "ping", Notify: []string{"ghost"}, Pos: "site.yml:5"}, {Module: "nosuch", Pos: "site.yml:7"}}}
	_, err := l.eng.Run(context.Background(), []Play{p})
	for _, w := range []string{`serial "zero"`, `site.yml:5: task "x" notifies "ghost"`, "site.yml:7: unknown module"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("err %v lacks %q", err, w)
		}
	}
	if len(l.rec.events) != 0 || l.connects["a"] != 0 {
		t.Fatal("an invalid play ran")
	}
}

func TestModulePanicIsAFailure(t *testing.T) {
	l := newLab(t, "a")
	reg := builtin()
	reg.Register("boom", panicModule{})
	l.eng.Modules = reg
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{{Name: "b", Module: "boom"}}}})
	if err == nil || !strings.Contains(err.Error(), "module panicked") {
		t.Fatalf("err = %v", err)
	}
}

type panicModule struct{}

func (panicModule) Spec() Spec                                  { return Spec{Local: true} }
func (panicModule) Plan(context.Context, *Env) (Result, error)  { panic("plan") }
func (panicModule) Apply(context.Context, *Env) (Result, error) { panic("apply") }

// selfNamedDialError is a transport error that names the host itself and
// classifies itself, as remote.DialError does.
type selfNamedDialError struct{ host string }

func (e selfNamedDialError) Error() string     { return "connect to " + e.host + ": connection refused" }
func (e selfNamedDialError) Unreachable() bool { return true }

// A Connect error is reported once: prefixed with "connect to HOST" unless
// the transport's error classifies itself and so already says so.
func TestConnectErrorNamedOnce(t *testing.T) {
	l := newLab(t, "a")
	connect := l.eng.Connect
	l.eng.Connect = func(ctx context.Context, h Host) (Conn, error) {
		if h.Name == "c" {
			return nil, selfNamedDialError{h.Name}
		}
		return connect(ctx, h)
	}
	p := Play{Name: "p", Hosts: l.hosts("a", "b", "c"), Tasks: []Task{sh("t1", "true")}}
	l.eng.Run(context.Background(), []Play{p})
	got := l.rec.results("t1")
	if msg := got["b"].Msg; strings.Count(msg, "connect to b") != 1 {
		t.Errorf("plain Connect error: %q, want it prefixed once with \"connect to b\"", msg)
	}
	if msg := got["c"].Msg; strings.Count(msg, "connect to c") != 1 {
		t.Errorf("self-named Connect error: %q, want \"connect to c\" once", msg)
	}
}
