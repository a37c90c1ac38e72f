package kmsim

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// BenchmarkWriteThreeNodes measures a KEY:CREATE committed on all three
// nodes of a cluster (client → follower → leader → n-of-n replication).
func BenchmarkWriteThreeNodes(b *testing.B) {
	e := newBenchEnv(b)
	var nodes [3]*Node
	for i := range nodes {
		nodes[i] = e.start(filepath.Join(b.TempDir(), fmt.Sprint(i)))
	}
	for i := 1; i < 3; i++ {
		if err := addNode(e, nodes[0], nodes[i].Host()); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := createKey(e, nodes[1], fmt.Sprintf("bench-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncrypt measures one KEY:ENCRYPT round trip on one node.
func BenchmarkEncrypt(b *testing.B) {
	e := newBenchEnv(b)
	n := e.start(filepath.Join(b.TempDir(), "n"))
	if err := createKey(e, n, "k"); err != nil {
		b.Fatal(err)
	}
	req := &pb.EncryptRequest{Name: "k", Plaintext: make([]byte, 32)}
	for b.Loop() {
		if err := send(e.admin, n.Addr(), "", wire.KeyEncrypt, req, &pb.EncryptResponse{}); err != nil {
			b.Fatal(err)
		}
	}
}

// newBenchEnv is newEnv with a keep-alive admin client, so that the figures
// are not dominated by TLS handshakes.
func newBenchEnv(b *testing.B) *env {
	e := newEnv(b)
	tr := e.admin.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = false
	b.Cleanup(tr.CloseIdleConnections)
	e.admin = &http.Client{Transport: tr}
	return e
}
