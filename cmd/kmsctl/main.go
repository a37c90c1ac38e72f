// Command kmsctl recovers and operates MinIO AIStor Key Manager clusters over
// SSH, agentless, in the style of Ansible: it runs playbooks from a YAML
// inventory, pings hosts, and prints a per-host recap.
//
// Commands:
//
//	kmsctl play PLAYBOOK          run a playbook (a file or a built-in name)
//	kmsctl playbooks ls|show NAME list or print the built-in playbooks
//	kmsctl inventory list|graph   show hosts with resolved variables (secrets masked)
//	kmsctl ping [HOST...]         connect and run `true` on each host
//	kmsctl version                print version, commit and Go version
//
// Flags may come before or after a command's arguments, as with
// ansible-playbook; "--" ends them. main alone maps errors to the documented
// exit codes (see the exit package): 0 success, 1 usage or internal error,
// 2 a host failed, 3 a host unreachable, 4 refused by a safety check, 5 lock
// held, 6 timed out, 7 verification failed, 130 interrupted.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/adrg/xdg"
	"golang.org/x/term"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "none"
)

// env is everything a command takes from the process, so that tests can run
// commands in-process with their own streams, environment and state directory.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// stateDir holds kmsctl's own known_hosts file and the run logs.
	stateDir string
	// terminal is true when stdout is an interactive terminal.
	terminal bool
	// width is the terminal's width in columns (0 = unknown).
	width int
	// end is the run_end of this invocation (set by run).
	end *runEnd
}

func main() {
	// The cause names the interruption in every error it ends: "run
	// command on h: interrupted (Ctrl-C or SIGTERM): context canceled".
	interrupted := fmt.Errorf("interrupted (Ctrl-C or SIGTERM): %w", context.Canceled)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "kmsctl: interrupted: no new work is started, owed handlers run; press Ctrl-C again to exit at once")
		cancel(interrupted)
		<-sigs
		fmt.Fprintln(os.Stderr, "kmsctl: interrupted again: exiting at once")
		os.Exit(exit.Interrupted)
	}()
	e := env{
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		getenv:   os.Getenv,
		stateDir: filepath.Join(xdg.StateHome, "kmsctl"),
		terminal: term.IsTerminal(int(os.Stdout.Fd())),
	}
	if e.terminal {
		e.width, _, _ = term.GetSize(int(os.Stdout.Fd()))
	}
	code := run(ctx, e, os.Args)
	signal.Stop(sigs)
	os.Exit(code)
}

// run runs kmsctl with args (args[0] is the program name) and returns the
// exit code. Errors are printed on e.stderr, except those already shown.
//
// With --output json, stdout ends with a run_end event (see runEnd), also
// for usage and validation errors.
func run(ctx context.Context, e env, args []string) int {
	e.end = newRunEnd(e.stdout, false)
	app := newApp(e)
	e.end.json = globalFlagValue(app, args, "output") == "json"
	err := app.RunContext(ctx, reorderArgs(app, args))
	code := exit.Code(err)
	msg := ""
	if err != nil && !exit.IsSilent(err) {
		msg = newRedactor(e).String(err.Error())
		fmt.Fprintf(e.stderr, "kmsctl: %s\n", msg)
	}
	e.end.write(code, msg, nil)
	return code
}
