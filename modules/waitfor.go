package modules

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/kmsctl/kmsctl/tasks"
)

// waitForModule waits, from the host's point of view, until a TCP port
// accepts connections (port, host default 127.0.0.1), an HTTP(S) URL
// answers with status_code (default: any 2xx or 3xx), or a path exists;
// with state stopped/absent, until it no longer does. TCP and HTTP go
// through Conn.DialTCP (a tunnel from the host). It checks every sleep
// (default 1s) after an initial delay, and fails after timeout (default
// 300s). It never changes anything; in check mode it probes once and
// does not wait. HTTPS certificates are verified (ca: a local PEM file of
// extra roots; validate_certs: false to skip, for tests only).
type waitForModule struct{}

func (waitForModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{
		"port":           {Type: tasks.ArgInt},
		"host":           {Type: tasks.ArgString},
		"url":            {Type: tasks.ArgString},
		"path":           {Type: tasks.ArgString, CmdLine: true},
		"state":          {Type: tasks.ArgString},
		"timeout":        {Type: tasks.ArgDuration},
		"delay":          {Type: tasks.ArgDuration},
		"sleep":          {Type: tasks.ArgDuration},
		"status_code":    {Type: tasks.ArgInt},
		"validate_certs": {Type: tasks.ArgBool},
		"ca":             {Type: tasks.ArgString},
		"msg":            {Type: tasks.ArgString},
	}, ExactlyOneOf: [][]string{{"port", "url", "path"}}}
}

// CheckArgs checks a known state before any host is touched.
func (waitForModule) CheckArgs(args tasks.Args) error {
	return checkEnum(args, "state", "", "started", "present", "stopped", "absent")
}

// probe is one check of the condition.
type probe struct {
	what  string
	want  bool // true: wait until present/started
	check func(ctx context.Context) (bool, error)
}

func (waitForModule) probe(env *tasks.Env) (probe, error) {
	state, err := env.Args.String("state")
	if err != nil {
		return probe{}, err
	}
	p := probe{}
	switch state {
	case "", "started", "present":
		p.want = true
	case "stopped", "absent":
	default:
		return p, fmt.Errorf("state %q: want started, present, stopped or absent", state)
	}
	switch {
	case env.Args.Has("path"):
		path, err := env.Args.String("path")
		if err != nil {
			return p, err
		}
		if err := checkPath(path); err != nil {
			return p, fmt.Errorf("path: %w", err)
		}
		p.what = "path " + path
		p.check = func(ctx context.Context) (bool, error) {
			_, ok, err := exists(ctx, env.Conn, path)
			return ok, err
		}
	case env.Args.Has("port"):
		port, err := env.Args.Int("port", 0)
		if err != nil {
			return p, err
		}
		host, err := env.Args.String("host")
		if err != nil {
			return p, err
		}
		if host == "" {
			host = "127.0.0.1"
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		p.what = "port " + addr
		p.check = func(ctx context.Context) (bool, error) {
			c, err := env.Conn.DialTCP(ctx, addr)
			if err != nil {
				if tasks.IsUnreachable(err) {
					return false, err
				}
				return false, nil
			}
			return true, c.Close()
		}
	default:
		url, err := env.Args.String("url")
		if err != nil {
			return p, err
		}
		client, err := httpClient(env)
		if err != nil {
			return p, err
		}
		code, err := env.Args.Int("status_code", 0)
		if err != nil {
			return p, err
		}
		p.what = "URL " + url
		p.check = func(ctx context.Context) (bool, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return false, fmt.Errorf("request %s: %w", url, err)
			}
			resp, err := client.Do(req)
			if err != nil {
				if tasks.IsUnreachable(err) {
					return false, err
				}
				return false, nil
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			if err := resp.Body.Close(); err != nil {
				return false, nil
			}
			if code != 0 {
				return resp.StatusCode == code, nil
			}
			return resp.StatusCode >= 200 && resp.StatusCode < 400, nil
		}
	}
	return p, nil
}

func httpClient(env *tasks.Env) (*http.Client, error) {
	verify, err := env.Args.Bool("validate_certs", true)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{InsecureSkipVerify: !verify} //nolint:gosec // explicit opt-out for tests
	if ca, err := env.Args.String("ca"); err != nil {
		return nil, err
	} else if ca != "" {
		pem, err := env.ReadLocal(ca)
		if err != nil {
			return nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificates", ca)
		}
		cfg.RootCAs = pool
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return env.Conn.DialTCP(ctx, addr)
		},
		TLSClientConfig:   cfg,
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

func (p probe) met(ok bool) bool { return ok == p.want }

func (p probe) goal() string {
	if p.want {
		return p.what + " to be ready"
	}
	return p.what + " to be gone"
}

func (m waitForModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	p, err := m.probe(env)
	if err != nil {
		return tasks.Result{}, err
	}
	ok, err := p.check(ctx)
	if err != nil {
		return tasks.Result{}, err
	}
	now := "not yet"
	if p.met(ok) {
		now = "already"
	}
	return tasks.Result{Msg: fmt.Sprintf("would wait for %s (%s met)", p.goal(), now)}, nil
}

func (m waitForModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	p, err := m.probe(env)
	if err != nil {
		return tasks.Result{}, err
	}
	timeout, err := env.Args.Duration("timeout", 300*time.Second)
	if err != nil {
		return tasks.Result{}, err
	}
	delay, err := env.Args.Duration("delay", 0)
	if err != nil {
		return tasks.Result{}, err
	}
	sleep, err := env.Args.Duration("sleep", time.Second)
	if err != nil {
		return tasks.Result{}, err
	}
	start := time.Now()
	deadline := start.Add(delay + timeout)
	if err := sleepCtx(ctx, delay); err != nil {
		return tasks.Result{}, err
	}
	for {
		cctx, cancel := context.WithDeadline(ctx, deadline)
		ok, err := p.check(cctx)
		cancel()
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			return tasks.Result{}, fmt.Errorf("wait for %s: %w", p.goal(), err)
		}
		if err == nil && p.met(ok) {
			el := time.Since(start)
			return tasks.Result{Msg: fmt.Sprintf("%s after %s", p.goal(), el.Round(time.Millisecond)),
				Data: map[string]any{"elapsed": el.Seconds()}}, nil
		}
		if !time.Now().Add(sleep).Before(deadline) {
			msg, _ := env.Args.String("msg")
			if msg == "" {
				msg = fmt.Sprintf("timed out after %s waiting for %s", timeout, p.goal())
			}
			return tasks.Result{Data: map[string]any{"elapsed": time.Since(start).Seconds()}}, &tasks.TimeoutError{Err: errors.New(msg)}
		}
		if err := sleepCtx(ctx, sleep); err != nil {
			return tasks.Result{}, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case <-t.C:
		return nil
	}
}
