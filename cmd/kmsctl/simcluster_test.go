package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
)

// simCluster is the Key Manager side of the command tests' labs: n
// simulator nodes on 127.0.0.1 sharing one CA (its certificate in caFile),
// one admin API key and one HSM key, joined into one cluster.
type simCluster struct {
	ca     *kmsim.CA
	caFile string
	admin  kms.APIKey
	nodes  []*kmsim.Node
}

// startSimCluster starts n nodes of the given version with hsmKey, writes
// the CA's certificate into dir, and joins the nodes into one converged
// cluster, every node ready for writes.
func startSimCluster(t testing.TB, dir string, n int, hsmKey hsm.Key, version string) *simCluster {
	t.Helper()
	ca, err := kmsim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	sc := &simCluster{ca: ca, caFile: caFile, admin: admin}
	// Every node heartbeats every other, all in this process: slower
	// heartbeats for a bigger cluster keep it from starving the machine.
	heartbeat := time.Duration(max(1, n/3)) * 50 * time.Millisecond
	var eps []string
	for range n {
		cert, err := ca.ServerCertificate("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		nd, err := kmsim.Start(context.Background(), kmsim.Config{Dir: filepath.Join(t.TempDir(), "data"), HSMKey: hsmKey,
			Address: "127.0.0.1:0", AdminIdentity: admin.Identity(), Certificates: []tls.Certificate{cert}, PeerCAs: ca.Pool(),
			HeartbeatInterval: heartbeat, Version: version})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		sc.nodes = append(sc.nodes, nd)
		eps = append(eps, nd.Host())
	}
	c, err := kms.New(kms.Config{Endpoints: eps, APIKey: admin, RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Each join waits for the grown cluster to converge: longer with more nodes.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(30+15*n)*time.Second)
	defer cancel()
	for c.Ready(ctx, eps[0], true) != nil && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if err := kms.Join(ctx, c, eps[0], eps[1:], 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// Converged views come before every follower is ready for writes.
	for _, ep := range eps {
		for c.Ready(ctx, ep, true) != nil {
			if ctx.Err() != nil {
				t.Fatalf("%s not ready for writes after the join", ep)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return sc
}
