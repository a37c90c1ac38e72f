package kmsmodules

import (
	"context"
	"crypto/x509"
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

// statusModule is kms_status: the task host's node's own view of its
// cluster, read-only, registered as id, role, leader, commit, members (each
// with id and endpoint), down (the IDs it sees down), live, ready,
// ready_write, version, endpoint and cert_not_after (when the TLS
// certificate the node presented expires, RFC 3339; absent when it did not
// answer), key_refused (true when the node refused the admin API key:
// HTTP 403 access denied), and cert_unknown_authority (true when the
// certificate the node presented is not signed by kms_ca_file, or the
// system pool without one) with cert_issuer, its issuer. The task fails, with what is known registered, when the node's
// API does not answer its cluster status.
type statusModule struct{ m *mods }

func (statusModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{}}
}

func (s statusModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return s.Apply(ctx, env)
}

func (s statusModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	a, err := s.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	st := a.status(ctx)
	r := tasks.Result{Data: st.data()}
	if st.view.Err != nil {
		r.Failed = true
		r.Msg = fmt.Sprintf("%s (%s) does not answer its cluster status: %v", a.host, a.self, st.view.Err)
		return r, nil
	}
	r.Msg = st.summary()
	return r, nil
}

// nodeStatus is what a node says about itself: its view and its health.
type nodeStatus struct {
	view                   kms.NodeView
	live, ready, readWrite bool
	version                string
	// certNotAfter is when the certificate the node presented expires
	// (zero when it did not answer).
	certNotAfter time.Time
}

// status asks the task host's node, all within askTimeout, whether it
// answers (liveness, with the certificate it presents) and then, in
// parallel over the connection that question opened, for its view,
// readiness for reads and writes and version. A node that does not answer
// costs askTimeout once.
func (a *access) status(ctx context.Context) nodeStatus {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	var st nodeStatus
	cert, err := a.client.LiveCertificate(ctx, a.self)
	if err != nil {
		st.view = kms.NodeView{Endpoint: a.self, Err: err}
		return st
	}
	st.live, st.certNotAfter = true, cert.NotAfter
	var wg sync.WaitGroup
	wg.Go(func() { st.view = kms.View(ctx, a.client, a.self) })
	wg.Go(func() { st.ready = a.client.Ready(ctx, a.self, false) == nil })
	wg.Go(func() { st.readWrite = a.client.Ready(ctx, a.self, true) == nil })
	wg.Go(func() {
		if v, err := a.client.Version(ctx, a.self); err == nil {
			st.version = v.GetVersion()
		}
	})
	wg.Wait()
	return st
}

// data is the registered form.
func (st nodeStatus) data() map[string]any {
	v := st.view
	d := map[string]any{"endpoint": v.Endpoint, "live": st.live, "ready": st.ready, "ready_write": st.readWrite, "version": st.version}
	if !st.certNotAfter.IsZero() {
		d["cert_not_after"] = st.certNotAfter.UTC().Format(time.RFC3339)
	}
	if v.Err != nil {
		if errors.Is(v.Err, kms.ErrAccessDenied) {
			d["key_refused"] = true
		}
		if issuer, ok := unknownAuthority(v.Err); ok {
			d["cert_unknown_authority"], d["cert_issuer"] = true, issuer
		}
		return d
	}
	members := []any{}
	for _, id := range slices.Sorted(maps.Keys(v.Members)) {
		members = append(members, map[string]any{"id": int(id), "endpoint": v.Members[id]})
	}
	down := []any{}
	for _, id := range v.DownIDs {
		down = append(down, int(id))
	}
	d["id"], d["role"], d["leader"], d["commit"] = int(v.ID), v.Role, int(v.LeaderID), int(v.Commit)
	d["members"], d["down"] = members, down
	return d
}

// unknownAuthority reports whether err is a TLS verification that failed
// because no CA of the pool signed the server's certificate, and the
// issuer of that certificate ("" when unknown).
func unknownAuthority(err error) (string, bool) {
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		return "", false
	}
	if ua.Cert == nil {
		return "", true
	}
	return ua.Cert.Issuer.String(), true
}

// summary is one line for the task's message.
func (st nodeStatus) summary() string {
	v := st.view
	var b strings.Builder
	fmt.Fprintf(&b, "node %d (%s), %s, leader %d, commit %d, %d member(s)", v.ID, v.Endpoint, v.Role, v.LeaderID, v.Commit, len(v.Members))
	if len(v.DownIDs) > 0 {
		fmt.Fprintf(&b, ", sees down: %v", v.DownIDs)
	}
	switch {
	case st.readWrite:
		b.WriteString(", ready for writes")
	case st.ready:
		b.WriteString(", ready for reads only")
	default:
		b.WriteString(", not ready")
	}
	return b.String()
}
