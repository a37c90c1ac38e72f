package kmsmodules

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

// versionRe is the Key Manager's version format (2024-03-26T17-52-38Z), as
// its API reports it (/version) and as `minkms --version` prints it.
var versionRe = regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z\b`)

// BinaryVersion returns the version a server binary's `--version` output
// names, in the API's format, or "" when it names none.
func BinaryVersion(output string) string {
	return versionRe.FindString(output)
}

// binaryVersionModule is kms_binary_version: it runs `BINARY --version` on
// the task host (path, default kms_binary) and registers version (the
// Key Manager's version format, as its API reports it), path and output
// (the first line). Read-only. A binary that does not run, or prints no
// version in that format, fails the task naming it.
type binaryVersionModule struct{}

func (binaryVersionModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{"path": {Type: tasks.ArgString}}}
}

func (b binaryVersionModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return b.Apply(ctx, env)
}

func (binaryVersionModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	if env.Conn == nil {
		return tasks.Result{}, fmt.Errorf("host %s: kms_binary_version needs the host's connection", env.Host.Name)
	}
	path := ""
	if ih, ok := env.Host.Target.(inventory.Host); ok {
		path = ih.KMS.Binary
	}
	if env.Args.Has("path") {
		p, err := env.Args.String("path")
		if err != nil {
			return tasks.Result{}, err
		}
		path = p
	}
	if path == "" {
		return tasks.Result{}, fmt.Errorf("host %s: kms_binary_version needs path (or the host's kms_binary)", env.Host.Name)
	}
	data := map[string]any{"path": path}
	out, err := output(ctx, env.Conn, shellQuote(path)+" --version")
	if err != nil {
		return tasks.Result{Failed: true, Msg: fmt.Sprintf("%s on %s does not run: %v", path, env.Host.Name, err), Data: data}, nil
	}
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	data["output"] = first
	v := BinaryVersion(out)
	if v == "" {
		return tasks.Result{Failed: true, Msg: fmt.Sprintf("%s --version on %s prints no version in the Key Manager's format (%q)", path, env.Host.Name, first), Data: data}, nil
	}
	data["version"] = v
	return tasks.Result{Msg: fmt.Sprintf("%s is version %s", path, v), Data: data}, nil
}
