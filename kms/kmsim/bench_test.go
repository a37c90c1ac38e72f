package kmsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// BenchmarkWriteThreeNodes measures a KEY:CREATE committed on all three
// nodes of a cluster (client → follower → leader → n-of-n replication),
// with 500, 2,000 and 10,000 keys already stored.
func BenchmarkWriteThreeNodes(b *testing.B) {
	for _, keys := range []int{500, 2000, 10000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			e := newBenchEnv(b)
			var nodes [3]*Node
			for i := range nodes {
				nodes[i] = e.start(filepath.Join(b.TempDir(), fmt.Sprint(i)))
			}
			if err := restore(e.admin, nodes[0], seedSnapshot(b, e, keys)); err != nil {
				b.Fatalf("seed %d keys: %v", keys, err)
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
		})
	}
}

// seedSnapshot returns a /v1/db snapshot (under e's HSM key) whose default
// enclave holds keys keys, so that a benchmark starts from a large state
// without committing each key.
func seedSnapshot(b *testing.B, e *env, keys int) []byte {
	b.Helper()
	now := time.Now().UTC()
	d := newData(now)
	for i := range keys {
		name := fmt.Sprintf("seed-%06d", i)
		secret := make([]byte, 32)
		secret[0], secret[1], secret[2] = byte(i), byte(i>>8), byte(i>>16)
		e := d.Enclaves[defaultEnclave]
		e.Keys = e.Keys.with(name, &key{Name: name, Type: keyTypeAES256, Latest: 1,
			Versions: []keyVersion{{Version: 1, Secret: secret, CreatedAt: now}}})
	}
	plain, err := json.Marshal(d)
	if err != nil {
		b.Fatal(err)
	}
	sealed, err := seal(deriveKey(e.hsmKey, labelBackupKey), plain, []byte(snapshotFormat))
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(snapshot{Format: snapshotFormat, HSMFingerprint: e.hsmKey.Fingerprint(), CreatedAt: now, Keys: keys, Enclaves: 1, Sealed: sealed})
	if err != nil {
		b.Fatal(err)
	}
	return body
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
