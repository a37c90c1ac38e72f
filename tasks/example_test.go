package tasks_test

import (
	"context"
	"fmt"

	"github.com/kmsctl/kmsctl/modules"
	"github.com/kmsctl/kmsctl/tasks"
)

// greetModule is a minimal custom module: Key Manager modules plug in the
// same way, through Registry.Register.
type greetModule struct{}

func (greetModule) Spec() tasks.Spec {
	return tasks.Spec{Local: true, Args: map[string]tasks.ArgSpec{"name": {Type: tasks.ArgString, Required: true}}}
}

// Plan reads only: here it is the same as Apply, since greeting changes nothing.
func (m greetModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.Apply(ctx, env)
}

func (greetModule) Apply(_ context.Context, env *tasks.Env) (tasks.Result, error) {
	name, err := env.Args.String("name")
	if err != nil {
		return tasks.Result{}, err
	}
	return tasks.Result{Msg: "hello " + name, Facts: map[string]any{"greeted": name}}, nil
}

func ExampleRegistry_Register() {
	reg := tasks.NewRegistry()
	modules.Register(reg)
	reg.Register("greet", greetModule{})
	eng := &tasks.Engine{
		Modules: reg,
		Sink: tasks.SinkFunc(func(e tasks.Event) {
			if e.Type == tasks.EventHostResult {
				fmt.Printf("%s %s: %s\n", e.Host, e.Status, e.Msg)
			}
		}),
	}
	play := tasks.Play{
		Name:  "demo",
		Hosts: []tasks.Host{{Name: "kms1", Vars: map[string]any{"who": "operator"}}},
		Tasks: []tasks.Task{
			{Name: "greet", Module: "greet", Args: map[string]any{"name": "{{ who }}"}},
			{Name: "check", Module: "assert", Args: map[string]any{"that": `greeted == "operator"`}},
		},
	}
	recap, err := eng.Run(context.Background(), []tasks.Play{play})
	fmt.Println(err, recap["kms1"].OK)
	// Output:
	// kms1 ok: hello operator
	// kms1 ok: all assertions passed
	// <nil> 2
}
