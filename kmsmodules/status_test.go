package kmsmodules_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/remote/fake"
)

// TestStatus: kms_status registers the node's own view and health, reached
// through the host's SSH connection (a tunnel to its 127.0.0.1:kms_port)
// or directly, with the certificate verified; it changes nothing, in check
// mode too.
func TestStatus(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(3)
	for _, check := range []bool{false, true} {
		h := l.sshHost("kms2", nodes[1])
		r, err := l.run("kms_status", h, nil, check)
		if err != nil || r.Failed || r.Changed {
			t.Fatalf("kms_status (check %v) = %+v, %v", check, r, err)
		}
		d := r.Data
		if d["id"] != int(nodes[1].NodeID()) || d["live"] != true || d["ready"] != true || d["ready_write"] != true ||
			d["version"] != "2025-11-12T19-14-51Z" || d["endpoint"] != nodes[1].Host() || d["commit"].(int) < 2 {
			t.Errorf("kms_status data: %v", d)
		}
		if na, err := time.Parse(time.RFC3339, fmt.Sprint(d["cert_not_after"])); err != nil || na.Before(time.Now()) {
			t.Errorf("cert_not_after = %v (%v); want when the node's certificate expires", d["cert_not_after"], err)
		}
		if d["role"] != "Leader" && d["role"] != "Follower" {
			t.Errorf("role %v", d["role"])
		}
		var want []any
		for _, n := range nodes {
			want = append(want, map[string]any{"id": int(n.NodeID()), "endpoint": n.Host()})
		}
		sortMembers(want)
		if !reflect.DeepEqual(d["members"], want) {
			t.Errorf("members = %v, want %v", d["members"], want)
		}
		if leader := d["leader"].(int); leader < 0 || leader > 2 {
			t.Errorf("leader = %d", leader)
		}
		tunnels := 0
		for _, c := range h.conn.Calls() {
			if c.Kind == fake.KindDialTCP && c.Addr == "127.0.0.1:7373" {
				tunnels++
			}
			if c.Kind != fake.KindDialTCP {
				t.Errorf("kms_status did %s on the host", c.Kind)
			}
		}
		if tunnels == 0 {
			t.Errorf("kms_api ssh: no tunnel to 127.0.0.1:7373 (calls %v)", h.conn.Calls())
		}
	}

	// Directly: no tunnel; kms_api_address is where to connect, the
	// certificate is verified for kms_endpoint's host.
	h := l.directHost("kms1", nodes[0])
	_, port, _ := strings.Cut(nodes[0].Addr(), ":")
	h.node.APIAddress = "localhost:" + port
	r, err := l.run("kms_status", h, nil, false)
	if err != nil || r.Failed || r.Data["id"] != int(nodes[0].NodeID()) {
		t.Fatalf("kms_status direct = %+v, %v", r, err)
	}
	if calls := h.conn.Calls(); len(calls) != 0 {
		t.Errorf("kms_api direct used the SSH connection: %v", calls)
	}
	h.node.APIAddress = "127.0.0.1:1" // nothing listens: proves the address is used
	if r, err := l.run("kms_status", h, nil, false); err != nil || !r.Failed || r.Data["live"] != false || r.Data["cert_not_after"] != nil || r.Data["cert_unknown_authority"] != nil {
		t.Errorf("kms_status with a dead kms_api_address = %+v, %v; want a failed result with live false", r, err)
	}
}

// TestStatusVerifiesCertificate: a server certificate that kms_ca_file (or
// the system pool) does not vouch for fails; nothing skips verification.
func TestStatusVerifiesCertificate(t *testing.T) {
	l := newLab(t)
	n := l.start()
	other := newLab(t)
	h := l.sshHost("kms1", n)
	h.node.CAFile = other.caFile
	r, err := l.run("kms_status", h, nil, false)
	if err != nil || !r.Failed || !strings.Contains(r.Msg, "certificate") {
		t.Errorf("kms_status against an unknown CA = %+v, %v; want a failure naming the certificate", r, err)
	}
	// Registered as such, with the issuer, for the commands to tell a
	// wrong kms_ca_file from a node that is down.
	if r.Data["cert_unknown_authority"] != true || !strings.Contains(fmt.Sprint(r.Data["cert_issuer"]), "CN=") || r.Data["key_refused"] != nil {
		t.Errorf("kms_status against an unknown CA registered %v; want cert_unknown_authority and cert_issuer", r.Data)
	}
	h.node.CAFile = "" // the system pool does not know the lab's CA either
	if r, err := l.run("kms_status", h, nil, false); err != nil || !r.Failed || !strings.Contains(r.Msg, "certificate") {
		t.Errorf("kms_status with the system pool = %+v, %v", r, err)
	}
	h.node.CAFile = filepath.Join(t.TempDir(), "missing.crt")
	if _, err := l.run("kms_status", h, nil, false); err == nil || !strings.Contains(err.Error(), "kms_ca_file") {
		t.Errorf("kms_status with a missing CA file: %v", err)
	}
}

// TestNotAnInventoryHost: a host without its inventory entry (a delegate
// outside the inventory) is refused with why.
func TestNotAnInventoryHost(t *testing.T) {
	l := newLab(t)
	h := l.sshHost("kms1", l.start())
	env := h.taskEnv(map[string]any{}, nil)
	env.Host.Target = nil
	m, _ := l.reg.Lookup("kms_status")
	if _, err := m.Apply(t.Context(), env); err == nil || !strings.Contains(err.Error(), "not an inventory host") {
		t.Errorf("kms_status on a host without inventory entry: %v", err)
	}
}

func sortMembers(m []any) {
	slices.SortFunc(m, func(a, b any) int { return a.(map[string]any)["id"].(int) - b.(map[string]any)["id"].(int) })
}
