package kmsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// The byte examples of docs/protocol.md §4.4, decoded by the server.
func TestGoldenFrames(t *testing.T) {
	tests := []struct {
		hex  string
		cmd  wire.Command
		want proto.Message
		got  proto.Message
	}{
		{"000300000000", wire.ClusterStatus, &pb.ClusterStatusRequest{}, &pb.ClusterStatusRequest{}},
		{"000400000003120102", wire.ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{2}}, &pb.EditClusterRequest{}},
		{"000400000002" + "1002", wire.ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{2}}, &pb.EditClusterRequest{}}, // unpacked form
		{"00010000000f0a0d" + hex.EncodeToString([]byte("10.1.2.3:7373")), wire.ClusterAddNode, &pb.AddClusterNodeRequest{Host: "10.1.2.3:7373"}, &pb.AddClusterNodeRequest{}},
		{"0068000000021864", wire.EnclaveList, &pb.ListRequest{Limit: 100}, &pb.ListRequest{}},
	}
	for _, tt := range tests {
		body, err := hex.DecodeString(tt.hex)
		if err != nil {
			t.Fatal(err)
		}
		frames, aerr := decodeFrames(body)
		if aerr != nil {
			t.Fatalf("%s: %v", tt.hex, aerr)
		}
		if len(frames) != 1 || frames[0].Command != tt.cmd {
			t.Fatalf("%s: frames %v", tt.hex, frames)
		}
		if aerr := decode(frames[0].Payload, tt.got); aerr != nil {
			t.Fatalf("%s: %v", tt.hex, aerr)
		}
		if !proto.Equal(tt.got, tt.want) {
			t.Fatalf("%s: decoded %v, want %v", tt.hex, tt.got, tt.want)
		}
	}
}

// The ClusterStatus golden request answered by a live node, and LeaderID's zigzag encoding.
func TestGoldenStatusOverHTTP(t *testing.T) {
	e := newEnv(t)
	n := e.start(filepath.Join(t.TempDir(), "n"))
	code, ctype, out, err := post(e.admin, n.Addr(), "", []byte{0, 3, 0, 0, 0, 0}, "application/*")
	if err != nil || code != 200 {
		t.Fatalf("status: %d %s %v", code, out, err)
	}
	if ctype != wire.ContentTypeProtobuf || out[0] != 0 || out[1] != 3 {
		t.Fatalf("response frame %x (%s)", out[:6], ctype)
	}
	var st pb.ClusterStatusResponse
	dec := wire.NewDecoder(bytes.NewReader(out), 0)
	if err := dec.Decode(wire.ClusterStatus, &st); err != nil {
		t.Fatal(err)
	}
	self := st.NodesUp[0]
	if self == nil || self.Role != "Leader" || self.LeaderID != 0 || self.ID != 0 || self.Host != n.Host() || self.Nodes[0] != n.Host() || self.HeartbeatInterval.AsDuration() != testHeartbeat {
		t.Fatalf("single node status: %v", self)
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	e := newEnv(t)
	n := e.start(filepath.Join(t.TempDir(), "n"))
	keyCreate := func(payload []byte) []byte {
		b := []byte{0, 201, 0, 0, 0, 0}
		b[5] = byte(len(payload))
		return append(b, payload...)
	}
	tests := []struct {
		name string
		body []byte
		code int
		want wire.Error
	}{
		{"empty body", nil, 400, wire.ErrBadRequest},
		{"truncated header", []byte{0, 3, 0}, 400, wire.ErrBadRequest},
		{"truncated payload", []byte{0, 3, 0, 0, 0, 10, 1, 2}, 400, wire.ErrBadRequest},
		{"oversized frame", []byte{0, 3, 0xff, 0xff, 0xff, 0xff}, 413, wire.ErrTooLarge},
		{"unknown command", []byte{0x77, 0x77, 0, 0, 0, 0}, 400, wire.ErrUnknownCommand},
		{"garbage protobuf", keyCreate([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}), 400, wire.ErrBadRequest},
		{"wrong wire type", keyCreate([]byte{0x0d, 1, 2, 3, 4}), 400, wire.ErrBadRequest}, // field 1 as fixed32
		{"trailing garbage", append([]byte{0, 3, 0, 0, 0, 0}, 0xde, 0xad), 400, wire.ErrBadRequest},
		{"write in a batch", append(keyCreate(nil), 0, 3, 0, 0, 0, 0), 400, wire.ErrBadRequest},
		{"huge body", make([]byte, maxKMSBody+1), 413, wire.ErrTooLarge},
		{"too many frames", bytes.Repeat([]byte{0, 3, 0, 0, 0, 0}, maxFrames+1), 413, wire.ErrTooLarge},
	}
	for _, tt := range tests {
		for _, accept := range []string{wire.ContentTypeProtobuf, wire.ContentTypeJSON} {
			code, ctype, out, err := post(e.admin, n.Addr(), "", tt.body, accept)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			got := wire.DecodeError(code, ctype, out)
			if code != tt.code || !got.Matches(tt.want) || ctype != accept {
				t.Errorf("%s (%s): %d %s %q, want %d %q", tt.name, accept, code, ctype, got.Message, tt.code, tt.want.Message)
			}
			if accept == wire.ContentTypeJSON && !json.Valid(out) {
				t.Errorf("%s: JSON error body %q", tt.name, out)
			}
		}
	}
	// Still serving.
	if code, _, _, err := get(e.admin, n.Addr(), wire.PathVersion); err != nil || code != 200 {
		t.Fatalf("version after bad input: %d %v", code, err)
	}
	if err := createKey(e, n, "after"); err != nil {
		t.Fatalf("write after bad input: %v", err)
	}
}

func TestAccessControl(t *testing.T) {
	e := newEnv(t)
	n := e.start(filepath.Join(t.TempDir(), "n"))
	anon := e.client("")
	strangerKey, _, _ := NewAPIKey()
	stranger := e.client(strangerKey)
	for _, path := range []string{wire.PathVersion, wire.PathLive, wire.PathReady, wire.PathReady + "?write"} {
		if code, _, _, err := get(anon, n.Addr(), path); err != nil || code != 200 {
			t.Fatalf("%s without certificate: %d %v", path, code, err)
		}
	}
	code, body, hdr, err := get(anon, n.Addr(), wire.PathVersion)
	if err != nil || code != 200 || hdr.Get("Content-Length") == "" {
		t.Fatalf("version: %d %v %v", code, hdr, err)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	for k := range v {
		if !slices.Contains([]string{"version", "commit", "api_version", "host", "fips140"}, k) {
			t.Fatalf("version has key %q: %s", k, body)
		}
	}
	if v["api_version"] != "v1" || v["host"] != n.Host() {
		t.Fatalf("version: %s", body)
	}
	if code, _, _, err := post(anon, n.Addr(), "", nil, "application/json"); err != nil || code != 403 {
		t.Fatalf("anonymous garbage: %d %v", code, err)
	}
	for _, c := range []*http.Client{anon, stranger} {
		if _, err := status(c, n.Addr()); !isErr(err, wire.ErrAccessDenied) {
			t.Fatalf("status without privilege: %v", err)
		}
		if code, _, _, _ := get(c, n.Addr(), wire.PathDB); code != 403 {
			t.Fatalf("backup without privilege: %d", code)
		}
	}
	// An enclave Admin: everything inside its enclave, nothing outside, no cluster commands.
	adminKey, adminID, _ := NewAPIKey()
	if err := send(e.admin, n.Addr(), "", wire.EnclaveCreate, &pb.CreateEnclaveRequest{Name: "e1"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := send(e.admin, n.Addr(), "e1", wire.IdentityCreate, &pb.CreateIdentityRequest{Identity: adminID, Privilege: "Admin"}, nil); err != nil {
		t.Fatal(err)
	}
	ea := e.client(adminKey)
	if err := send(ea, n.Addr(), "e1", wire.KeyCreate, &pb.CreateKeyRequest{Name: "k"}, nil); err != nil {
		t.Fatalf("enclave admin in its enclave: %v", err)
	}
	if err := send(ea, n.Addr(), "default", wire.KeyCreate, &pb.CreateKeyRequest{Name: "k"}, nil); !isErr(err, wire.ErrAccessDenied) {
		t.Fatalf("enclave admin outside its enclave: %v", err)
	}
	if _, err := status(ea, n.Addr()); !isErr(err, wire.ErrAccessDenied) {
		t.Fatalf("enclave admin cluster status: %v", err)
	}
	if err := send(ea, n.Addr(), "e1", wire.IdentityCreate, &pb.CreateIdentityRequest{Identity: adminID[:len(adminID)-1] + "A", Privilege: "SysAdmin"}, nil); !isErr(err, wire.ErrAccessDenied) {
		t.Fatalf("enclave admin created a SysAdmin: %v", err)
	}
	if err := send(e.admin, n.Addr(), "nope", wire.KeyCreate, &pb.CreateKeyRequest{Name: "k"}, nil); !isErr(err, wire.ErrEnclaveNotFound) {
		t.Fatalf("unknown enclave: %v", err)
	}
}

func TestKeysAndListing(t *testing.T) {
	e := newEnv(t)
	n := e.start(filepath.Join(t.TempDir(), "n"))
	var names []string
	for i := range 25 {
		names = append(names, fmt.Sprintf("key-%02d", i))
		if err := createKey(e, n, names[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := createKey(e, n, "other"); err != nil {
		t.Fatal(err)
	}
	// Page through "key-" 10 at a time; ContinueAt is inclusive.
	var got []string
	next := ""
	for pages := 0; ; pages++ {
		var resp pb.ListKeysResponse
		if err := send(e.admin, n.Addr(), "default", wire.KeyList, &pb.ListRequest{Prefix: "key-", ContinueAt: next, Limit: 10}, &resp); err != nil {
			t.Fatal(err)
		}
		for _, k := range resp.Keys {
			got = append(got, k.Name)
			if k.Type != "AES256" || k.Version != 1 {
				t.Fatalf("key item %v", k)
			}
		}
		next = resp.ContinueAt
		if next == "" {
			if pages != 2 {
				t.Fatalf("%d pages", pages+1)
			}
			break
		}
	}
	if !slices.Equal(got, names) {
		t.Fatalf("listed %v", got)
	}
	var resp pb.ListKeysResponse
	if err := send(e.admin, n.Addr(), "", wire.KeyList, &pb.ListRequest{Prefix: "key-", ContinueAt: "other"}, &resp); err != nil || len(resp.Keys) != 0 {
		t.Fatalf("ContinueAt outside prefix: %v %v", resp.Keys, err)
	}

	// Versions, encrypt/decrypt, data keys, MAC.
	if err := send(e.admin, n.Addr(), "", wire.KeyCreate, &pb.CreateKeyRequest{Name: "key-00", AddVersion: true}, nil); err != nil {
		t.Fatal(err)
	}
	var gen pb.GenerateKeyResponse
	if err := send(e.admin, n.Addr(), "", wire.KeyGenerate, &pb.GenerateKeyRequest{Name: "key-00", Length: 48}, &gen); err != nil {
		t.Fatal(err)
	}
	if gen.Version != 2 || len(gen.Plaintext) != 48 {
		t.Fatalf("generate: version %d, %d bytes", gen.Version, len(gen.Plaintext))
	}
	var dec pb.DecryptResponse
	if err := send(e.admin, n.Addr(), "", wire.KeyDecrypt, &pb.DecryptRequest{Name: "key-00", Version: 2, Ciphertext: gen.Ciphertext}, &dec); err != nil || !bytes.Equal(dec.Plaintext, gen.Plaintext) {
		t.Fatalf("decrypt data key: %v", err)
	}
	if err := send(e.admin, n.Addr(), "", wire.KeyDecrypt, &pb.DecryptRequest{Name: "key-00", Version: 1, Ciphertext: gen.Ciphertext}, &dec); !isErr(err, wire.ErrDecrypt) {
		t.Fatalf("decrypt with the wrong version: %v", err)
	}
	tampered := slices.Clone(gen.Ciphertext)
	tampered[len(tampered)-1] ^= 1
	if err := send(e.admin, n.Addr(), "", wire.KeyDecrypt, &pb.DecryptRequest{Name: "key-00", Version: 2, Ciphertext: tampered}, &dec); !isErr(err, wire.ErrDecrypt) {
		t.Fatalf("decrypt tampered: %v", err)
	}
	var mac1, mac2 pb.MACResponse
	send(e.admin, n.Addr(), "", wire.KeyMAC, &pb.MACRequest{Name: "key-01", Message: []byte("m")}, &mac1)
	send(e.admin, n.Addr(), "", wire.KeyMAC, &pb.MACRequest{Name: "key-01", Message: []byte("m")}, &mac2)
	if len(mac1.MAC) != 32 || !bytes.Equal(mac1.MAC, mac2.MAC) {
		t.Fatalf("MAC %x %x", mac1.MAC, mac2.MAC)
	}
	if err := send(e.admin, n.Addr(), "", wire.KeyDelete, &pb.DeleteKeyRequest{Name: "key-01"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := send(e.admin, n.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "key-01"}, nil); !isErr(err, wire.ErrKeyNotFound) {
		t.Fatalf("deleted key: %v", err)
	}

	// Batched reads: one response frame per request frame, same ids.
	var body []byte
	for _, name := range []string{"key-02", "key-03", "key-04"} {
		body, _ = wire.AppendFrame(body, wire.KeyStatus, &pb.KeyStatusRequest{Name: name})
	}
	code, _, out, err := post(e.admin, n.Addr(), "", body, "application/*")
	if err != nil || code != 200 {
		t.Fatalf("batch: %d %v", code, err)
	}
	d := wire.NewDecoder(bytes.NewReader(out), 0)
	for _, name := range []string{"key-02", "key-03", "key-04"} {
		var ks pb.KeyStatusResponse
		if err := d.Decode(wire.KeyStatus, &ks); err != nil || ks.Name != name {
			t.Fatalf("batch item %s: %v %v", name, &ks, err)
		}
	}
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
	// Identities and policies list; enclaves status.
	_, uid, _ := NewAPIKey()
	if err := send(e.admin, n.Addr(), "", wire.IdentityCreate, &pb.CreateIdentityRequest{Identity: uid}, nil); err != nil {
		t.Fatal(err)
	}
	if err := send(e.admin, n.Addr(), "", wire.IdentityCreate, &pb.CreateIdentityRequest{Identity: "h1:nope"}, nil); !isErr(err, wire.ErrBadRequest) {
		t.Fatalf("invalid identity: %v", err)
	}
	var ids pb.ListIdentitiesResponse
	if err := send(e.admin, n.Addr(), "", wire.IdentityList, &pb.ListRequest{}, &ids); err != nil || len(ids.Identities) != 1 || ids.Identities[0].Identity != uid || ids.Identities[0].Privilege != privUser {
		t.Fatalf("identities: %v %v", ids.Identities, err)
	}
	if err := send(e.admin, n.Addr(), "", wire.PolicyCreate, &pb.CreatePolicyRequest{Name: "p", Allow: map[string]*pb.RuleSet{"KEY:FROB": {}}}, nil); !isErr(err, wire.ErrBadRequest) {
		t.Fatalf("policy for unknown command: %v", err)
	}
	var es pb.EnclaveStatusResponse
	if err := send(e.admin, n.Addr(), "", wire.EnclaveStatus, &pb.EnclaveStatusRequest{Name: "default"}, &es); err != nil || es.Name != "default" {
		t.Fatalf("enclave status: %v %v", &es, err)
	}
	if err := send(e.admin, n.Addr(), "", wire.EnclaveCreate, &pb.CreateEnclaveRequest{Name: "default"}, nil); !isErr(err, wire.ErrEnclaveExists) {
		t.Fatalf("duplicate enclave: %v", err)
	}
}

func TestPersistenceAndHSMKey(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(t.TempDir(), "n")
	n := e.start(dir)
	if err := createKey(e, n, "kept"); err != nil {
		t.Fatal(err)
	}
	clusterID, addr := n.ClusterID(), n.Addr()
	if _, err := e.tryStart(dir, "", e.hsmKey); err == nil || !strings.Contains(err.Error(), "in use by another minkms process") {
		t.Fatalf("second node on the same DIR: %v", err)
	}
	n.Close()
	if _, err := e.tryStart(dir, "", testHSMKey(7)); err == nil || !strings.Contains(err.Error(), "different HSM key") {
		t.Fatalf("start with another HSM key: %v", err)
	}
	n = e.startWith(dir, addr, e.hsmKey)
	if n.ClusterID() != clusterID {
		t.Fatal("cluster ID changed across a restart")
	}
	if err := send(e.admin, n.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "kept"}, nil); err != nil {
		t.Fatalf("key lost across a restart: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(context.Background(), Config{Dir: t.TempDir()}); err == nil || err.Error() != "kms: no HSM provided" {
		t.Fatalf("no HSM: %v", err)
	}
	if _, err := Start(context.Background(), Config{Dir: t.TempDir(), HSMKey: testHSMKey(1)}); err == nil || err.Error() != "kms: no server certificate provided" {
		t.Fatalf("no certificate: %v", err)
	}
}

func TestRootAPIKeyWithoutAdminIdentity(t *testing.T) {
	e := newEnv(t)
	cert, err := e.ca.ServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(context.Background(), Config{Dir: t.TempDir(), HSMKey: e.hsmKey, Address: "127.0.0.1:0", Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	key, _, _ := RootAPIKey(e.hsmKey)
	if n.RootAPIKey() != key {
		t.Fatal("root API key is not the one derived from the HSM key")
	}
	var banner bytes.Buffer
	n.Banner(&banner)
	if !strings.Contains(banner.String(), "API Key     "+key) || !strings.Contains(banner.String(), "Node 0: "+n.Host()) {
		t.Fatalf("banner:\n%s", banner.String())
	}
	if _, err := status(e.client(key), n.Addr()); err != nil {
		t.Fatalf("root API key is not SysAdmin: %v", err)
	}
	// With an admin identity, the banner has no API key.
	m := e.start(t.TempDir())
	banner.Reset()
	m.Banner(&banner)
	if strings.Contains(banner.String(), "API Key") {
		t.Fatalf("banner shows an API key with admin.identity set:\n%s", banner.String())
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://km1:7373/": "km1:7373", "km1": "km1:7373", " 10.0.0.1 ": "10.0.0.1:7373",
		"[::1]": "[::1]:7373", "[::1]:8000": "[::1]:8000", "": "",
	} {
		if got := normalizeHost(in); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}
