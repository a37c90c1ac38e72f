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
//	kmsctl status [--cluster G]   each node of a Key Manager cluster and a verdict (--all: every cluster)
//	kmsctl backup [--dir D]       a snapshot and its manifest, --keep N retention
//	kmsctl drill --scratch HOST   restore the newest backup on a scratch host, verify, tear down
//	kmsctl runs ls|show RUN-ID    list past runs, show one run's journal
//	kmsctl version                print version, commit and Go version
//
// Flags may come before or after a command's arguments, as with
// ansible-playbook; "--" ends them. main alone maps errors to the documented
// exit codes (see the exit package): 0 success, 1 usage or internal error,
// 2 a host failed, 3 a host unreachable, 4 refused by a safety check, 5 lock
// held, 6 timed out, 7 verification failed (status: degraded), 130 interrupted.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

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
	// stdin answers a confirmation when it is a terminal too (nil: no
	// question can be asked).
	stdin io.Reader
	// width is the terminal's width in columns (0 = unknown).
	width int
	// signals are SIGINT and SIGTERM (nil: none watched); exit exits the
	// process at a second one.
	signals <-chan os.Signal
	exit    func(int)
	// now is the clock (nil: time.Now); backup names its files after it.
	now func() time.Time
	// end is the run_end and intr the interrupter of this invocation (set
	// by run).
	end  *runEnd
	intr *interrupter
}

// clock returns the time now.
func (e env) clock() time.Time {
	if e.now != nil {
		return e.now()
	}
	return time.Now()
}

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	e := env{
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		getenv:   os.Getenv,
		stateDir: filepath.Join(xdg.StateHome, "kmsctl"),
		terminal: term.IsTerminal(int(os.Stdout.Fd())),
		signals:  sigs,
		exit:     os.Exit,
	}
	if e.terminal {
		e.width, _, _ = term.GetSize(int(os.Stdout.Fd()))
	}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		e.stdin = os.Stdin
	}
	stopProfile := startCPUProfile(os.Getenv)
	code := run(context.Background(), e, os.Args)
	signal.Stop(sigs)
	stopProfile()
	os.Exit(code)
}

// run runs kmsctl with args (args[0] is the program name) and returns the
// exit code. Errors are printed on e.stderr, except those already shown.
// With --output json, stdout ends with a run_end event (see runEnd), also
// for usage and validation errors. Signals on e.signals stop the run (see
// interrupter).
func run(ctx context.Context, e env, args []string) int {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	e.intr = &interrupter{cancel: cancel, exit: e.exit, stderr: e.stderr}
	if e.signals != nil {
		stop := make(chan struct{})
		defer close(stop)
		go e.intr.watch(e.signals, stop)
	}
	e.end = newRunEnd(e.stdout, globalFlagValue(globalFlags(nil), args, "output") == "json")
	app := newApp(e)
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
