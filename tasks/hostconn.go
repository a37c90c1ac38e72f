package tasks

// The per-host connection: opened on a host's first task that needs it,
// shared by the tasks delegated to that host, wrapped for become, closed at
// the end of the run.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// conn returns the host's connection, connecting on first use.
func (r *run) conn(ctx context.Context, hs *hostState) (Conn, error) {
	hs.connMu.Lock() // other hosts' tasks may delegate to this host
	defer hs.connMu.Unlock()
	if hs.connected {
		return hs.conn, nil
	}
	if r.e.Connect == nil {
		return nil, errors.New("engine has no Connect function")
	}
	c, err := r.e.Connect(ctx, hs.host)
	if err != nil {
		// A transport error that classifies itself (Unreachable() bool, as
		// remote's do) already says "connect to HOST"; others get it here.
		var classified interface{ Unreachable() bool }
		if !errors.As(err, &classified) {
			err = fmt.Errorf("connect to %s: %w", hs.host.Name, err)
		}
		return nil, &UnreachableError{Err: err}
	}
	if c == nil {
		return nil, fmt.Errorf("connect to %s: Connect returned no connection", hs.host.Name)
	}
	hs.conn, hs.connected = c, true
	return c, nil
}

// delegate returns the state of a host tasks are delegated to: a host of
// the run, or one outside every play (connected by name on first use).
func (r *run) delegate(name string) *hostState {
	if hs, ok := r.hosts[name]; ok {
		return hs
	}
	r.extraMu.Lock()
	defer r.extraMu.Unlock()
	hs, ok := r.extra[name]
	if !ok {
		hs = &hostState{host: Host{Name: name}, facts: map[string]any{}, derived: map[string]bool{}}
		r.extra[name] = hs
	}
	return hs
}

// delegateError is a failure to reach the host a task is delegated to: it
// fails the task, but does not make the task's own host unreachable.
type delegateError struct {
	host string
	err  error
}

func (e *delegateError) Error() string     { return "delegate to " + e.host + ": " + e.err.Error() }
func (e *delegateError) Unwrap() error     { return e.err }
func (e *delegateError) Unreachable() bool { return false }

// peerError is a failure to reach the host a module reads from
// (Env.Peer): it fails the task, but does not make the task's own host
// unreachable.
type peerError struct {
	host string
	err  error
}

func (e *peerError) Error() string     { return "peer " + e.host + ": " + e.err.Error() }
func (e *peerError) Unwrap() error     { return e.err }
func (e *peerError) Unreachable() bool { return false }

func (r *run) closeAll() error {
	var errs []error
	all := maps.Clone(r.hosts)
	maps.Copy(all, r.extra)
	for _, name := range slices.Sorted(maps.Keys(all)) {
		hs := all[name]
		if hs.connected && hs.conn != nil {
			if err := hs.conn.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close connection to %s: %w", name, err))
			}
			hs.connected, hs.conn = false, nil
		}
	}
	return errors.Join(errs...)
}

func (r *run) become(c Conn, t Task, hs *hostState) (Conn, error) {
	on := false
	if t.Become != nil {
		on = *t.Become
	} else if v, ok := hs.host.Vars["ansible_become"]; ok {
		b, err := toBool(v)
		if err != nil {
			return nil, fmt.Errorf("host variable ansible_become: %w", err)
		}
		on = b
	}
	if !on {
		return c, nil
	}
	user := t.BecomeUser
	if user == "" {
		if v, ok := hs.host.Vars["ansible_become_user"].(string); ok {
			user = v
		}
	}
	if user == "" {
		user = "root"
	}
	if r.e.Become == nil {
		return nil, errors.New("the task asks for become, but the engine has no Become function")
	}
	return r.e.Become(c, user), nil
}
