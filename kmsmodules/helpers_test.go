package kmsmodules_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/tasks"
)

// The modules are tested outside the engine: a lab of simulator nodes on
// 127.0.0.1 ports, and for each call a tasks.Env built by hand around the
// shared fake connection, whose tunnels (DialTCP) reach the simulator.

// lab is one CA (its certificate in caFile), one admin API key and one HSM
// key shared by the simulator nodes it starts, and the registry with the
// Key Manager modules, reading the admin key from a fake environment.
type lab struct {
	t      *testing.T
	ca     *kmsim.CA
	caFile string
	admin  kms.APIKey
	hsmKey hsm.Key
	reg    *tasks.Registry
	env    map[string]string
	dirs   map[*kmsim.Node]string // each node's data directory
}

func newLab(t *testing.T) *lab {
	t.Helper()
	ca, err := kmsim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	for i := range s {
		s[i] = byte(i*13 + 1)
	}
	l := &lab{t: t, ca: ca, caFile: caFile, admin: admin, hsmKey: hsm.New(s), reg: tasks.NewRegistry(),
		env: map[string]string{inventory.EnvAPIKey: admin.Secret()}, dirs: map[*kmsim.Node]string{}}
	kmsmodules.Register(l.reg, kmsmodules.Options{Getenv: func(k string) string { return l.env[k] }})
	return l
}

// start starts a fresh simulator node on a 127.0.0.1 port.
func (l *lab) start() *kmsim.Node {
	l.t.Helper()
	return l.startIn(filepath.Join(l.t.TempDir(), "data"), "127.0.0.1:0")
}

// startIn starts a node with the data directory dir listening on addr.
func (l *lab) startIn(dir, addr string) *kmsim.Node {
	l.t.Helper()
	cert, err := l.ca.ServerCertificate("127.0.0.1", "localhost")
	if err != nil {
		l.t.Fatal(err)
	}
	n, err := kmsim.Start(context.Background(), kmsim.Config{
		Dir: dir, HSMKey: l.hsmKey, Address: addr,
		AdminIdentity: l.admin.Identity(), Certificates: []tls.Certificate{cert}, PeerCAs: l.ca.Pool(),
		HeartbeatInterval: 50 * time.Millisecond, Version: "2025-11-12T19-14-51Z",
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { n.Close() })
	l.dirs[n] = dir
	return n
}

// client is an admin client of nodes, for checking what the modules did.
func (l *lab) client(nodes ...*kmsim.Node) *kms.Client {
	l.t.Helper()
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.Host())
	}
	c, err := kms.New(kms.Config{Endpoints: eps, APIKey: l.admin, RootCAs: l.ca.Pool()})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(c.Close)
	return c
}

// cluster starts n nodes and joins them into one converged cluster, every
// node ready for writes.
func (l *lab) cluster(n int) []*kmsim.Node {
	l.t.Helper()
	var nodes []*kmsim.Node
	var eps []string
	for range n {
		nd := l.start()
		nodes = append(nodes, nd)
		eps = append(eps, nd.Host())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := l.client(nodes...)
	waitReady(l.t, c, eps[0])
	if err := kms.Join(ctx, c, eps[0], eps[1:], 20*time.Second); err != nil {
		l.t.Fatal(err)
	}
	for _, ep := range eps {
		waitReady(l.t, c, ep)
	}
	return nodes
}

func waitReady(t *testing.T, c *kms.Client, ep string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ready(context.Background(), ep, true) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready for writes after 10s", ep)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// host is one node as a task host: how the inventory describes it and its
// fake SSH connection.
type host struct {
	name string
	node inventory.KMSNode
	conn *fake.Conn
}

// sshHost is n as an inventory host reached with kms_api ssh: its SSH
// connection's tunnel to 127.0.0.1:7373 (kms_port) reaches n, and tunnels to
// other addresses reach them as the node would (all on this machine); its
// env file holds the lab's HSM key.
func (l *lab) sshHost(name string, n *kmsim.Node) *host {
	c := fake.New(l.t, name)
	c.ForwardPort("127.0.0.1:7373", n.Addr())
	var d net.Dialer
	c.SetDialTCP(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) })
	c.SetFile(inventory.DefaultEnvFile, "MINIO_KMS_HSM_KEY="+l.hsmKey.Text()+"\n", 0o600)
	return &host{name: name, conn: c, node: inventory.KMSNode{Host: name, Endpoint: n.Host(), Port: 7373, API: inventory.APISSH,
		CAFile: l.caFile, EnvFile: inventory.DefaultEnvFile}}
}

// directHost is n as an inventory host reached with kms_api direct.
func (l *lab) directHost(name string, n *kmsim.Node) *host {
	_, port, _ := net.SplitHostPort(n.Addr())
	p, _ := strconv.Atoi(port)
	return &host{name: name, conn: fake.New(l.t, name), node: inventory.KMSNode{Host: name, Endpoint: n.Host(), Port: p, API: inventory.APIDirect, CAFile: l.caFile}}
}

// taskEnv is the Env of one module call on h.
func (h *host) taskEnv(args map[string]any, memo *sync.Map) *tasks.Env {
	ih := inventory.Host{Name: h.name, KMS: h.node}
	return &tasks.Env{Conn: h.conn, Host: tasks.Host{Name: h.name, Target: ih}, Args: tasks.Args(args), Vars: map[string]any{}, Memo: memo}
}

// run calls module on h as the engine would: Plan in check mode, else
// Apply, with the arguments validated first.
func (l *lab) run(module string, h *host, args map[string]any, check bool) (tasks.Result, error) {
	l.t.Helper()
	if args == nil {
		args = map[string]any{}
	}
	if err := l.reg.Validate(tasks.Task{Module: module, Args: args}); err != nil {
		l.t.Fatalf("%s %v: %v", module, args, err)
	}
	m, _ := l.reg.Lookup(module)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env := h.taskEnv(args, &sync.Map{})
	if check {
		return m.Plan(ctx, env)
	}
	return m.Apply(ctx, env)
}

// isRefusal reports whether err is a refusal by a safety rule (exit 4).
func isRefusal(err error) bool {
	var r interface{ Refused() bool }
	return errors.As(err, &r) && r.Refused()
}

// isVerification reports whether err is a failed verification (exit 7).
func isVerification(err error) bool {
	var v *tasks.VerificationError
	return errors.As(err, &v)
}

// isTimeout reports whether err is a wait that ran out of time (exit 6).
func isTimeout(err error) bool {
	var te *tasks.TimeoutError
	return errors.As(err, &te)
}
