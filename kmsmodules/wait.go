package kmsmodules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/tasks"
)

// waitModule is kms_wait: it waits until the cluster of the task host's
// node is whole: every member of its definition answers, lists the same
// members (endpoint included, when given: the node just added), sees none
// of them down, names the same leader, has the same commit index and is
// ready for writes. It is bounded by timeout (default 5m); when that runs
// out the task fails naming what was still missing, with a
// *tasks.TimeoutError (the CLI exits 6 when every failed host timed out).
// It fails at once, without waiting, when endpoint is given and neither the
// task host's node nor any member of its definition that answers lists it:
// kms_wait adds nothing, so that cannot come true by waiting (a node never
// added, a wrong endpoint). In check mode it looks once and says what it
// would wait for.
type waitModule struct{ m *mods }

func (waitModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{
		"endpoint": {Type: tasks.ArgString},
		"timeout":  {Type: tasks.ArgDuration},
		"interval": {Type: tasks.ArgDuration},
	}}
}

// Defaults of kms_wait.
const (
	defaultWaitTimeout  = 5 * time.Minute
	defaultWaitInterval = time.Second
)

type waitArgs struct {
	endpoint          string
	timeout, interval time.Duration
}

func readWaitArgs(env *tasks.Env) (waitArgs, error) {
	var w waitArgs
	s, err := env.Args.String("endpoint")
	if err != nil {
		return w, err
	}
	if s != "" {
		if w.endpoint, err = kms.ParseEndpoint(s); err != nil {
			return w, fmt.Errorf("argument endpoint: %w", err)
		}
	}
	if w.timeout, err = env.Args.Duration("timeout", defaultWaitTimeout); err != nil {
		return w, err
	}
	if w.interval, err = env.Args.Duration("interval", defaultWaitInterval); err != nil {
		return w, err
	}
	if w.timeout <= 0 || w.interval <= 0 {
		return w, errors.New("timeout and interval must be positive")
	}
	return w, nil
}

func (w waitArgs) goal() string {
	if w.endpoint != "" {
		return "every member to list " + w.endpoint + ", agree on members, leader and commit, and be ready for writes"
	}
	return "every member to agree on members, leader and commit, and be ready for writes"
}

func (m waitModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.run(ctx, env, true)
}

func (m waitModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.run(ctx, env, false)
}

// run decodes what kms_wait is asked and reaches the node; with check it
// reports whether the goal is met now, else it waits for the goal.
func (m waitModule) run(ctx context.Context, env *tasks.Env, check bool) (tasks.Result, error) {
	w, err := readWaitArgs(env)
	if err != nil {
		return tasks.Result{}, err
	}
	a, err := m.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	if check {
		now := "already met"
		var never *neverError
		if missing := a.whole(ctx, w.endpoint); errors.As(missing, &never) {
			now = "cannot be met: " + missing.Error()
		} else if missing != nil {
			now = "not met yet: " + missing.Error()
		}
		return tasks.Result{Msg: fmt.Sprintf("would wait up to %s for %s (%s)", w.timeout, w.goal(), now)}, nil
	}
	start := time.Now()
	deadline := time.NewTimer(w.timeout)
	defer deadline.Stop()
	for {
		missing := a.whole(ctx, w.endpoint)
		if missing == nil {
			return tasks.Result{Msg: fmt.Sprintf("cluster of %s whole after %s", a.host, time.Since(start).Round(time.Millisecond))}, nil
		}
		var never *neverError
		if errors.As(missing, &never) {
			return tasks.Result{}, fmt.Errorf("wait for %s: %w", w.goal(), missing)
		}
		select {
		case <-ctx.Done():
			return tasks.Result{}, fmt.Errorf("wait for %s: %w (still missing: %w)", w.goal(), ctx.Err(), missing)
		case <-deadline.C:
			return tasks.Result{}, &tasks.TimeoutError{Err: fmt.Errorf("timed out after %s waiting for %s; still missing: %w", w.timeout, w.goal(), missing)}
		case <-time.After(w.interval):
		}
	}
}

// whole returns nil when the cluster of the task host's node is whole (see
// waitModule), else what is missing.
func (a *access) whole(ctx context.Context, endpoint string) error {
	self, err := a.selfView(ctx)
	if err != nil {
		return err
	}
	if endpoint != "" {
		if _, ok := self.Lists(endpoint); !ok {
			return a.unlisted(ctx, self, endpoint)
		}
	}
	eps := slices.Sorted(maps.Values(self.Members))
	views := a.views(ctx, eps)
	var errs []error
	for _, v := range views {
		if v.Err != nil {
			continue // Converged reports it
		}
		if !maps.Equal(v.Members, self.Members) {
			errs = append(errs, fmt.Errorf("%s lists members %s, %s lists %s", v.Endpoint, members(v.Members), a.self, members(self.Members)))
		}
	}
	if err := kms.Converged(views, len(self.Members)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return a.readyForWrites(ctx, eps)
}

// neverError is what kms_wait waits for when waiting cannot bring it.
type neverError struct{ err error }

func (e *neverError) Error() string { return e.err.Error() }
func (e *neverError) Unwrap() error { return e.err }

// unlisted is why the cluster is not whole when the task host's node (its
// view self) does not list endpoint: not yet, when another member that
// answers lists it (the addition is still spreading), else a *neverError:
// no answering member has it in its definition, and nothing but an
// addition (kms_add_node) would put it there.
func (a *access) unlisted(ctx context.Context, self kms.NodeView, endpoint string) error {
	var others []string
	for _, ep := range self.Members {
		if ep != a.self {
			others = append(others, ep)
		}
	}
	slices.Sort(others)
	asked := []string{a.self}
	for _, v := range a.views(ctx, others) {
		if v.Err != nil {
			continue
		}
		if _, ok := v.Lists(endpoint); ok {
			return fmt.Errorf("%s (%s) does not list %s yet (%s does)", a.host, a.self, endpoint, v.Endpoint)
		}
		asked = append(asked, v.Endpoint)
	}
	return &neverError{fmt.Errorf("no member lists %s: the cluster definitions of %s, every member that answers, do not hold it, and waiting does not add a node; "+
		"add it first (kms_add_node) or check the endpoint (it must be the node's kms_endpoint, as the cluster knows it)", endpoint, strings.Join(asked, ", "))}
}

// readyForWrites asks every endpoint, in parallel, whether it is ready for
// writes, and names those that are not.
func (a *access) readyForWrites(ctx context.Context, eps []string) error {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Go(func() {
			if err := a.client.Ready(ctx, ep, true); err != nil {
				errs[i] = fmt.Errorf("%s is not ready for writes: %w", ep, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// members formats a cluster definition as "{0: a:7373, 1: b:7373}".
func members(m map[uint32]string) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d: %s", id, m[id]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
