package kmsim

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// Creating a policy or an identity that exists replaces it, as the real
// server does.
func TestCreateOverwrites(t *testing.T) {
	e := newEnv(t)
	n := e.start(filepath.Join(t.TempDir(), "n"))
	rules := func(pattern string) map[string]*pb.RuleSet {
		return map[string]*pb.RuleSet{"KEY:STATUS": {Rules: map[string]*pb.Rule{pattern: {}}}}
	}
	for _, pattern := range []string{"a-*", "b-*"} {
		if err := send(e.admin, n.Addr(), "", wire.PolicyCreate, &pb.CreatePolicyRequest{Name: "p", Allow: rules(pattern)}, nil); err != nil {
			t.Fatalf("create policy p with %s: %v", pattern, err)
		}
	}
	var p pb.PolicyResponse
	if err := send(e.admin, n.Addr(), "", wire.PolicyGet, &pb.PolicyRequest{Name: "p"}, &p); err != nil {
		t.Fatal(err)
	}
	if rs := p.Allow["KEY:STATUS"]; rs == nil || len(rs.Rules) != 1 || rs.Rules["b-*"] == nil {
		t.Fatalf("policy after the second create: %v, want only b-*", p.Allow)
	}

	_, uid, _ := NewAPIKey()
	if err := send(e.admin, n.Addr(), "", wire.IdentityCreate, &pb.CreateIdentityRequest{Identity: uid, Tags: map[string]string{"v": "1"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := send(e.admin, n.Addr(), "", wire.PolicyAssign, &pb.AssignPolicyRequest{Identity: uid, Policy: "p"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := send(e.admin, n.Addr(), "", wire.IdentityCreate, &pb.CreateIdentityRequest{Identity: uid, Privilege: "Admin", Tags: map[string]string{"v": "2"}}, nil); err != nil {
		t.Fatalf("create an existing identity: %v", err)
	}
	var id pb.IdentityResponse
	if err := send(e.admin, n.Addr(), "", wire.IdentityStatus, &pb.IdentityRequest{Identity: uid}, &id); err != nil {
		t.Fatal(err)
	}
	if id.Privilege != privAdmin || id.Tags["v"] != "2" || id.Policy != "" {
		t.Fatalf("identity after the second create: privilege %d tags %v policy %q", id.Privilege, id.Tags, id.Policy)
	}
	// The admin identity is not an identity one can replace.
	if err := send(e.admin, n.Addr(), "", wire.IdentityCreate, &pb.CreateIdentityRequest{Identity: e.adminID}, nil); err == nil {
		t.Fatal("the admin identity was replaced")
	}
}

// A decrypt names the version the ciphertext was made with (0 is refused),
// and version numbers are never reused after a version is deleted.
func TestKeyVersionNumbers(t *testing.T) {
	e := newEnv(t)
	n := e.start(filepath.Join(t.TempDir(), "n"))
	if err := createKey(e, n, "k"); err != nil {
		t.Fatal(err)
	}
	var enc pb.EncryptResponse
	if err := send(e.admin, n.Addr(), "", wire.KeyEncrypt, &pb.EncryptRequest{Name: "k", Plaintext: []byte("x")}, &enc); err != nil {
		t.Fatal(err)
	}
	if err := send(e.admin, n.Addr(), "", wire.KeyDecrypt, &pb.DecryptRequest{Name: "k", Version: 0, Ciphertext: enc.Ciphertext}, nil); !isErr(err, wire.ErrBadRequest) {
		t.Fatalf("decrypt with version 0: %v, want 400 malformed request", err)
	}
	var dec pb.DecryptResponse
	if err := send(e.admin, n.Addr(), "", wire.KeyDecrypt, &pb.DecryptRequest{Name: "k", Version: enc.Version, Ciphertext: enc.Ciphertext}, &dec); err != nil || !bytes.Equal(dec.Plaintext, []byte("x")) {
		t.Fatalf("decrypt with version %d: %q %v", enc.Version, dec.Plaintext, err)
	}

	addVersion := func() uint32 {
		t.Helper()
		if err := send(e.admin, n.Addr(), "", wire.KeyCreate, &pb.CreateKeyRequest{Name: "k", AddVersion: true}, nil); err != nil {
			t.Fatal(err)
		}
		var ks pb.KeyStatusResponse
		if err := send(e.admin, n.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "k"}, &ks); err != nil {
			t.Fatal(err)
		}
		return ks.Version
	}
	if v := addVersion(); v != 2 {
		t.Fatalf("second version is %d", v)
	}
	// Delete the latest version (2): the next one is 3, not 2 again.
	if err := send(e.admin, n.Addr(), "", wire.KeyDelete, &pb.DeleteKeyRequest{Name: "k"}, nil); err != nil {
		t.Fatal(err)
	}
	if v := addVersion(); v != 3 {
		t.Fatalf("version after deleting version 2 is %d, want 3", v)
	}
	if err := send(e.admin, n.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "k", Version: 2}, nil); !isErr(err, wire.ErrKeyNotFound) {
		t.Fatalf("deleted version 2: %v", err)
	}
}
