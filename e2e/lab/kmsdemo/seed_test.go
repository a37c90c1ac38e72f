package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
)

// TestSeedKeys seeds a one-node simulator with keys, then asks for more:
// the second run creates only the missing ones, keeps the others, and the
// enclave lists exactly the asked-for names.
func TestSeedKeys(t *testing.T) {
	ca, err := kmsim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	apiKey, identity, err := kmsim.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var secret [32]byte
	copy(secret[:], "kmsdemo seed test HSM key bytes!")
	n, err := kmsim.Start(context.Background(), kmsim.Config{
		Dir: filepath.Join(t.TempDir(), "node"), HSMKey: hsm.New(secret), Address: "127.0.0.1:0",
		AdminIdentity: identity, Certificates: []tls.Certificate{cert}, PeerCAs: ca.Pool(),
		HeartbeatInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	key, err := kms.ParseAPIKey(apiKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kms.New(kms.Config{Endpoints: []string{n.Addr()}, APIKey: key, RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var out bytes.Buffer
	if err := seedKeys(ctx, c, "seed-", 30, 4, &out); err != nil {
		t.Fatalf("seedKeys 30: %v", err)
	}
	if !strings.Contains(out.String(), "30 created, 0 already there") {
		t.Errorf("first run's report: %q, want 30 created, 0 already there", out.String())
	}
	out.Reset()
	if err := seedKeys(ctx, c, "seed-", 45, 8, &out); err != nil {
		t.Fatalf("seedKeys 45: %v", err)
	}
	if !strings.Contains(out.String(), "15 created, 30 already there") {
		t.Errorf("second run's report: %q, want 15 created, 30 already there", out.String())
	}
	var names []string
	for k, err := range c.ListKeys(ctx, "", "seed-") {
		if err != nil {
			t.Fatalf("list keys: %v", err)
		}
		names = append(names, k.GetName())
	}
	if len(names) != 45 {
		t.Fatalf("the enclave lists %d seed- keys, want 45: %v", len(names), names)
	}
	for i, want := range []string{"seed-00001", "seed-00045"} {
		found := false
		for _, name := range names {
			found = found || name == want
		}
		if !found {
			t.Errorf("key %d %s not listed in %v", i, want, names)
		}
	}
}

// TestTransient: only the cluster's "not now" answers are tried again.
func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("create key: %w", kms.ErrNoWriteQuorum), true},
		{fmt.Errorf("create key: %w", kms.ErrNoLeader), true},
		{kms.ErrNotReady, true},
		{kms.ErrKeyExists, false},
		{kms.ErrAccessDenied, false},
		{kms.ErrUnreachable, false},
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
