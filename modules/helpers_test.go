package modules

import (
	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/tasks"
)

// testEnv builds an Env for calling a module directly on the fake host c.
func testEnv(c *fake.Conn, args map[string]any) *tasks.Env {
	return &tasks.Env{Conn: c, Host: tasks.Host{Name: c.Host()}, Args: args, Vars: map[string]any{}}
}

// callList describes every call made on c, in order: a command line, or
// "upload PATH", "stat PATH" and so on.
func callList(c *fake.Conn) []string {
	var out []string
	for _, call := range c.Calls() {
		out = append(out, call.String())
	}
	return out
}

// lastStdin returns the standard input of the last command run on c.
func lastStdin(c *fake.Conn) string {
	calls := c.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Kind == fake.KindRun {
			return string(calls[i].Stdin)
		}
	}
	return ""
}

// sentinel is a fake secret that must never appear in output.
const sentinel = "S3NT1NEL-hsm:aes256:c2VjcmV0LXNlY3JldC1zZWNyZXQ="
