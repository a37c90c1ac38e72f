package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/redact"
	. "github.com/kmsctl/kmsctl/tasks"
)

// readKeyModule reads a key of its own (as the Key Manager modules read
// theirs from a file or a command) and registers it with Env.AddSecret.
type readKeyModule struct{ key string }

func (readKeyModule) Spec() Spec { return Spec{Local: true} }
func (m readKeyModule) Plan(ctx context.Context, env *Env) (Result, error) {
	return m.Apply(ctx, env)
}
func (m readKeyModule) Apply(_ context.Context, env *Env) (Result, error) {
	env.AddSecret(m.key)
	return Result{Msg: "read a key"}, nil
}

// leakModule misbehaves: it shows the key in its message and output, and
// in its error when fail is true.
type leakModule struct{ key string }

func (leakModule) Spec() Spec {
	return Spec{Local: true, Args: map[string]ArgSpec{"fail": {Type: ArgBool}}}
}
func (m leakModule) Plan(ctx context.Context, env *Env) (Result, error) { return m.Apply(ctx, env) }
func (m leakModule) Apply(_ context.Context, env *Env) (Result, error) {
	fail, err := env.Args.Bool("fail", false)
	if err != nil {
		return Result{}, err
	}
	if fail {
		return Result{}, fmt.Errorf("could not use key %s", m.key)
	}
	return Result{Msg: "the key is " + m.key, Stdout: m.key + "\n", Data: map[string]any{"key": m.key}}, nil
}

// A secret a module registers with Env.AddSecret reaches the run's
// redactor (Engine.Redactor): what a later task shows of it - a module's
// message and output, a debug of a registered result, an error - is masked.
func TestEnvAddSecretMasksWhatTasksShow(t *testing.T) {
	const key = "sentinel-key-0123456789"
	l := newLab(t, "a")
	reg := builtin()
	reg.Register("read_key", readKeyModule{key: key})
	reg.Register("leak", leakModule{key: key})
	l.eng.Modules = reg
	red := redact.New()
	l.eng.Redactor = red
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a"), Tasks: []Task{
		{Name: "read", Module: "read_key"},
		{Name: "leak", Module: "leak", Register: "out"},
		{Name: "show", Module: "debug", Args: map[string]any{"var": "out"}},
		{Name: "show msg", Module: "debug", Args: map[string]any{"msg": "{{ out.stdout }} {{ out.key }}"}},
		{Name: "fail", Module: "leak", Args: map[string]any{"fail": true}},
	}}})
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("want a RunError from the failing task, got %v", err)
	}
	if !red.Contains(key) {
		t.Fatal("the key is not registered with Engine.Redactor")
	}
	all := l.rec.all()
	if strings.Contains(all, key) || strings.Contains(err.Error(), key) {
		t.Fatalf("the key shows:\n%s\n%v", all, err)
	}
	for _, task := range []string{"leak", "show", "show msg", "fail"} {
		ev := l.rec.results(task)["a"]
		if !strings.Contains(ev.Msg+ev.Stdout, redact.Mask) {
			t.Errorf("task %s: no mask in %q %q", task, ev.Msg, ev.Stdout)
		}
	}
}

// An Env built by hand (a module's unit test) has no redactor: AddSecret
// does nothing and does not panic.
func TestEnvAddSecretByHand(t *testing.T) {
	var env Env
	env.AddSecret("sentinel-key-0123456789")
}

// verifyModule fails its check on every host whose name is in bad, and
// fails otherwise (not a verification) on the host named other.
type verifyModule struct{ bad, other string }

func (verifyModule) Spec() Spec { return Spec{Local: true} }
func (m verifyModule) Plan(ctx context.Context, env *Env) (Result, error) {
	return m.Apply(ctx, env)
}
func (m verifyModule) Apply(_ context.Context, env *Env) (Result, error) {
	switch {
	case strings.Contains(m.bad, env.Host.Name):
		return Result{Data: map[string]any{"matches": false}}, &VerificationError{Err: errors.New("holds another key")}
	case env.Host.Name == m.other:
		return Result{}, errors.New("cannot read the key")
	}
	return Result{Msg: "verified", Data: map[string]any{"matches": true}}, nil
}

// A run that failed only by failed verifications says so (the CLI exits
// 7), also when until retried them; one with another failure does not.
func TestRunErrorVerificationFailed(t *testing.T) {
	cases := []struct {
		name  string
		mod   verifyModule
		until string
		want  bool
	}{
		{"every failed host failed verification", verifyModule{bad: "a b"}, "", true},
		{"one of two", verifyModule{bad: "a"}, "", true},
		{"after retries", verifyModule{bad: "a"}, "result.matches", true},
		{"and another failure", verifyModule{bad: "a", other: "b"}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, "a", "b")
			reg := builtin()
			reg.Register("verify", c.mod)
			l.eng.Modules = reg
			task := Task{Name: "v", Module: "verify", Until: c.until, Retries: 1, Delay: time.Millisecond}
			_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: l.hosts("a", "b"), Tasks: []Task{task}}})
			var re *RunError
			if !errors.As(err, &re) {
				t.Fatalf("want a RunError, got %v", err)
			}
			if re.VerificationFailed() != c.want || re.TimedOut() {
				t.Fatalf("VerificationFailed() = %v, want %v; TimedOut() = %v: %v", re.VerificationFailed(), c.want, re.TimedOut(), err)
			}
		})
	}
}
