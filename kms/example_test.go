package kms_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
)

// Connect with an API key and a CA file, then ask every node for its own
// view of the cluster. Here the cluster is three simulator nodes on
// 127.0.0.1 (startCluster); against a real one, the API key comes from
// MINIO_KMS_API_KEY, the CA from the inventory's kms_ca_file, and
// Config.DialContext can reach port 7373 through an SSH connection.
func Example() {
	cl, err := startCluster()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.stop()

	key, err := kms.ParseAPIKey(cl.apiKey)
	if err != nil {
		fmt.Println(err) // never contains the key
		return
	}
	cas, err := kms.LoadCAFile(cl.caFile)
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := kms.New(kms.Config{Endpoints: cl.endpoints, APIKey: key, RootCAs: cas})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	// Views can differ (a partition, a node that just died): ask each node.
	for i, hs := range c.ClusterStatusEach(context.Background()) {
		name := fmt.Sprintf("km%d", i+1) // hs.Host is the endpoint, a random port here
		if hs.Err != nil {
			fmt.Println(name, "error:", hs.Err)
			continue
		}
		for _, id := range slices.Sorted(maps.Keys(hs.Status.NodesUp)) {
			n := hs.Status.NodesUp[id]
			fmt.Printf("%s sees node %d up: %s, leader %d, %d nodes in its definition\n",
				name, id, n.Role, n.LeaderID, len(n.Nodes))
		}
		for _, id := range slices.Sorted(maps.Keys(hs.Status.NodesDown)) {
			fmt.Printf("%s sees node %d down\n", name, id)
		}
	}
	// Output:
	// km1 sees node 0 up: Leader, leader 0, 3 nodes in its definition
	// km1 sees node 1 up: Follower, leader 0, 3 nodes in its definition
	// km1 sees node 2 up: Follower, leader 0, 3 nodes in its definition
	// km2 sees node 0 up: Leader, leader 0, 3 nodes in its definition
	// km2 sees node 1 up: Follower, leader 0, 3 nodes in its definition
	// km2 sees node 2 up: Follower, leader 0, 3 nodes in its definition
	// km3 sees node 0 up: Leader, leader 0, 3 nodes in its definition
	// km3 sees node 1 up: Follower, leader 0, 3 nodes in its definition
	// km3 sees node 2 up: Follower, leader 0, 3 nodes in its definition
}

// exampleCluster is a three-node simulator cluster with an admin API key
// and the CA file that verifies its certificates.
type exampleCluster struct {
	endpoints []string
	apiKey    string // "k1:..."
	caFile    string
	stop      func()
}

// startCluster starts three simulator nodes sharing one HSM key, joins
// them into one cluster (node 0 adds node 1, then node 2) and waits until
// every node sees all three up with a leader.
func startCluster() (cl *exampleCluster, err error) {
	dir, err := os.MkdirTemp("", "kms-example-")
	if err != nil {
		return nil, err
	}
	var nodes []*kmsim.Node
	stop := func() {
		for _, n := range nodes {
			n.Close()
		}
		os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	ca, err := kmsim.NewCA()
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		return nil, err
	}
	apiKey, identity, err := kmsim.NewAPIKey()
	if err != nil {
		return nil, err
	}
	var secret [32]byte
	copy(secret[:], "example HSM key, 32 bytes long!!")
	cert, err := ca.ServerCertificate("127.0.0.1")
	if err != nil {
		return nil, err
	}
	var endpoints []string
	for i := range 3 {
		n, err := kmsim.Start(context.Background(), kmsim.Config{
			Dir: filepath.Join(dir, fmt.Sprint("node", i)), HSMKey: hsm.New(secret),
			Address: "127.0.0.1:0", AdminIdentity: identity,
			Certificates: []tls.Certificate{cert}, PeerCAs: ca.Pool(),
			HeartbeatInterval: 50 * time.Millisecond,
		})
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
		endpoints = append(endpoints, n.Addr())
	}
	key, err := kms.ParseAPIKey(apiKey)
	if err != nil {
		return nil, err
	}
	c, err := kms.New(kms.Config{Endpoints: endpoints, APIKey: key, RootCAs: ca.Pool()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		// A join is a write: it needs a leader and every current member.
		if err := retry(ctx, func() error { return c.AddNode(ctx, endpoints[0], n.Host()) }); err != nil {
			return nil, fmt.Errorf("add %s: %w", n.Host(), err)
		}
	}
	err = retry(ctx, func() error {
		for _, hs := range c.ClusterStatusEach(ctx) {
			if hs.Err != nil {
				return hs.Err
			}
			if len(hs.Status.NodesUp) != 3 {
				return fmt.Errorf("%s sees %d nodes up", hs.Host, len(hs.Status.NodesUp))
			}
			for _, s := range hs.Status.NodesUp {
				if s.LeaderID < 0 || len(s.Nodes) != 3 {
					return fmt.Errorf("%s: no leader or a partial definition yet", hs.Host)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for three nodes: %w", err)
	}
	return &exampleCluster{endpoints: endpoints, apiKey: apiKey, caFile: caFile, stop: stop}, nil
}

// retry calls f every 25ms until it succeeds or ctx ends.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}
