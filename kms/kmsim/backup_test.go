package kmsim

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// backup fetches /v1/db with gzip accepted and returns the raw (gzip) body.
func backup(t *testing.T, e *env, n *Node) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+n.Addr()+wire.PathDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add("Accept", "application/*")
	req.Header.Add("Accept", "gzip")
	req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport leaves the body compressed
	res, err := e.admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("backup: %d %s %v", res.StatusCode, body, err)
	}
	if res.Header.Get("Content-Encoding") != "gzip" || res.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("backup headers: %v (body %d bytes)", res.Header, len(body))
	}
	return body
}

func restore(c *http.Client, n *Node, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, "https://"+n.Addr()+wire.PathDB, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", wire.ContentTypeProtobuf)
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return wire.ReadError(res)
	}
	return nil
}

func TestBackupRestore(t *testing.T) {
	e := newEnv(t)
	a := e.start(filepath.Join(t.TempDir(), "a"))
	b := e.start(filepath.Join(t.TempDir(), "b"))
	if err := addNode(e, a, b.Host()); err != nil {
		t.Fatal(err)
	}
	kmsimtest.Eventually(t, "two nodes", func() error { return converged(e, map[uint32]*Node{0: a, 1: b}) })

	userKey, userID, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(send(e.admin, a.Addr(), "", wire.EnclaveCreate, &pb.CreateEnclaveRequest{Name: "team"}, nil))
	must(send(e.admin, b.Addr(), "team", wire.KeyCreate, &pb.CreateKeyRequest{Name: "team-key", Type: "ChaCha20"}, nil))
	must(send(e.admin, a.Addr(), "team", wire.PolicyCreate, &pb.CreatePolicyRequest{Name: "enc-only", Allow: map[string]*pb.RuleSet{
		"KEY:ENCRYPT": {Rules: map[string]*pb.Rule{"team-*": {}}},
		"KEY:DECRYPT": {Rules: map[string]*pb.Rule{"team-*": {}}},
	}}, nil))
	must(send(e.admin, a.Addr(), "team", wire.IdentityCreate, &pb.CreateIdentityRequest{Identity: userID, Privilege: "User"}, nil))
	must(send(e.admin, a.Addr(), "team", wire.PolicyAssign, &pb.AssignPolicyRequest{Identity: userID, Policy: "enc-only"}, nil))
	must(createKey(e, a, "default-key"))
	var enc pb.EncryptResponse
	must(send(e.client(userKey), b.Addr(), "team", wire.KeyEncrypt, &pb.EncryptRequest{Name: "team-key", Plaintext: []byte("canary"), AssociatedData: []byte("ad")}, &enc))

	snap := backup(t, e, b)
	zr, err := gzip.NewReader(bytes.NewReader(snap))
	must(err)
	raw, err := io.ReadAll(zr)
	must(err)
	if bytes.Contains(raw, []byte("team-key")) || bytes.Contains(raw, []byte(userID)) {
		t.Fatal("snapshot holds names in plaintext; want everything sealed")
	}

	// Restore onto a multi-node cluster: refused.
	if err := restore(e.admin, a, snap); !isErr(err, wire.ErrRestoreNotSingle) {
		t.Fatalf("restore onto a cluster: %v", err)
	}

	// Another HSM key: refused, nothing changes.
	other := e.startWith(filepath.Join(t.TempDir(), "other"), "", testHSMKey(42))
	if err := restore(e.admin, other, snap); !isErr(err, wire.ErrHSMMismatch) {
		t.Fatalf("restore with another HSM key: %v", err)
	}
	var list pb.ListEnclavesResponse
	must(send(e.admin, other.Addr(), "", wire.EnclaveList, &pb.ListRequest{}, &list))
	if len(list.Enclaves) != 1 || list.Enclaves[0].Name != defaultEnclave {
		t.Fatalf("refused restore changed the node: %v", list.Enclaves)
	}
	if st, err := status(e.admin, other.Addr()); err != nil || st.NodesUp[0].Commit != 0 {
		t.Fatalf("refused restore changed the commit: %v %v", st, err)
	}
	// Only SysAdmin may back up or restore.
	if err := restore(e.client(userKey), other, snap); !isErr(err, wire.ErrAccessDenied) {
		t.Fatalf("restore by a user: %v", err)
	}
	if err := restore(e.admin, other, []byte("not a snapshot")); !isErr(err, wire.ErrInvalidBackup) {
		t.Fatalf("restore of garbage: %v", err)
	}

	// A fresh node with the same HSM key: everything is back (gzip and raw bodies).
	for name, body := range map[string][]byte{"gzip": snap, "raw": raw} {
		t.Run(name, func(t *testing.T) {
			f := e.start(filepath.Join(t.TempDir(), "fresh"))
			must(restore(e.admin, f, body))
			var encl pb.ListEnclavesResponse
			must(send(e.admin, f.Addr(), "", wire.EnclaveList, &pb.ListRequest{}, &encl))
			if len(encl.Enclaves) != 2 || encl.Enclaves[0].Name != "default" || encl.Enclaves[1].Name != "team" {
				t.Fatalf("enclaves after restore: %v", encl.Enclaves)
			}
			var keys pb.ListKeysResponse
			must(send(e.admin, f.Addr(), "team", wire.KeyList, &pb.ListRequest{}, &keys))
			if len(keys.Keys) != 1 || keys.Keys[0].Name != "team-key" || keys.Keys[0].Type != "ChaCha20" {
				t.Fatalf("keys after restore: %v", keys.Keys)
			}
			must(send(e.admin, f.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "default-key"}, &pb.KeyStatusResponse{}))
			var pol pb.PolicyResponse
			must(send(e.admin, f.Addr(), "team", wire.PolicyGet, &pb.PolicyRequest{Name: "enc-only"}, &pol))
			if len(pol.Allow) != 2 || pol.Allow["KEY:DECRYPT"].Rules["team-*"] == nil {
				t.Fatalf("policy after restore: %v", pol.Allow)
			}
			var id pb.IdentityResponse
			must(send(e.admin, f.Addr(), "team", wire.IdentityStatus, &pb.IdentityRequest{Identity: userID}, &id))
			if id.Privilege != privUser || id.Policy != "enc-only" {
				t.Fatalf("identity after restore: %v", &id)
			}
			// The restored user decrypts the ciphertext made before the backup.
			var dec pb.DecryptResponse
			must(send(e.client(userKey), f.Addr(), "team", wire.KeyDecrypt, &pb.DecryptRequest{Name: "team-key", Version: enc.Version, Ciphertext: enc.Ciphertext, AssociatedData: []byte("ad")}, &dec))
			if string(dec.Plaintext) != "canary" {
				t.Fatalf("decrypted %q", dec.Plaintext)
			}
			// Its policy still binds it.
			if err := send(e.client(userKey), f.Addr(), "team", wire.KeyCreate, &pb.CreateKeyRequest{Name: "team-x"}, nil); !isErr(err, wire.ErrAccessDenied) {
				t.Fatalf("user created a key: %v", err)
			}
		})
	}
}

// A request body that sends nothing for BodyStallTimeout is answered 408,
// for a restore and for a command, and leaves no spooled file behind.
func TestStalledBodyTimesOut(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(t.TempDir(), "n")
	n := e.startConfig(dir, func(c *Config) { c.BodyStallTimeout = 300 * time.Millisecond })
	for _, tc := range []struct{ method, path string }{{http.MethodPut, wire.PathDB}, {http.MethodPost, wire.PathKMS}} {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, err := http.NewRequestWithContext(ctx, tc.method, "https://"+n.Addr()+tc.path, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 1 << 20
		go pw.Write([]byte("{\"format\":")) // then nothing
		stop := time.AfterFunc(5*time.Second, func() { pw.CloseWithError(errors.New("test over")) })
		start := time.Now()
		res, err := e.admin.Do(req)
		stop.Stop()
		cancel()
		pw.Close()
		if err != nil {
			t.Fatalf("%s %s: %v after %s", tc.method, tc.path, err, time.Since(start))
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestTimeout || time.Since(start) > 10*time.Second {
			t.Fatalf("%s %s with a stalled body: %d after %s, want 408", tc.method, tc.path, res.StatusCode, time.Since(start))
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "restore-*")); len(left) != 0 {
		t.Fatalf("spooled files left: %v", left)
	}
}

// A restore is spooled to disk: a gzip body that inflates past the cap is
// refused without inflating it in memory, and so is garbage under the cap.
func TestRestoreBombBounded(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(t.TempDir(), "n")
	n := e.startConfig(dir, func(c *Config) { c.MaxSnapshotSize = 4 << 20 })
	bomb := func(size int) []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(make([]byte, size))
		zw.Close()
		return b.Bytes()
	}
	big, small := bomb(128<<20), bomb(3<<20) // ~130 KB and ~3 KB compressed
	for _, tc := range []struct {
		name string
		body []byte
		want wire.Error
	}{{"past the cap", big, wire.ErrTooLarge}, {"garbage under the cap", small, wire.ErrInvalidBackup}} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := restore(e.admin, n, tc.body)
		runtime.ReadMemStats(&after)
		if !isErr(err, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
			t.Fatalf("%s: the restore allocated %d MiB", tc.name, alloc>>20)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "restore-*")); len(left) != 0 {
		t.Fatalf("spooled files left: %v", left)
	}
}
