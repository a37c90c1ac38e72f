package modules

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/shlex"

	"github.com/kmsctl/kmsctl/tasks"
)

// commandModule runs a program on the host without shell features: cmd is
// split into words like a shell would (quotes respected) and every word is
// quoted again, so pipes, redirections and variables are literal; argv
// gives the words as a list. Secrets go in stdin, never in cmd or argv.
// creates/removes make it idempotent (and knowable in check mode); chdir
// changes directory first. Without creates/removes it always reports
// changed, and check mode skips it.
type commandModule struct{}

var cmdArgs = map[string]tasks.ArgSpec{
	"creates": {Type: tasks.ArgString, CmdLine: true},
	"removes": {Type: tasks.ArgString, CmdLine: true},
	"chdir":   {Type: tasks.ArgString, CmdLine: true},
	"stdin":   {Type: tasks.ArgString},
}

func (commandModule) Spec() tasks.Spec {
	a := map[string]tasks.ArgSpec{"cmd": {Type: tasks.ArgString, CmdLine: true}, "argv": {Type: tasks.ArgList, CmdLine: true}}
	for k, v := range cmdArgs {
		a[k] = v
	}
	return tasks.Spec{Args: a, ExactlyOneOf: [][]string{{"cmd", "argv"}}}
}

// CheckArgs splits a known cmd into words before any host is touched (an
// unclosed quote is found then).
func (commandModule) CheckArgs(args tasks.Args) error {
	if !args.Has("cmd") || !args.Literal("cmd") {
		return nil
	}
	cmd, err := args.String("cmd")
	if err != nil {
		return err
	}
	if _, err := shlex.Split(cmd); err != nil {
		return fmt.Errorf("split command %q: %w", cmd, err)
	}
	return nil
}

func (commandModule) line(env *tasks.Env) (string, error) {
	argv, err := env.Args.List("argv")
	if err != nil {
		return "", err
	}
	if argv == nil {
		cmd, err := env.Args.String("cmd")
		if err != nil {
			return "", err
		}
		if argv, err = shlex.Split(cmd); err != nil {
			return "", fmt.Errorf("split command %q: %w", cmd, err)
		}
	}
	if len(argv) == 0 {
		return "", fmt.Errorf("empty command")
	}
	return QuoteArgs(argv...), nil
}

func (m commandModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	line, err := m.line(env)
	if err != nil {
		return tasks.Result{}, err
	}
	return planCommand(ctx, env, line)
}

func (m commandModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	line, err := m.line(env)
	if err != nil {
		return tasks.Result{}, err
	}
	return applyCommand(ctx, env, line)
}

// shellModule runs cmd through the host's shell (/bin/sh -c semantics of
// Conn.Run): pipes, redirections and variables work. Same options as command.
type shellModule struct{}

func (shellModule) Spec() tasks.Spec {
	a := map[string]tasks.ArgSpec{"cmd": {Type: tasks.ArgString, Required: true, CmdLine: true}}
	for k, v := range cmdArgs {
		a[k] = v
	}
	return tasks.Spec{Args: a}
}

func (shellModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	cmd, err := env.Args.String("cmd")
	if err != nil {
		return tasks.Result{}, err
	}
	return planCommand(ctx, env, cmd)
}

func (shellModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	cmd, err := env.Args.String("cmd")
	if err != nil {
		return tasks.Result{}, err
	}
	return applyCommand(ctx, env, cmd)
}

// guard applies creates/removes: it returns a reason to not run, or "".
func guard(ctx context.Context, env *tasks.Env) (string, error) {
	creates, err := env.Args.String("creates")
	if err != nil {
		return "", err
	}
	removes, err := env.Args.String("removes")
	if err != nil {
		return "", err
	}
	if creates != "" {
		_, ok, err := exists(ctx, env.Conn, creates)
		if err != nil {
			return "", err
		}
		if ok {
			return fmt.Sprintf("not run: %s exists", creates), nil
		}
	}
	if removes != "" {
		_, ok, err := exists(ctx, env.Conn, removes)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("not run: %s does not exist", removes), nil
		}
	}
	return "", nil
}

func planCommand(ctx context.Context, env *tasks.Env, line string) (tasks.Result, error) {
	if !env.Args.Has("creates") && !env.Args.Has("removes") {
		return tasks.Result{Skipped: true, Msg: "skipped in check mode: a command's effect is unknown without creates or removes"}, nil
	}
	why, err := guard(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	if why != "" {
		return tasks.Result{Msg: why}, nil
	}
	return tasks.Result{Changed: true, Msg: "would run: " + line}, nil
}

func applyCommand(ctx context.Context, env *tasks.Env, line string) (tasks.Result, error) {
	why, err := guard(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	if why != "" {
		return tasks.Result{Msg: why}, nil
	}
	chdir, err := env.Args.String("chdir")
	if err != nil {
		return tasks.Result{}, err
	}
	if chdir != "" {
		line = "cd " + Quote(chdir) + " && " + line
	}
	var stdin io.Reader
	if env.Args.Has("stdin") {
		s, err := env.Args.String("stdin")
		if err != nil {
			return tasks.Result{}, err
		}
		stdin = strings.NewReader(s)
	}
	res, err := runCmd(ctx, env.Conn, line, stdin)
	if err != nil {
		return tasks.Result{}, err
	}
	r := tasks.Result{Changed: true, RC: res.RC, Stdout: res.Stdout, Stderr: res.Stderr,
		Data: map[string]any{"cmd": line}}
	if res.RC != 0 {
		r.Failed = true
		r.Msg = fmt.Sprintf("non-zero return code %d", res.RC)
		if s := strings.TrimSpace(res.Stderr); s != "" {
			r.Msg += ": " + lastLine(s)
		}
	}
	return r, nil
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
