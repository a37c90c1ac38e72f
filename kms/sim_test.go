package kms_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
	"github.com/kmsctl/kmsctl/kms/pb"
)

// The client against the real simulator (kms/kmsim), on 127.0.0.1 ports.

// simEnv is one CA, one admin API key and helpers to start nodes.
type simEnv struct {
	t     *testing.T
	ca    *kmsim.CA
	admin kms.APIKey
}

func newSimEnv(t *testing.T) *simEnv {
	t.Helper()
	ca, err := kmsim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return &simEnv{t: t, ca: ca, admin: admin}
}

func hsmKey(b byte) hsm.Key {
	var s [32]byte
	for i := range s {
		s[i] = b ^ byte(i*7)
	}
	return hsm.New(s)
}

func (e *simEnv) start(key hsm.Key) *kmsim.Node {
	e.t.Helper()
	cert, err := e.ca.ServerCertificate("127.0.0.1", "localhost")
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := kmsim.Start(context.Background(), kmsim.Config{
		Dir: filepath.Join(e.t.TempDir(), "data"), HSMKey: key, Address: "127.0.0.1:0",
		AdminIdentity: e.admin.Identity(), Certificates: []tls.Certificate{cert}, PeerCAs: e.ca.Pool(),
		HeartbeatInterval: 50 * time.Millisecond,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { n.Close() })
	return n
}

func (e *simEnv) client(key kms.APIKey, nodes ...*kmsim.Node) *kms.Client {
	e.t.Helper()
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.Addr())
	}
	c, err := kms.New(kms.Config{Endpoints: eps, APIKey: key, RootCAs: e.ca.Pool()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	return c
}

func collect[T any](t *testing.T, seq func(func(T, error) bool), name func(T) string) []string {
	t.Helper()
	var out []string
	for it, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, name(it))
	}
	return out
}

func keyNames(t *testing.T, c *kms.Client, enclave string) []string {
	return collect(t, c.ListKeys(context.Background(), enclave, ""), (*pb.KeyStatusResponse).GetName)
}

func TestClientAgainstSimulator(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	node := e.start(hsmKey(1))
	c := e.client(e.admin, node)
	host := node.Addr()

	v, err := c.Version(ctx, host)
	if err != nil || v.APIVersion != kmsim.APIVersion || v.Version != kmsim.DefaultVersion {
		t.Fatalf("Version = %v, %v", v, err)
	}
	if err := c.Live(ctx, host); err != nil {
		t.Fatal(err)
	}
	kmsimtest.Eventually(t, "write readiness", func() error { return c.Ready(ctx, host, true) })
	if err := c.Ready(ctx, "", false); err != nil {
		t.Fatal(err)
	}
	st, err := c.ClusterStatus(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	self := st.NodesUp[node.NodeID()]
	if self == nil || self.Role != "Leader" || self.LeaderID != int64(node.NodeID()) || self.Nodes[node.NodeID()] != node.Host() {
		t.Fatalf("status %v", st)
	}

	// Enclaves and keys.
	if err := c.CreateEnclave(ctx, "tenant"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateEnclave(ctx, "tenant"); !errors.Is(err, kms.ErrEnclaveExists) {
		t.Fatalf("duplicate enclave: %v", err)
	}
	for _, k := range []string{"k1", "k2", "other"} {
		if err := c.CreateKey(ctx, "tenant", k); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CreateKey(ctx, "tenant", "k1"); !errors.Is(err, kms.ErrKeyExists) {
		t.Fatalf("duplicate key: %v", err)
	}
	if err := c.CreateKey(ctx, "nope", "k1"); !errors.Is(err, kms.ErrEnclaveNotFound) {
		t.Fatalf("key in missing enclave: %v", err)
	}
	ct, ver, err := c.Encrypt(ctx, "tenant", "k1", []byte("canary"), []byte("ad"))
	if err != nil || ver == 0 {
		t.Fatalf("Encrypt = %d, %v", ver, err)
	}
	pt, err := c.Decrypt(ctx, "tenant", "k1", ver, ct, []byte("ad"))
	if err != nil || string(pt) != "canary" {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
	if _, err := c.Decrypt(ctx, "tenant", "k1", ver, ct, []byte("other")); !errors.Is(err, kms.ErrDecrypt) {
		t.Fatalf("Decrypt with wrong AD: %v", err)
	}
	if _, _, err := c.Encrypt(ctx, "tenant", "missing", []byte("x"), nil); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("Encrypt with missing key: %v", err)
	}
	dk, err := c.GenerateKey(ctx, "tenant", "k2", 0, []byte("dk"))
	if err != nil || len(dk.Plaintext) != 32 || len(dk.Ciphertext) == 0 {
		t.Fatalf("GenerateKey = %+v, %v", dk, err)
	}
	if pt, err := c.Decrypt(ctx, "tenant", "k2", dk.Version, dk.Ciphertext, []byte("dk")); err != nil || !bytes.Equal(pt, dk.Plaintext) {
		t.Fatalf("Decrypt data key = %v", err)
	}

	// Policies and identities: a user allowed to encrypt with k* only.
	user, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	policy := &pb.CreatePolicyRequest{Name: "encrypt-k", Allow: map[string]*pb.RuleSet{
		"KEY:ENCRYPT": {Rules: map[string]*pb.Rule{"k*": {}}},
	}}
	if err := c.CreatePolicy(ctx, "tenant", policy); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateIdentity(ctx, "tenant", &pb.CreateIdentityRequest{Identity: user.Identity(), Privilege: "User"}); err != nil {
		t.Fatal(err)
	}
	if err := c.AssignPolicy(ctx, "tenant", user.Identity(), "encrypt-k"); err != nil {
		t.Fatal(err)
	}
	if err := c.AssignPolicy(ctx, "tenant", user.Identity(), "missing"); !errors.Is(err, kms.ErrPolicyNotFound) {
		t.Fatalf("assign missing policy: %v", err)
	}
	uc := e.client(user, node)
	if _, _, err := uc.Encrypt(ctx, "tenant", "k2", []byte("x"), nil); err != nil {
		t.Fatalf("user Encrypt with k2: %v", err)
	}
	if _, _, err := uc.Encrypt(ctx, "tenant", "other", []byte("x"), nil); !errors.Is(err, kms.ErrAccessDenied) {
		t.Fatalf("user Encrypt with other: %v", err)
	}
	if err := uc.CreateKey(ctx, "tenant", "k9"); !errors.Is(err, kms.ErrAccessDenied) {
		t.Fatalf("user CreateKey: %v", err)
	}
	if _, err := uc.ClusterStatus(ctx, host); !errors.Is(err, kms.ErrAccessDenied) {
		t.Fatalf("user ClusterStatus: %v", err)
	}

	// Listing.
	enclaves := collect(t, c.ListEnclaves(ctx, ""), (*pb.EnclaveStatusResponse).GetName)
	if !slices.Contains(enclaves, "tenant") {
		t.Fatalf("enclaves %v", enclaves)
	}
	if got := keyNames(t, c, "tenant"); !slices.Equal(got, []string{"k1", "k2", "other"}) {
		t.Fatalf("keys %v", got)
	}
	if got := collect(t, c.ListKeys(ctx, "tenant", "k"), (*pb.KeyStatusResponse).GetName); !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("keys with prefix k: %v", got)
	}
	if err := c.CreateKey(ctx, "tenant", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteKey(ctx, "tenant", "gone"); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if got := keyNames(t, c, "tenant"); !slices.Equal(got, []string{"k1", "k2", "other"}) {
		t.Fatalf("keys after DeleteKey: %v", got)
	}
	if err := c.DeleteKey(ctx, "tenant", "gone"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("DeleteKey of a deleted key: %v", err)
	}
	if got := collect(t, c.ListPolicies(ctx, "tenant", ""), (*pb.PolicyStatusResponse).GetName); !slices.Equal(got, []string{"encrypt-k"}) {
		t.Fatalf("policies %v", got)
	}
	if got := collect(t, c.ListIdentities(ctx, "tenant", ""), (*pb.IdentityResponse).GetIdentity); !slices.Contains(got, user.Identity()) {
		t.Fatalf("identities %v", got)
	}

	// Backup, then restore onto a fresh node with the same HSM key.
	var snap bytes.Buffer
	if n, err := c.Backup(ctx, host, &snap); err != nil || n == 0 || int64(snap.Len()) != n {
		t.Fatalf("Backup = %d, %v", n, err)
	}
	fresh := e.start(hsmKey(1))
	fc := e.client(e.admin, fresh)
	kmsimtest.Eventually(t, "fresh node write readiness", func() error { return fc.Ready(ctx, fresh.Addr(), true) })
	if err := fc.Restore(ctx, fresh.Addr(), bytes.NewReader(snap.Bytes()), int64(snap.Len())); err != nil {
		t.Fatal(err)
	}
	if got := keyNames(t, fc, "tenant"); !slices.Equal(got, []string{"k1", "k2", "other"}) {
		t.Fatalf("restored keys %v", got)
	}
	if pt, err := fc.Decrypt(ctx, "tenant", "k1", ver, ct, []byte("ad")); err != nil || string(pt) != "canary" {
		t.Fatalf("Decrypt after restore = %q, %v", pt, err)
	}
	if got := collect(t, fc.ListIdentities(ctx, "tenant", ""), (*pb.IdentityResponse).GetIdentity); !slices.Contains(got, user.Identity()) {
		t.Fatalf("restored identities %v", got)
	}

	// The gzip form (as backup files are stored) restores too.
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(snap.Bytes())
	zw.Close()
	fresh2 := e.start(hsmKey(1))
	f2 := e.client(e.admin, fresh2)
	kmsimtest.Eventually(t, "second fresh node write readiness", func() error { return f2.Ready(ctx, fresh2.Addr(), true) })
	if err := f2.Restore(ctx, fresh2.Addr(), bytes.NewReader(zipped.Bytes()), int64(zipped.Len())); err != nil {
		t.Fatal(err)
	}
	if got := keyNames(t, f2, "tenant"); len(got) != 3 {
		t.Fatalf("keys after gzip restore %v", got)
	}

	// Another HSM key: refused, nothing changes.
	other := e.start(hsmKey(2))
	oc := e.client(e.admin, other)
	kmsimtest.Eventually(t, "other-HSM node write readiness", func() error { return oc.Ready(ctx, other.Addr(), true) })
	if err := oc.Restore(ctx, other.Addr(), bytes.NewReader(snap.Bytes()), int64(snap.Len())); !errors.Is(err, kms.ErrHSMMismatch) {
		t.Fatalf("Restore under another HSM key = %v, want ErrHSMMismatch", err)
	}
	if got := collect(t, oc.ListEnclaves(ctx, ""), (*pb.EnclaveStatusResponse).GetName); slices.Contains(got, "tenant") {
		t.Fatalf("refused restore changed state: enclaves %v", got)
	}
}

// membership returns the sorted node ids of host's own definition, or an error
// unless every listed node is up with a leader.
func healthy(ctx context.Context, c *kms.Client, host string, want int) error {
	st, err := c.ClusterStatus(ctx, host)
	if err != nil {
		return err
	}
	if len(st.NodesUp) != want || len(st.NodesDown) != 0 {
		return fmt.Errorf("%s sees %d up, %d down, want %d up", host, len(st.NodesUp), len(st.NodesDown), want)
	}
	for id, s := range st.NodesUp {
		if s.LeaderID < 0 || len(s.Nodes) != want {
			return fmt.Errorf("%s: node %d leader %d definition %v", host, id, s.LeaderID, s.Nodes)
		}
	}
	return c.Ready(ctx, host, true)
}

func TestClusterMembershipThroughClient(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	n0, n1, n2 := e.start(hsmKey(3)), e.start(hsmKey(3)), e.start(hsmKey(3))
	c := e.client(e.admin, n0, n1, n2) // load-balanced over all three
	kmsimtest.Eventually(t, "node 0 ready", func() error { return c.Ready(ctx, n0.Addr(), true) })
	if err := c.AddNode(ctx, n0.Addr(), n1.Host()); err != nil {
		t.Fatal(err)
	}
	kmsimtest.Eventually(t, "two nodes", func() error { return healthy(ctx, c, n0.Addr(), 2) })
	if err := c.AddNode(ctx, n0.Addr(), n2.Host()); err != nil {
		t.Fatal(err)
	}
	kmsimtest.Eventually(t, "three nodes", func() error {
		for _, hs := range c.ClusterStatusEach(ctx) {
			if hs.Err != nil {
				return hs.Err
			}
			if err := healthy(ctx, c, hs.Host, 3); err != nil {
				return err
			}
		}
		return nil
	})
	if err := c.AddNode(ctx, n0.Addr(), n1.Host()); !errors.Is(err, kms.ErrNodeAlreadyMember) {
		t.Fatalf("AddNode of a member = %v", err)
	}
	if err := c.CreateEnclave(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateKey(ctx, "e", "before"); err != nil {
		t.Fatal(err)
	}
	ct, ver, err := c.Encrypt(ctx, "e", "before", []byte("p"), nil)
	if err != nil {
		t.Fatal(err)
	}

	// Node 2 dies: writes fail, reads still work through the load balancer.
	id2 := n2.NodeID()
	n2.Close()
	kmsimtest.Eventually(t, "writes blocked", func() error {
		err := c.CreateKey(ctx, "e", "during")
		if errors.Is(err, kms.ErrNoWriteQuorum) || errors.Is(err, kms.ErrNoLeader) {
			return nil
		}
		return fmt.Errorf("CreateKey with a dead node = %v", err)
	})
	for range 5 {
		if pt, err := c.Decrypt(ctx, "e", "before", ver, ct, nil); err != nil || string(pt) != "p" {
			t.Fatalf("read with a dead node = %q, %v", pt, err)
		}
	}

	// Force-remove it on a healthy node: writes work again.
	if err := c.EditCluster(ctx, n0.Addr(), id2); err != nil {
		t.Fatal(err)
	}
	kmsimtest.Eventually(t, "writes after edit", func() error { return c.CreateKey(ctx, "e", "after") })
	if err := c.EditCluster(ctx, n0.Addr(), id2); !errors.Is(err, kms.ErrNodeNotFound) {
		t.Fatalf("second edit of the same id = %v", err)
	}

	// Remove node 1 with quorum; the last node cannot be removed.
	if err := c.RemoveNode(ctx, n0.Addr(), n1.Host(), false); err != nil {
		t.Fatal(err)
	}
	kmsimtest.Eventually(t, "one node", func() error { return healthy(ctx, c, n0.Addr(), 1) })
	if err := c.RemoveNode(ctx, n0.Addr(), n0.Host(), false); !errors.Is(err, kms.ErrLastNode) {
		t.Fatalf("removing the last node = %v, want ErrLastNode", err)
	}
	if err := c.EditCluster(ctx, n0.Addr(), n0.NodeID()); !errors.Is(err, kms.ErrLastNode) {
		t.Fatalf("editing out the last node = %v, want ErrLastNode", err)
	}
}
