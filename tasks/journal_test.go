package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/redact"
	. "github.com/kmsctl/kmsctl/tasks"
)

// seqLog is one ordered log shared by a journal and a module.
type seqLog struct {
	mu    sync.Mutex
	lines []string
	steps []Step
}

func (s *seqLog) add(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, line)
}

func (s *seqLog) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// memJournal records the engine's calls in a seqLog; refuse, when set,
// refuses the intent of steps on that host.
type memJournal struct {
	log       *seqLog
	refuse    string
	resultErr error
}

func (j *memJournal) Intent(s Step) error {
	j.log.mu.Lock()
	j.log.steps = append(j.log.steps, s)
	j.log.mu.Unlock()
	if s.Host == j.refuse {
		j.log.add(fmt.Sprintf("refuse %d %s", s.Seq, s.Host))
		return errors.New("journal full")
	}
	item := ""
	if s.Item > 0 {
		item = fmt.Sprintf(" item %d", s.Item)
	}
	j.log.add(fmt.Sprintf("intent %d %s %s %s%s", s.Seq, s.Host, s.Module, s.Task, item))
	return nil
}

func (j *memJournal) Result(s Step, st Status) error {
	j.log.add(fmt.Sprintf("result %d %s %s", s.Seq, s.Host, st))
	return j.resultErr
}

// touchModule logs its Apply and Plan calls and reports a change; with
// block set, Apply waits for ctx to end and fails.
type touchModule struct {
	log   *seqLog
	block bool
}

func (touchModule) Spec() Spec { return Spec{Args: map[string]ArgSpec{"secret": {Type: ArgString}}} }

func (m touchModule) Plan(ctx context.Context, env *Env) (Result, error) {
	m.log.add("plan " + env.Host.Name)
	return Result{Changed: true}, nil
}

func (m touchModule) Apply(ctx context.Context, env *Env) (Result, error) {
	m.log.add("apply " + env.Host.Name)
	if m.block {
		<-ctx.Done()
		return Result{}, ctx.Err()
	}
	return Result{Changed: true}, nil
}

func journalLab(t *testing.T, j *memJournal, block bool) *lab {
	l := newLab(t, "a")
	l.eng.Modules.Register("touch", touchModule{log: j.log, block: block})
	l.eng.Journal = j
	return l
}

func TestJournalIntentBeforeModuleResultAfter(t *testing.T) {
	j := &memJournal{log: &seqLog{}}
	l := journalLab(t, j, false)
	play := Play{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{
		{Name: "touch it", Module: "touch"},
		{Name: "look", Module: "ping"},                             // read-only: not journaled
		{Name: "plan only", Module: "touch", CheckMode: ptr(true)}, // check mode: not journaled
		{Name: "each", Module: "touch", Loop: []any{"x", "y"}},
	}}
	if _, err := l.eng.Run(context.Background(), []Play{play}); err != nil {
		t.Fatalf("Run: %v\n%s", err, l.rec.all())
	}
	want := []string{
		"intent 1 a touch touch it", "apply a", "result 1 a changed",
		"plan a",
		"intent 2 a touch each item 1", "apply a", "result 2 a changed",
		"intent 3 a touch each item 2", "apply a", "result 3 a changed",
	}
	if got := j.log.get(); !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestJournalNotCalledInCheckMode(t *testing.T) {
	j := &memJournal{log: &seqLog{}}
	l := journalLab(t, j, false)
	l.eng.Check = true
	play := Play{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{{Name: "touch it", Module: "touch"}, sh("run", "true")}}
	if _, err := l.eng.Run(context.Background(), []Play{play}); err != nil {
		t.Fatalf("Run: %v\n%s", err, l.rec.all())
	}
	if got := j.log.get(); !slices.Equal(got, []string{"plan a"}) {
		t.Errorf("calls = %q, want only the module's plan", got)
	}
}

func TestJournalRefusalStopsTheModule(t *testing.T) {
	j := &memJournal{log: &seqLog{}, refuse: "a"}
	l := journalLab(t, j, false)
	play := Play{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{{Name: "touch it", Module: "touch"}, {Name: "again", Module: "touch"}}}
	recap, err := l.eng.Run(context.Background(), []Play{play})
	if got := j.log.get(); !slices.Equal(got, []string{"refuse 1 a"}) {
		t.Errorf("calls = %q, want the refusal and no module call, no result", got)
	}
	var re *StepRefusedError
	if !errors.As(err, &re) || !re.Refused() || re.Step.Host != "a" || re.Step.Task != "touch it" {
		t.Fatalf("err = %v, want a *StepRefusedError for a's touch it", err)
	}
	if !strings.Contains(err.Error(), "journal full") {
		t.Errorf("err = %v, want the journal's reason", err)
	}
	if recap["a"].Failed != 1 || recap["a"].Changed != 0 {
		t.Errorf("recap = %+v, want 1 failed, nothing changed", *recap["a"])
	}
}

func TestJournalResultErrorFailsTheTask(t *testing.T) {
	j := &memJournal{log: &seqLog{}, resultErr: errors.New("disk full")}
	l := journalLab(t, j, false)
	play := Play{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{{Name: "touch it", Module: "touch"}, {Name: "again", Module: "touch"}}}
	recap, err := l.eng.Run(context.Background(), []Play{play})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the journal's error", err)
	}
	if recap["a"].Failed != 1 {
		t.Errorf("recap = %+v, want the task failed", *recap["a"])
	}
	if got := j.log.get(); !slices.Equal(got, []string{"intent 1 a touch touch it", "apply a", "result 1 a changed"}) {
		t.Errorf("calls = %q, want one step and nothing after it", got)
	}
}

func TestJournalRecordsInterrupted(t *testing.T) {
	j := &memJournal{log: &seqLog{}}
	l := journalLab(t, j, true)
	ctx, cancel := context.WithCancel(context.Background())
	l.eng.Sink = SinkFunc(func(ev Event) {
		if ev.Type == EventTaskStart {
			go func() {
				for !slices.Contains(j.log.get(), "apply a") {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
		}
	})
	_, _ = l.eng.Run(ctx, []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{{Name: "touch it", Module: "touch"}}}})
	want := []string{"intent 1 a touch touch it", "apply a", "result 1 a interrupted"}
	if got := j.log.get(); !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

func TestJournalStepHoldsNoSecret(t *testing.T) {
	j := &memJournal{log: &seqLog{}}
	l := journalLab(t, j, false)
	red := redact.New()
	red.Add(sentinel)
	l.eng.Redactor = red
	play := Play{Name: "p {{ key }}", Hosts: l.hosts("a"), Vars: map[string]any{"key": sentinel}, Tasks: []Task{
		{Name: "install {{ key }}", Module: "touch", Args: map[string]any{"secret": "{{ key }}"}},
	}}
	if _, err := l.eng.Run(context.Background(), []Play{play}); err != nil {
		t.Fatalf("Run: %v\n%s", err, l.rec.all())
	}
	if len(j.log.steps) != 1 {
		t.Fatalf("steps = %+v, want 1", j.log.steps)
	}
	s := fmt.Sprintf("%+v %q", j.log.steps, j.log.get())
	if strings.Contains(s, sentinel) || strings.Contains(s, "c2VjcmV0") || !strings.Contains(j.log.steps[0].Task, "[REDACTED]") {
		t.Errorf("journal got %s, want the task's name masked", s)
	}
}
