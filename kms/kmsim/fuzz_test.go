package kmsim

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// FuzzExecute feeds arbitrary request bodies to the command handler of a
// live node, as its SysAdmin. It must never panic and must answer either
// frames or a 4xx error. The seed corpus is in testdata/fuzz/FuzzExecute.
func FuzzExecute(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 3, 0, 0, 0, 0},
		{0, 4, 0, 0, 0, 3, 0x12, 1, 2},
		{0, 0x68, 0, 0, 0, 2, 0x18, 0x64},
	} {
		f.Add(seed)
	}
	kc, _ := wire.AppendFrame(nil, wire.KeyCreate, &pb.CreateKeyRequest{Name: "k"})
	f.Add(kc)
	enc, _ := wire.AppendFrame(nil, wire.KeyEncrypt, &pb.EncryptRequest{Name: "k", Plaintext: []byte("x")})
	f.Add(enc)

	env := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		frames, aerr := decodeFrames(body)
		if aerr == nil {
			for _, fr := range frames {
				// These reach out to other hosts; not what this test is about.
				if fr.Command == wire.ClusterAddNode || fr.Command == wire.ClusterRemoveNode {
					return
				}
			}
		}
		out, aerr := env.execute(context.Background(), env.adminID, "", body, false)
		if aerr != nil {
			if aerr.Status < 400 || aerr.Status >= 500 {
				t.Fatalf("status %d %q for body %x", aerr.Status, aerr.Message, body)
			}
			return
		}
		if len(out) < wire.HeaderSize {
			t.Fatalf("no response frames for body %x", body)
		}
	})
}

// newFuzzEnv starts one node for the whole fuzz run.
func newFuzzEnv(f *testing.F) *Node {
	ca, err := NewCA()
	if err != nil {
		f.Fatal(err)
	}
	cert, err := ca.ServerCertificate("127.0.0.1")
	if err != nil {
		f.Fatal(err)
	}
	_, adminID, err := NewAPIKey()
	if err != nil {
		f.Fatal(err)
	}
	n, err := Start(context.Background(), Config{
		Dir: filepath.Join(f.TempDir(), "n"), HSMKey: testHSMKey(3), Address: "127.0.0.1:0",
		AdminIdentity: adminID, Certificates: []tls.Certificate{cert}, HeartbeatInterval: testHeartbeat,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	return n
}
