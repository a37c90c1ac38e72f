// Package modules holds kmsctl's general modules, the kinds of task a
// playbook names: command, shell, service, file, copy, template, fetch,
// wait_for, assert, set_fact, stat, debug and ping. Register adds them to a
// tasks.Registry; package tasks runs them.
//
// Every module can say read-only what it would change (Plan, used by
// --check) and acts through the host's tasks.Conn only: commands it sends
// quote every word (Quote), files it writes land atomically with their
// sha256 checked.
package modules

import "github.com/kmsctl/kmsctl/tasks"

// Register adds the general modules to r: command, shell, service, file,
// copy, template, fetch, wait_for, assert, set_fact, ping, stat, debug.
func Register(r *tasks.Registry) {
	r.Register("command", commandModule{})
	r.Register("shell", shellModule{})
	r.Register("service", serviceModule{})
	r.Register("file", fileModule{})
	r.Register("copy", copyModule{})
	r.Register("template", templateModule{})
	r.Register("fetch", fetchModule{})
	r.Register("wait_for", waitForModule{})
	r.Register("assert", assertModule{})
	r.Register("set_fact", setFactModule{})
	r.Register("ping", pingModule{})
	r.Register("stat", statModule{})
	r.Register("debug", debugModule{})
}
