package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/modules"
	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/tasks"
)

// runner is the one way a command acts on hosts: plays run by the engine
// within a session. newRunner builds the session (redactor, run log,
// logger, display and event sink), the dialer and the engine from the
// global options, in this one place; ping and play only make their plays.
type runner struct {
	s   *session
	inv *inventory.Inventory // nil for ping without an inventory
	// engine runs the plays; a command may set what is its own (play's
	// --tags) before run.
	engine *tasks.Engine
	// dialer reaches the hosts, for the cluster leases.
	dialer *dialer
	// locks are clusters whose lock the run takes whatever its plays'
	// modules: a resumable run holds its cluster's lock to its end, even
	// when the phases left use no module that asks for it.
	locks []string
}

// newRegistry returns the modules a run may use: the general modules and
// the Key Manager modules, which read the admin API key and the HSM key
// from e's environment, --api-key-file, or the files and commands the
// inventory names.
func newRegistry(e env, o options) *tasks.Registry {
	reg := tasks.NewRegistry()
	modules.Register(reg)
	kmsmodules.Register(reg, kmsmodules.Options{Getenv: e.getenv, APIKeyFile: o.APIKeyFile})
	reg.Register("kms_lease", leaseModule{})
	return reg
}

// newRunner starts a session for command and builds the dialer and the
// engine from o. inv, nil for ping without an inventory, gives the secrets
// to mask and the delegate_to hosts outside the plays. quiet shows no
// event (they still go to the run log): for a command that prints its own
// report (status).
func newRunner(e env, o options, command string, inv *inventory.Inventory, reg *tasks.Registry, quiet bool) (*runner, error) {
	s, err := newSession(e, o, command, quiet)
	if err != nil {
		return nil, err
	}
	if inv != nil {
		// Masked even when a task prints them.
		for _, v := range inv.Secrets() {
			s.red.Add(v)
		}
	}
	kh, err := stateKnownHosts(e)
	if err != nil {
		return nil, s.finish(err)
	}
	d := &dialer{o: o, inv: inv, stateKnownHosts: kh, logger: s.logger, red: s.red}
	eng := &tasks.Engine{
		Forks:     o.Forks,
		Check:     o.Check,
		Diff:      o.Diff,
		Sink:      s.sink,
		Redactor:  s.red,
		Secret:    inventory.IsSecret,
		Modules:   reg,
		ExtraVars: o.ExtraVars,
		Become:    become,
		Connect:   d.connect,
		Journal:   s.journal,
	}
	return &runner{s: s, inv: inv, engine: eng, dialer: d}, nil
}

// checkHostKeys parses every play host's pinned host keys before any host
// is touched: the inventory checks only their shape (it holds no SSH code),
// and a key the transport cannot parse would otherwise surface as one
// unreachable host in the middle of a run.
func checkHostKeys(inv *inventory.Inventory, plays []tasks.Play) error {
	var errs []error
	seen := map[string]bool{}
	for _, p := range plays {
		for _, h := range p.Hosts {
			ih, ok := h.Target.(inventory.Host)
			if !ok || seen[h.Name] || len(ih.SSH.SSHHostKeys) == 0 {
				continue
			}
			seen[h.Name] = true
			if err := remote.CheckHostKeys(ih.SSH.SSHHostKeys); err != nil {
				where := ""
				if inv != nil {
					if pos, ok := inv.Origin(h.Name, inventory.VarSSHHostKeys); ok {
						where = pos.String() + ": "
					}
				}
				errs = append(errs, fmt.Errorf("%shost %s: kms_ssh_host_keys: %w (copy the line from the host's /etc/ssh/ssh_host_*_key.pub)", where, h.Name, err))
			}
		}
	}
	if len(errs) > 0 {
		return exit.With(exit.Usage, errors.Join(errs...))
	}
	return nil
}

// checkExpectHostKeys refuses (usage) an --expect-host-key for a host that
// is neither in the inventory nor a host of the plays (ping's arguments):
// a misspelt name must not leave the real host's key change unplanned.
func checkExpectHostKeys(o options, inv *inventory.Inventory, plays []tasks.Play) error {
	var unknown []string
	for host := range o.ExpectHostKeys {
		if inv != nil && inv.HasHost(host) {
			continue
		}
		if slices.ContainsFunc(plays, func(p tasks.Play) bool {
			return slices.ContainsFunc(p.Hosts, func(h tasks.Host) bool { return h.Name == host })
		}) {
			continue
		}
		unknown = append(unknown, host)
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return exit.Usagef("--expect-host-key names %s, not a host of the inventory: give the host's inventory name", strings.Join(unknown, ", "))
	}
	return nil
}

// run runs plays (their hosts resolved, see tasks.Host) within --timeout
// and ends the session: it prints the host errors and returns the outcome
// mapped to the documented exit codes.
func (r *runner) run(ctx context.Context, plays []tasks.Play) error {
	return r.runWith(ctx, plays, exitError)
}

// runWith is run with the engine's outcome turned into the command's error
// by outcome, before the session ends: a command that reports on what the
// plays gathered (status) prints there.
func (r *runner) runWith(ctx context.Context, plays []tasks.Play, outcome func(context.Context, tasks.Recap, error) error) error {
	r.s.hosts = countHosts(plays)
	if err := checkHostKeys(r.inv, plays); err != nil {
		return r.s.finish(err)
	}
	if err := checkExpectHostKeys(r.s.o, r.inv, plays); err != nil {
		return r.s.finish(err)
	}
	ctx, cancel := withTimeout(ctx, r.s.o)
	defer cancel()
	// A play that changes a cluster's membership holds the lock of its
	// hosts' clusters from before any host is touched to the run's end.
	clusters := lockClusters(r.engine.Modules, plays, r.engine.Check)
	if !r.engine.Check {
		clusters = append(clusters, r.locks...)
	}
	if len(clusters) > 0 {
		locks, err := r.s.acquireLocks(ctx, clusters)
		if err != nil {
			return r.s.finish(err)
		}
		// Then the leases on the nodes, seen from other bastions.
		leases, err := r.acquireLeases(ctx, plays, clusters)
		if err != nil {
			return r.s.finish(errors.Join(err, locks.Release()))
		}
		if r.engine.Journal != nil {
			r.engine.Journal = lockJournal{Journal: r.engine.Journal, locks: locks, leases: leases}
		}
		recap, err := r.engine.Run(ctx, plays)
		err = outcome(ctx, recap, err)
		r.releaseLeases(leases)
		if rerr := locks.Release(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return r.s.finish(err)
	}
	recap, err := r.engine.Run(ctx, plays)
	return r.s.finish(outcome(ctx, recap, err))
}

// gatherWithin runs play, a command's read-only preflight, within r's
// session before the command's own plays and without ending the session:
// the command is one run, with one run log and one journal. It runs as
// newReadRunner's runs do (every host at once, not in check mode), with
// reg's modules, g recording the hosts found unreachable; its events go to
// the run log only (the command prints what it found). Only an
// interruption (or --timeout) is an error: what the hosts answered is the
// command's to judge.
func (r *runner) gatherWithin(ctx context.Context, reg *tasks.Registry, play tasks.Play, g *gathered) error {
	plays := []tasks.Play{play}
	if err := checkHostKeys(r.inv, plays); err != nil {
		return err
	}
	if err := checkExpectHostKeys(r.s.o, r.inv, plays); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, r.s.o)
	defer cancel()
	eng := *r.engine
	eng.Modules = reg
	eng.Forks = max(r.s.o.Forks, len(play.Hosts))
	eng.Check = false
	eng.Sink = r.s.logSink
	g.listen(&eng)
	if _, err := eng.Run(ctx, plays); err != nil && ctx.Err() != nil {
		return exit.With(exit.Interrupted, err)
	}
	return nil
}

// countHosts counts the distinct hosts of plays.
func countHosts(plays []tasks.Play) int {
	seen := map[string]bool{}
	for _, p := range plays {
		for _, h := range p.Hosts {
			seen[h.Name] = true
		}
	}
	return len(seen)
}

// exitError maps the engine's outcome to the documented exit codes: 6
// when --timeout ended the run or every failed host failed by waiting too
// long (wait_for, kms_wait, a task's timeout), 7 when every failed host
// failed a verification (kms_verify, kms_hsm_check), 130 when it was
// interrupted, else those of recapError.
func exitError(ctx context.Context, recap tasks.Recap, err error) error {
	if err == nil {
		return nil
	}
	var re *tasks.RunError
	if !errors.As(err, &re) {
		return err
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return exit.With(exit.TimedOut, err)
	case re.Cancelled != nil:
		return exit.With(exit.Interrupted, err)
	case re.TimedOut():
		return exit.With(exit.TimedOut, err)
	case re.VerificationFailed():
		return exit.With(exit.VerifyFailed, err)
	}
	return recapError(recap, err)
}

// recapError maps a run's recap to the documented exit codes: 2 when a host
// failed, 3 when one was unreachable and none failed.
func recapError(r tasks.Recap, err error) error {
	switch {
	case r.Failed():
		return exit.With(exit.HostFailed, err)
	case r.Unreachable():
		return exit.With(exit.Unreachable, err)
	}
	return err
}

// loadInventory loads the -i files. Without -i, a missing ./inventory.yml is
// no inventory (nil) when optional; otherwise it is a usage error.
func loadInventory(o options, optional bool) (*inventory.Inventory, error) {
	if !o.InventoryExplicit {
		if _, err := os.Stat(defaultInventory); errors.Is(err, fs.ErrNotExist) {
			if optional {
				return nil, nil
			}
			return nil, exit.Usagef("no inventory: %s does not exist; name one with -i FILE or KMSCTL_INVENTORY", defaultInventory)
		}
	}
	inv, err := inventory.Load(o.Inventories...)
	if err != nil {
		return nil, exit.With(exit.Usage, fmt.Errorf("load inventory: %w", err))
	}
	return inv, nil
}

// stateKnownHosts returns kmsctl's own known_hosts file, creating its
// directory (0700).
func stateKnownHosts(e env) (string, error) {
	if err := os.MkdirAll(e.stateDir, 0o700); err != nil {
		return "", fmt.Errorf("create state directory: %w", err)
	}
	return filepath.Join(e.stateDir, "known_hosts"), nil
}

// withTimeout applies --timeout to ctx.
func withTimeout(ctx context.Context, o options) (context.Context, context.CancelFunc) {
	if o.Timeout > 0 {
		return context.WithTimeout(ctx, o.Timeout)
	}
	return context.WithCancel(ctx)
}
