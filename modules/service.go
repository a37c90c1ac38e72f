package modules

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/kmsctl/kmsctl/tasks"
)

// serviceModule manages a systemd unit with systemctl: state started,
// stopped, restarted or reloaded; enabled true/false; daemon_reload first.
// It reads the real state (systemctl show ActiveState, UnitFileState) and
// reports it after acting (Data: name, state, enabled, active_state,
// load_state); a unit that is not active after a start fails the task. A
// unit that is not installed (LoadState not-found) is ok for state stopped
// without enabled true (nothing to stop); anything else asked of it fails.
type serviceModule struct{}

func (serviceModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{
		"name":          {Type: tasks.ArgString, Required: true, CmdLine: true},
		"state":         {Type: tasks.ArgString},
		"enabled":       {Type: tasks.ArgBool},
		"daemon_reload": {Type: tasks.ArgBool},
	}}
}

// serviceStates are the values of state ("" = leave the state alone).
var serviceStates = []string{"", "started", "stopped", "restarted", "reloaded"}

// CheckArgs checks a known state before any host is touched.
func (serviceModule) CheckArgs(args tasks.Args) error {
	return checkEnum(args, "state", serviceStates...)
}

// unitState is what systemctl show says about a unit.
type unitState struct {
	Load, Active, Sub, UnitFile string
}

func (u unitState) running() bool {
	return u.Active == "active" || u.Active == "reloading" || u.Active == "activating"
}

func (u unitState) enabled() bool {
	return u.UnitFile == "enabled" || u.UnitFile == "enabled-runtime"
}

func readUnit(ctx context.Context, env *tasks.Env, name string) (unitState, error) {
	res, err := mustRun(ctx, env.Conn, "systemctl show --property=LoadState,ActiveState,SubState,UnitFileState -- "+Quote(name))
	if err != nil {
		return unitState{}, fmt.Errorf("read state of service %s: %w", name, err)
	}
	var u unitState
	for _, l := range strings.Split(res.Stdout, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		switch k {
		case "LoadState":
			u.Load = v
		case "ActiveState":
			u.Active = v
		case "SubState":
			u.Sub = v
		case "UnitFileState":
			u.UnitFile = v
		}
	}
	if u.Active == "" {
		return u, fmt.Errorf("read state of service %s: no ActiveState in %q", name, res.Stdout)
	}
	return u, nil
}

type servicePlan struct {
	name    string
	before  unitState
	actions []string // systemctl verbs in order
}

func (serviceModule) plan(ctx context.Context, env *tasks.Env) (servicePlan, error) {
	name, err := env.Args.String("name")
	if err != nil {
		return servicePlan{}, err
	}
	if name == "" {
		return servicePlan{}, fmt.Errorf("service name is empty")
	}
	state, err := env.Args.String("state")
	if err != nil {
		return servicePlan{}, err
	}
	u, err := readUnit(ctx, env, name)
	if err != nil {
		return servicePlan{}, err
	}
	sp := servicePlan{name: name, before: u}
	if u.Load == "not-found" {
		// A unit that is not there is stopped and not enabled: asking for
		// that (or only for its state) is no error, so that fencing a
		// replaced machine, which has no unit yet, works; anything else is.
		enable := false
		if env.Args.Has("enabled") {
			if enable, err = env.Args.Bool("enabled", false); err != nil {
				return sp, err
			}
		}
		if (state != "" && state != "stopped") || enable {
			return servicePlan{}, fmt.Errorf("service %s: unit not found on %s", name, env.Host.Name)
		}
		return sp, nil
	}
	if env.Args.Has("enabled") {
		want, err := env.Args.Bool("enabled", false)
		if err != nil {
			return sp, err
		}
		switch {
		case u.UnitFile == "masked" && want:
			return sp, fmt.Errorf("service %s is masked; unmask it first", name)
		case u.UnitFile == "static" || u.UnitFile == "indirect" || u.UnitFile == "generated" || u.UnitFile == "transient":
			// Cannot be enabled or disabled: nothing to do.
		case want && !u.enabled():
			sp.actions = append(sp.actions, "enable")
		case !want && u.enabled():
			sp.actions = append(sp.actions, "disable")
		}
	}
	switch state {
	case "":
	case "started":
		if !u.running() {
			sp.actions = append(sp.actions, "start")
		}
	case "stopped":
		if u.running() {
			sp.actions = append(sp.actions, "stop")
		}
	case "restarted":
		sp.actions = append(sp.actions, "restart")
	case "reloaded":
		if u.running() {
			sp.actions = append(sp.actions, "reload")
		} else {
			sp.actions = append(sp.actions, "start")
		}
	default:
		return sp, fmt.Errorf("state %q: want started, stopped, restarted or reloaded", state)
	}
	return sp, nil
}

func (sp servicePlan) result(u unitState, prefix string) tasks.Result {
	r := tasks.Result{Changed: len(sp.actions) > 0, Data: map[string]any{
		"name": sp.name, "state": stateWord(u), "enabled": u.enabled(), "active_state": u.Active,
		"sub_state": u.Sub, "unit_file_state": u.UnitFile, "load_state": u.Load,
	}}
	switch {
	case r.Changed:
		r.Msg = prefix + strings.Join(sp.actions, ", ") + " " + sp.name
	case u.Load == "not-found":
		r.Msg = sp.name + " is not installed"
	default:
		r.Msg = sp.name + " is " + stateWord(u)
	}
	return r
}

func stateWord(u unitState) string {
	if u.running() {
		return "started"
	}
	return "stopped"
}

func (m serviceModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	sp, err := m.plan(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	return sp.result(sp.before, "would "), nil
}

func (m serviceModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	reload, err := env.Args.Bool("daemon_reload", false)
	if err != nil {
		return tasks.Result{}, err
	}
	if reload {
		if _, err := mustRun(ctx, env.Conn, "systemctl daemon-reload"); err != nil {
			return tasks.Result{}, err
		}
	}
	sp, err := m.plan(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	if len(sp.actions) == 0 {
		return sp.result(sp.before, ""), nil
	}
	for _, a := range sp.actions {
		if _, err := mustRun(ctx, env.Conn, "systemctl "+a+" -- "+Quote(sp.name)); err != nil {
			return tasks.Result{Changed: true}, fmt.Errorf("%s service %s: %w", a, sp.name, err)
		}
	}
	after, err := readUnit(ctx, env, sp.name)
	if err != nil {
		return tasks.Result{Changed: true}, err
	}
	r := sp.result(after, "")
	if slices.ContainsFunc(sp.actions, func(a string) bool { return a == "start" || a == "restart" || a == "reload" }) && !after.running() {
		r.Failed = true
		r.Msg = fmt.Sprintf("service %s is %s (%s) after %s", sp.name, after.Active, after.Sub, strings.Join(sp.actions, ", "))
	}
	return r, nil
}
