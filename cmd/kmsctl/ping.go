package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/tasks"
)

// pingTargets resolves ping's HOST arguments, or the inventory's hosts
// (with --limit) when there are none. Arguments naming inventory hosts use
// the inventory's connection settings.
func pingTargets(o options, args []string) ([]target, error) {
	inv, err := loadInventory(o, len(args) > 0)
	if err != nil {
		return nil, err
	}
	var targets []target
	if len(args) == 0 {
		pattern := o.Limit
		if pattern == "" {
			pattern = "all"
		}
		hosts, err := inv.Select(pattern)
		if err != nil {
			return nil, exit.With(exit.Usage, fmt.Errorf("--limit %q: %w", pattern, err))
		}
		args = hosts
	}
	seen := map[string]bool{}
	for _, a := range args {
		if seen[a] {
			continue
		}
		seen[a] = true
		if inv != nil && inv.HasHost(a) {
			c, err := inv.Connection(a, o.ExtraVars)
			if err != nil {
				return nil, exit.With(exit.Usage, fmt.Errorf("connection settings of host %s: %w", a, err))
			}
			targets = append(targets, inventoryTarget(c))
			continue
		}
		t, err := parseHostArg(a)
		if err != nil {
			return nil, exit.With(exit.Usage, err)
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, exit.Usagef("ping: no hosts selected")
	}
	return targets, nil
}

// ping connects to each host and runs `true`, --forks at a time, and prints
// one line per host and a recap. It returns an error with exit code 2 when a
// host failed and 3 when one was unreachable.
func ping(ctx context.Context, e env, o options, args []string) error {
	targets, err := pingTargets(o, args)
	if err != nil {
		return err
	}
	s, err := newSession(e, o, "ping")
	if err != nil {
		return err
	}
	return s.finish(runPing(ctx, s, targets))
}

// runPing is ping's work within a session.
func runPing(ctx context.Context, s *session, targets []target) error {
	ctx, cancel := withTimeout(ctx, s.o)
	defer cancel()
	kh, err := stateKnownHosts(s.e)
	if err != nil {
		return err
	}
	d := &dialer{o: s.o, stateKnownHosts: kh, logger: s.logger, red: s.red}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	var mu sync.Mutex // serialises events, as the engine does
	emit := func(ev tasks.Event) {
		mu.Lock()
		defer mu.Unlock()
		ev.Time = time.Now()
		s.sink.Event(ev)
	}
	emit(tasks.Event{Type: tasks.EventPlayStart, Play: "ping", Hosts: names})
	emit(tasks.Event{Type: tasks.EventTaskStart, Play: "ping", Task: "ping", Hosts: names})
	recap := tasks.Recap{}
	for _, n := range names {
		recap[n] = &tasks.HostStats{}
	}
	runErr := &tasks.RunError{Recap: recap}
	sem := make(chan struct{}, s.o.Forks)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
			}
			start := time.Now()
			err := pingOne(ctx, d, t)
			ev := tasks.Event{Type: tasks.EventHostResult, Play: "ping", Task: "ping", Host: t.Name, Duration: time.Since(start), Status: tasks.StatusOK, Msg: "pong"}
			mu.Lock()
			st := recap[t.Name]
			switch {
			case err == nil:
				st.OK++
			case isUnreachable(err):
				st.Unreachable++
				ev.Status, ev.Msg = tasks.StatusUnreachable, err.Error()
				runErr.Hosts = append(runErr.Hosts, &tasks.HostError{Host: t.Name, Play: "ping", Task: "ping", Unreachable: true, Err: err})
			default:
				st.Failed++
				ev.Status, ev.Msg = tasks.StatusFailed, err.Error()
				runErr.Hosts = append(runErr.Hosts, &tasks.HostError{Host: t.Name, Play: "ping", Task: "ping", Err: err})
			}
			mu.Unlock()
			emit(ev)
		}()
	}
	wg.Wait()
	emit(tasks.Event{Type: tasks.EventRecap, Recap: recap, Duration: time.Since(s.start)})
	if len(runErr.Hosts) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		runErr.Cancelled = ctx.Err()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return exit.With(exit.TimedOut, runErr)
		}
		return exit.With(exit.Interrupted, runErr)
	}
	return recapError(recap, runErr)
}

// pingOne dials t and runs `true` on it.
func pingOne(ctx context.Context, d *dialer, t target) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping %s: %w", t.Name, err)
	}
	c, err := d.dial(ctx, t)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Run(ctx, "true", nil, nil, nil); err != nil {
		return fmt.Errorf("run true: %w", err)
	}
	return nil
}

// isUnreachable reports whether err says a host was not reached.
func isUnreachable(err error) bool {
	var u interface{ Unreachable() bool }
	return errors.As(err, &u) && u.Unreachable()
}
