package kms

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

func TestParseEndpoint(t *testing.T) {
	tests := map[string]string{
		"km1":                      "km1:7373",
		" https://km1:7374/ ":      "km1:7374",
		"http://10.1.2.3":          "10.1.2.3:7373",
		"[::1]":                    "[::1]:7373",
		"::1":                      "[::1]:7373",
		"[fe80::1]:9000":           "[fe80::1]:9000",
		"km1.example.com:7373":     "km1.example.com:7373",
		"https://km1.example.com/": "km1.example.com:7373",
	}
	for in, want := range tests {
		got, err := ParseEndpoint(in)
		if err != nil || got != want {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "https://", "km1/v1", "km1:", ":7373", "user@km1", "km1:7373:1"} {
		if got, err := ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) = %q, want error", bad, got)
		}
	}
}

func TestClusterStatusGoldenRequest(t *testing.T) {
	srv := newFakeKMS(t)
	srv.handle(wire.ClusterStatus, func(_ string, p []byte) (proto.Message, error) {
		return &pb.ClusterStatusResponse{
			NodesUp: map[uint32]*pb.ServerStatusResponse{
				0: {ID: 0, LeaderID: -1, Role: "Candidate", Commit: 7, Nodes: map[uint32]string{0: "a:7373", 1: "b:7373"},
					UpTime: durationpb.New(3e9)},
			},
			NodesDown: map[uint32]string{1: "b:7373"},
		}, nil
	})
	key := testKey(t)
	c := newTestClient(t, key, srv)
	st, err := c.ClusterStatus(context.Background(), srv.host())
	if err != nil {
		t.Fatal(err)
	}
	req, body := srv.last()
	if req.URL.Path != "/v1/kms" || req.Method != http.MethodPost {
		t.Errorf("request %s %s, want POST /v1/kms", req.Method, req.URL.Path)
	}
	if got := hex.EncodeToString(body); got != "000300000000" {
		t.Errorf("body %s, want 000300000000", got)
	}
	if req.ContentLength != 6 || req.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("Content-Length %d Content-Type %q", req.ContentLength, req.Header.Get("Content-Type"))
	}
	n0 := st.NodesUp[0]
	if n0 == nil || n0.LeaderID != -1 || n0.Commit != 7 || n0.Nodes[1] != "b:7373" || st.NodesDown[1] != "b:7373" || n0.UpTime.AsDuration() != 3e9 {
		t.Errorf("status decoded wrong: %v", st)
	}
	srv.mu.Lock()
	ident, protoMajor := srv.identity, srv.proto
	srv.mu.Unlock()
	if ident != key.Identity() {
		t.Errorf("server saw identity %q, want %q", ident, key.Identity())
	}
	if protoMajor != 2 {
		t.Errorf("HTTP/%d, want HTTP/2", protoMajor)
	}
}

func TestClusterStatusEach(t *testing.T) {
	a, b := newFakeKMS(t), newFakeKMS(t)
	for i, s := range []*fakeKMS{a, b} {
		id := uint32(i)
		s.handle(wire.ClusterStatus, func(string, []byte) (proto.Message, error) {
			return &pb.ClusterStatusResponse{NodesUp: map[uint32]*pb.ServerStatusResponse{id: {ID: id}}}, nil
		})
	}
	dead := deadAddr(t)
	c, err := New(Config{Endpoints: []string{a.host(), dead, b.host()}, APIKey: testKey(t), RootCAs: pool(a, b)})
	if err != nil {
		t.Fatal(err)
	}
	got := c.ClusterStatusEach(context.Background())
	if len(got) != 3 || got[0].Host != a.host() || got[1].Host != dead || got[2].Host != b.host() {
		t.Fatalf("hosts %v", got)
	}
	if got[0].Err != nil || got[0].Status.NodesUp[0] == nil || got[2].Err != nil || got[2].Status.NodesUp[1] == nil {
		t.Errorf("live hosts: %v / %v", got[0], got[2])
	}
	if !errors.Is(got[1].Err, ErrUnreachable) || got[1].Status != nil {
		t.Errorf("dead host: %v", got[1].Err)
	}
}

func TestEditCluster(t *testing.T) {
	srv := newFakeKMS(t)
	var got pb.EditClusterRequest
	srv.handle(wire.ClusterEdit, func(_ string, p []byte) (proto.Message, error) {
		return nil, proto.Unmarshal(p, &got)
	})
	c := newTestClient(t, testKey(t), srv)
	if err := c.EditCluster(context.Background(), "https://"+srv.host(), 2); err != nil {
		t.Fatal(err)
	}
	if len(got.RemoveIDs) != 1 || got.RemoveIDs[0] != 2 || got.Host != srv.host() {
		t.Fatalf("request %v, want remove [2] host %s", &got, srv.host())
	}
	_, body := srv.last()
	// Header, then field 1 (host) and field 2 packed [2] as in docs/protocol.md §4.4.
	if !bytes.HasPrefix(body, []byte{0x00, 0x04}) || !bytes.HasSuffix(body, []byte{0x12, 0x01, 0x02}) {
		t.Errorf("body % x", body)
	}
	if err := c.EditCluster(context.Background(), "", 2); !errors.Is(err, ErrNoHost) {
		t.Fatalf("EditCluster without host = %v, want ErrNoHost", err)
	}
}

func TestAddRemoveNode(t *testing.T) {
	srv := newFakeKMS(t)
	var add pb.AddClusterNodeRequest
	var rm pb.RemoveClusterNodeRequest
	srv.handle(wire.ClusterAddNode, func(_ string, p []byte) (proto.Message, error) { return nil, proto.Unmarshal(p, &add) })
	srv.handle(wire.ClusterRemoveNode, func(_ string, p []byte) (proto.Message, error) { return nil, proto.Unmarshal(p, &rm) })
	c := newTestClient(t, testKey(t), srv)
	ctx := context.Background()
	if err := c.AddNode(ctx, srv.host(), "https://10.1.2.3"); err != nil {
		t.Fatal(err)
	}
	if add.Host != "10.1.2.3:7373" {
		t.Errorf("ADDNODE host %q", add.Host)
	}
	if err := c.RemoveNode(ctx, srv.host(), "10.1.2.3:7373", true); err != nil {
		t.Fatal(err)
	}
	if rm.Host != "10.1.2.3:7373" || !rm.DeleteClusterOnHost {
		t.Errorf("REMOVENODE %v", &rm)
	}
	if err := c.AddNode(ctx, "", "x"); !errors.Is(err, ErrNoHost) {
		t.Errorf("AddNode without via host: %v", err)
	}
	if err := c.RemoveNode(ctx, "", "x", false); !errors.Is(err, ErrNoHost) {
		t.Errorf("RemoveNode without via host: %v", err)
	}
}

func TestErrorMappingByContentType(t *testing.T) {
	for _, ct := range []string{wire.ContentTypeProtobuf, wire.ContentTypeJSON, "text/plain; charset=utf-8", ""} {
		t.Run(ct, func(t *testing.T) {
			srv := newFakeKMS(t)
			srv.other = func(w http.ResponseWriter, r *http.Request) {
				wire.WriteError(w, ct, wire.ErrNoWriteQuorum.WithDetail("node 2 is down"))
			}
			srv.handle(wire.KeyCreate, func(string, []byte) (proto.Message, error) { return nil, wire.ErrKeyExists })
			c := newTestClient(t, testKey(t), srv)
			err := c.Ready(context.Background(), srv.host(), true)
			var e *Error
			if !errors.As(err, &e) || e.Status != 503 || e.Message != "write quorum not available: node 2 is down" || e.Host != srv.host() {
				t.Fatalf("Ready error = %#v", err)
			}
			if !errors.Is(err, ErrNoWriteQuorum) || errors.Is(err, ErrNoLeader) {
				t.Fatalf("sentinel mapping wrong for %v", err)
			}
			if !strings.Contains(err.Error(), srv.host()) || !strings.Contains(err.Error(), "503") {
				t.Errorf("error text %q lacks host or status", err)
			}
		})
	}
	srv := newFakeKMS(t)
	srv.handle(wire.KeyCreate, func(string, []byte) (proto.Message, error) { return nil, wire.ErrKeyExists })
	c := newTestClient(t, testKey(t), srv)
	err := c.CreateKey(context.Background(), "e", "k")
	if !errors.Is(err, ErrKeyExists) || errors.Is(err, ErrEnclaveExists) {
		t.Fatalf("CreateKey error = %v", err)
	}
}

// rawServer answers /v1/kms with a fixed response.
func rawServer(t *testing.T, status int, header map[string]string, body []byte, chunked bool) *fakeKMS {
	srv := newFakeKMS(t)
	h := func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(status)
		if chunked {
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			w.Write(body[len(body)/2:])
			return
		}
		w.Write(body)
	}
	srv.Config.Handler = http.HandlerFunc(h)
	return srv
}

func TestResponseProtocolViolations(t *testing.T) {
	good := "0003" + "00000000"
	tests := []struct {
		name    string
		body    string
		chunked bool
		want    error
	}{
		{"missing Content-Length", good, true, ErrProtocol},
		{"wrong command id", "0004 00000000", false, wire.ErrUnexpectedCommand},
		{"trailing bytes", good + "00", false, wire.ErrTrailingData},
		{"two frames", good + good, false, wire.ErrTrailingData},
		{"truncated frame", "0003 00000005 0a", false, wire.ErrTruncatedFrame},
		{"no frame", "", false, wire.ErrMissingFrame},
		{"garbage protobuf", "0003 00000002 ffff", false, wire.ErrInvalidMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := hex.DecodeString(strings.ReplaceAll(tt.body, " ", ""))
			srv := rawServer(t, 200, map[string]string{"Content-Type": wire.ContentTypeProtobuf}, body, tt.chunked)
			c := newTestClient(t, testKey(t), srv)
			_, err := c.ClusterStatus(context.Background(), srv.host())
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrProtocol) {
				t.Fatalf("ClusterStatus error = %v, want %v", err, tt.want)
			}
		})
	}
	// The well-formed control case passes.
	body, _ := hex.DecodeString(good)
	srv := rawServer(t, 200, nil, body, false)
	c := newTestClient(t, testKey(t), srv)
	if _, err := c.ClusterStatus(context.Background(), srv.host()); err != nil {
		t.Fatalf("well-formed response rejected: %v", err)
	}
}

func TestWriteAcceptsEmptyBody(t *testing.T) {
	srv := rawServer(t, 200, nil, nil, false)
	c := newTestClient(t, testKey(t), srv)
	if err := c.EditCluster(context.Background(), srv.host(), 1); err != nil {
		t.Fatalf("empty 200 to a write: %v", err)
	}
	if _, err := c.ClusterStatus(context.Background(), srv.host()); !errors.Is(err, wire.ErrMissingFrame) {
		t.Fatalf("empty 200 to a read = %v, want ErrMissingFrame", err)
	}
}

func TestLoadBalancedRetryOnlyTransportErrors(t *testing.T) {
	live := newFakeKMS(t)
	live.handle(wire.ClusterStatus, func(string, []byte) (proto.Message, error) { return &pb.ClusterStatusResponse{}, nil })
	dead := deadAddr(t)
	d := &countingDialer{}
	c, err := New(Config{Endpoints: []string{dead, live.host()}, APIKey: testKey(t), RootCAs: pool(live), DialContext: d.dial})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 20 {
		if _, err := c.ClusterStatus(context.Background(), ""); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := live.hits.Load(); n != 20 {
		t.Errorf("live host served %d requests, want 20", n)
	}
	// After its first failure the dead host is tried last, so never again.
	if n := d.count(dead); n > 1 {
		t.Errorf("dead host dialed %d times, want at most 1", n)
	}

	// HTTP errors are not retried on the next host.
	a, b := newFakeKMS(t), newFakeKMS(t)
	for _, s := range []*fakeKMS{a, b} {
		s.handle(wire.ClusterStatus, func(string, []byte) (proto.Message, error) { return nil, wire.ErrNoLeader })
	}
	c2, err := New(Config{Endpoints: []string{a.host(), b.host()}, APIKey: testKey(t), RootCAs: pool(a, b)})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.ClusterStatus(context.Background(), ""); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("ClusterStatus = %v, want ErrNoLeader", err)
	}
	if n := a.hits.Load() + b.hits.Load(); n != 1 {
		t.Fatalf("HTTP error was retried: %d requests", n)
	}
}

func TestAllHostsDownJoinsErrors(t *testing.T) {
	d1, d2 := deadAddr(t), deadAddr(t)
	d := &countingDialer{}
	c, err := New(Config{Endpoints: []string{d1, d2}, DialContext: d.dial})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Version(context.Background(), "")
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), d1) || !strings.Contains(err.Error(), d2) {
		t.Fatalf("error %v, want both hosts unreachable", err)
	}
	if d.count(d1) != 1 || d.count(d2) != 1 {
		t.Fatalf("dials %v, want one per host", d.dials)
	}
}

func TestNoRetryWhenContextCancelled(t *testing.T) {
	d1, d2 := deadAddr(t), deadAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		calls++
		cancel()
		return nil, errors.New("cancelled by test")
	}
	c, err := New(Config{Endpoints: []string{d1, d2}, DialContext: dial})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Version(ctx, ""); err == nil {
		t.Fatal("Version succeeded")
	}
	if calls != 1 {
		t.Fatalf("%d dials after cancellation, want 1", calls)
	}
}

func TestNamedHostNeverRetried(t *testing.T) {
	dead := deadAddr(t)
	live := newFakeKMS(t)
	d := &countingDialer{}
	c, err := New(Config{Endpoints: []string{dead, live.host()}, APIKey: testKey(t), RootCAs: pool(live), DialContext: d.dial})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EditCluster(context.Background(), dead, 3); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("EditCluster on dead host = %v, want ErrUnreachable", err)
	}
	if _, err := c.ClusterStatus(context.Background(), dead); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("ClusterStatus on dead host = %v", err)
	}
	if err := c.Restore(context.Background(), dead, strings.NewReader("snap"), 4); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Restore on dead host = %v", err)
	}
	if n := d.count(dead); n != 3 {
		t.Errorf("dead host dialed %d times, want 3 (one per call)", n)
	}
	if n := live.hits.Load(); n != 0 {
		t.Errorf("named-host calls reached another host %d times", n)
	}
}

func TestDialerHook(t *testing.T) {
	srv := newFakeKMS(t)
	srv.other = func(w http.ResponseWriter, r *http.Request) {
		b := []byte(`{"version":"2024-03-26T17-52-38Z","commit":"abc","api_version":"v1","host":"example.com:7373","fips140":true}`)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}
	// "example.com" is a SAN of the httptest certificate: the hook stands in
	// for an SSH tunnel, TLS still verifies the name.
	d := &countingDialer{remap: map[string]string{"example.com:7373": srv.host()}}
	c, err := New(Config{Endpoints: []string{"https://example.com"}, RootCAs: pool(srv), DialContext: d.dial})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Version(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "2024-03-26T17-52-38Z" || v.APIVersion != "v1" || !v.FIPS140 || v.Host != "example.com:7373" {
		t.Errorf("version %v", v)
	}
	if d.count("example.com:7373") != 1 {
		t.Errorf("dials %v, want one through the hook", d.dials)
	}
}

func TestServerCertificateVerified(t *testing.T) {
	srv := newFakeKMS(t)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the expected handshake failure
	srv.other = func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "0") }
	c, err := New(Config{Endpoints: []string{srv.host()}}) // system pool: httptest CA unknown
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Live(context.Background(), ""); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Live against an untrusted server = %v, want a certificate error", err)
	}
	if c.Insecure() {
		t.Fatal("Insecure() without the switch")
	}
	ci, err := New(Config{Endpoints: []string{srv.host()}, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !ci.Insecure() {
		t.Fatal("Insecure() = false with the switch")
	}
	if err := ci.Live(context.Background(), ""); err != nil {
		t.Fatalf("Live insecure: %v", err)
	}
}

func TestVersionProtobufAndContentLength(t *testing.T) {
	srv := newFakeKMS(t)
	want := &pb.VersionResponse{Version: "2025-01-01T00-00-00Z", APIVersion: "v1"}
	chunked := false
	srv.other = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/version" {
			t.Errorf("path %s", r.URL.Path)
		}
		b, _ := proto.Marshal(want)
		w.Header().Set("Content-Type", wire.ContentTypeProtobuf)
		if chunked {
			w.Write(b[:1])
			w.(http.Flusher).Flush()
			w.Write(b[1:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}
	c := newTestClient(t, APIKey{}, srv)
	got, err := c.Version(context.Background(), srv.host())
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("Version = %v, %v", got, err)
	}
	chunked = true
	if _, err := c.Version(context.Background(), srv.host()); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Version without Content-Length = %v, want ErrProtocol", err)
	}
}

func TestLiveReady(t *testing.T) {
	srv := newFakeKMS(t)
	var paths []string
	srv.other = func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.RequestURI())
		if r.URL.RawQuery == "write" {
			wire.WriteError(w, wire.ContentTypeJSON, wire.ErrNotReady.WithDetail("no leader"))
			return
		}
		w.Header().Set("Content-Length", "0")
	}
	c := newTestClient(t, APIKey{}, srv)
	ctx := context.Background()
	if err := c.Live(ctx, srv.host()); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx, srv.host(), false); err != nil {
		t.Fatal(err)
	}
	cert, err := c.LiveCertificate(ctx, srv.host())
	if err != nil || cert == nil || !cert.Equal(srv.Certificate()) {
		t.Fatalf("LiveCertificate = %v, %v; want the server's certificate", cert, err)
	}
	paths = paths[:len(paths)-1]
	if err := c.Ready(ctx, srv.host(), true); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Ready(write) = %v, want ErrNotReady", err)
	}
	if want := "/v1/health/live /v1/health/ready /v1/health/ready?write"; strings.Join(paths, " ") != want {
		t.Fatalf("paths %q, want %q", paths, want)
	}
}

func TestEnclaveAndKeyOperations(t *testing.T) {
	srv := newFakeKMS(t)
	var enclaves []string
	keys := map[string]bool{}
	srv.handle(wire.EnclaveCreate, func(enclave string, p []byte) (proto.Message, error) {
		var m pb.CreateEnclaveRequest
		if err := proto.Unmarshal(p, &m); err != nil || enclave != "" {
			return nil, wire.ErrBadRequest
		}
		enclaves = append(enclaves, m.Name)
		return nil, nil
	})
	srv.handle(wire.KeyCreate, func(enclave string, p []byte) (proto.Message, error) {
		var m pb.CreateKeyRequest
		if err := proto.Unmarshal(p, &m); err != nil {
			return nil, wire.ErrBadRequest
		}
		keys[enclave+"/"+m.Name] = true
		return nil, nil
	})
	srv.handle(wire.KeyEncrypt, func(enclave string, p []byte) (proto.Message, error) {
		var m pb.EncryptRequest
		if err := proto.Unmarshal(p, &m); err != nil || !keys[enclave+"/"+m.Name] {
			return nil, wire.ErrKeyNotFound
		}
		return &pb.EncryptResponse{Version: 1, Ciphertext: append([]byte("ct:"+string(m.AssociatedData)+":"), m.Plaintext...)}, nil
	})
	srv.handle(wire.KeyDecrypt, func(enclave string, p []byte) (proto.Message, error) {
		var m pb.DecryptRequest
		if err := proto.Unmarshal(p, &m); err != nil || m.Version != 1 {
			return nil, wire.ErrDecrypt
		}
		prefix := "ct:" + string(m.AssociatedData) + ":"
		if !bytes.HasPrefix(m.Ciphertext, []byte(prefix)) {
			return nil, wire.ErrDecrypt
		}
		return &pb.DecryptResponse{Plaintext: m.Ciphertext[len(prefix):]}, nil
	})
	srv.handle(wire.KeyGenerate, func(enclave string, p []byte) (proto.Message, error) {
		var m pb.GenerateKeyRequest
		if err := proto.Unmarshal(p, &m); err != nil {
			return nil, wire.ErrBadRequest
		}
		return &pb.GenerateKeyResponse{Version: 1, Plaintext: make([]byte, m.Length), Ciphertext: []byte("wrapped")}, nil
	})
	c := newTestClient(t, testKey(t), srv)
	ctx := context.Background()
	if err := c.CreateEnclave(ctx, "tenant-1"); err != nil {
		t.Fatal(err)
	}
	if req, _ := srv.last(); req.URL.Path != "/v1/kms" || len(enclaves) != 1 || enclaves[0] != "tenant-1" {
		t.Fatalf("CreateEnclave: path %s, enclaves %v", req.URL.Path, enclaves)
	}
	if err := c.CreateKey(ctx, "tenant-1", "k1"); err != nil {
		t.Fatal(err)
	}
	if req, _ := srv.last(); req.URL.Path != "/v1/kms/tenant-1" || !keys["tenant-1/k1"] {
		t.Fatalf("CreateKey: path %s keys %v", req.URL.Path, keys)
	}
	ct, ver, err := c.Encrypt(ctx, "tenant-1", "k1", []byte("secret"), []byte("ad"))
	if err != nil || ver != 1 || string(ct) != "ct:ad:secret" {
		t.Fatalf("Encrypt = %q %d %v", ct, ver, err)
	}
	pt, err := c.Decrypt(ctx, "tenant-1", "k1", ver, ct, []byte("ad"))
	if err != nil || string(pt) != "secret" {
		t.Fatalf("Decrypt = %q %v", pt, err)
	}
	if _, err := c.Decrypt(ctx, "tenant-1", "k1", ver, ct, []byte("other")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Decrypt with wrong AD = %v, want ErrDecrypt", err)
	}
	if _, err := c.Decrypt(ctx, "tenant-1", "k1", 0, ct, nil); err == nil {
		t.Fatal("Decrypt accepted version 0")
	}
	if _, _, err := c.Encrypt(ctx, "tenant-1", "missing", nil, nil); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Encrypt with a missing key = %v", err)
	}
	dk, err := c.GenerateKey(ctx, "tenant-1", "k1", 64, nil)
	if err != nil || dk.Version != 1 || len(dk.Plaintext) != 64 || string(dk.Ciphertext) != "wrapped" {
		t.Fatalf("GenerateKey = %+v %v", dk, err)
	}
	if _, err := c.GenerateKey(ctx, "tenant-1", "k1", 2000, nil); err == nil {
		t.Fatal("GenerateKey accepted length 2000")
	}
	if err := c.CreateKey(ctx, "a/b", "k"); err == nil {
		t.Fatal("CreateKey with enclave a/b accepted")
	}
	if err := c.CreateKey(ctx, "", "k0"); err != nil || !keys["/k0"] {
		t.Fatalf("CreateKey in the default enclave: %v", err)
	}
	if req, _ := srv.last(); req.URL.Path != "/v1/kms" {
		t.Fatalf("CreateKey without enclave went to %s", req.URL.Path)
	}
}

func TestPolicyAndIdentityOperations(t *testing.T) {
	srv := newFakeKMS(t)
	var policy pb.CreatePolicyRequest
	var assign pb.AssignPolicyRequest
	var ident pb.CreateIdentityRequest
	srv.handle(wire.PolicyCreate, func(_ string, p []byte) (proto.Message, error) { return nil, proto.Unmarshal(p, &policy) })
	srv.handle(wire.PolicyAssign, func(_ string, p []byte) (proto.Message, error) { return nil, proto.Unmarshal(p, &assign) })
	srv.handle(wire.IdentityCreate, func(_ string, p []byte) (proto.Message, error) { return nil, proto.Unmarshal(p, &ident) })
	c := newTestClient(t, testKey(t), srv)
	ctx := context.Background()
	req := &pb.CreatePolicyRequest{Name: "reader", Allow: map[string]*pb.RuleSet{"KEY:ENCRYPT": {Rules: map[string]*pb.Rule{"app-*": {}}}}}
	if err := c.CreatePolicy(ctx, "e", req); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&policy, req) {
		t.Fatalf("policy %v", &policy)
	}
	user := testKey(t).Identity()
	if err := c.CreateIdentity(ctx, "e", &pb.CreateIdentityRequest{Identity: user, Privilege: "User"}); err != nil {
		t.Fatal(err)
	}
	if ident.Identity != user || ident.Privilege != "User" {
		t.Fatalf("identity %v", &ident)
	}
	if err := c.AssignPolicy(ctx, "e", user, "reader"); err != nil {
		t.Fatal(err)
	}
	if assign.Identity != user || assign.Policy != "reader" {
		t.Fatalf("assign %v", &assign)
	}
	if err := c.CreateIdentity(ctx, "e", &pb.CreateIdentityRequest{Identity: "bob"}); err == nil {
		t.Fatal("CreateIdentity accepted a non-h1 identity")
	}
}

func TestListingPages(t *testing.T) {
	srv := newFakeKMS(t)
	names := []string{"a1", "a2", "a3", "a4", "a5", "b1"}
	var requests []*pb.ListRequest
	page := func(p []byte) ([]string, string, error) {
		var m pb.ListRequest
		if err := proto.Unmarshal(p, &m); err != nil {
			return nil, "", err
		}
		requests = append(requests, &m)
		var sel []string
		for _, n := range names {
			if strings.HasPrefix(n, m.Prefix) && n >= m.ContinueAt {
				sel = append(sel, n)
			}
		}
		if len(sel) > 2 {
			return sel[:2], sel[2], nil
		}
		return sel, "", nil
	}
	srv.handle(wire.EnclaveList, func(enclave string, p []byte) (proto.Message, error) {
		sel, next, err := page(p)
		r := &pb.ListEnclavesResponse{ContinueAt: next}
		for _, n := range sel {
			r.Enclaves = append(r.Enclaves, &pb.EnclaveStatusResponse{Name: n})
		}
		return r, err
	})
	srv.handle(wire.KeyList, func(enclave string, p []byte) (proto.Message, error) {
		sel, next, err := page(p)
		r := &pb.ListKeysResponse{ContinueAt: next}
		for _, n := range sel {
			r.Keys = append(r.Keys, &pb.KeyStatusResponse{Name: enclave + "/" + n, Type: "AES256"})
		}
		return r, err
	})
	srv.handle(wire.PolicyList, func(enclave string, p []byte) (proto.Message, error) {
		sel, next, err := page(p)
		r := &pb.ListPoliciesResponse{ContinueAt: next}
		for _, n := range sel {
			r.Policies = append(r.Policies, &pb.PolicyStatusResponse{Name: n})
		}
		return r, err
	})
	srv.handle(wire.IdentityList, func(enclave string, p []byte) (proto.Message, error) {
		sel, next, err := page(p)
		r := &pb.ListIdentitiesResponse{ContinueAt: next}
		for _, n := range sel {
			r.Identities = append(r.Identities, &pb.IdentityResponse{Identity: n})
		}
		return r, err
	})
	c := newTestClient(t, testKey(t), srv)
	ctx := context.Background()

	var got []string
	for e, err := range c.ListEnclaves(ctx, "a") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Name)
	}
	if strings.Join(got, ",") != "a1,a2,a3,a4,a5" {
		t.Fatalf("ListEnclaves = %v", got)
	}
	if len(requests) != 3 || requests[1].ContinueAt != "a3" || requests[2].ContinueAt != "a5" || requests[0].Prefix != "a" {
		t.Fatalf("requests %v", requests)
	}

	got = got[:0]
	for k, err := range c.ListKeys(ctx, "tenant", "") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, k.Name)
	}
	if len(got) != 6 || got[0] != "tenant/a1" || got[5] != "tenant/b1" {
		t.Fatalf("ListKeys = %v", got)
	}
	if req, _ := srv.last(); req.URL.Path != "/v1/kms/tenant" {
		t.Fatalf("ListKeys path %s", req.URL.Path)
	}

	// Stopping early sends no further requests.
	requests = nil
	for range c.ListPolicies(ctx, "tenant", "") {
		break
	}
	if len(requests) != 1 {
		t.Fatalf("early break sent %d requests", len(requests))
	}
	n := 0
	for _, err := range c.ListIdentities(ctx, "tenant", "b") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("ListIdentities b = %d items", n)
	}

	// A server that returns the same page forever is caught.
	srv.handle(wire.EnclaveList, func(string, []byte) (proto.Message, error) {
		return &pb.ListEnclavesResponse{Enclaves: []*pb.EnclaveStatusResponse{{Name: "x"}}, ContinueAt: "x"}, nil
	})
	var lastErr error
	count := 0
	for _, err := range c.ListEnclaves(ctx, "") {
		count++
		lastErr = err
		if count > 10 {
			break
		}
	}
	if !errors.Is(lastErr, ErrProtocol) {
		t.Fatalf("looping server: %d items, last error %v", count, lastErr)
	}

	// An error ends iteration with the error.
	srv.handle(wire.KeyList, func(string, []byte) (proto.Message, error) { return nil, wire.ErrEnclaveNotFound })
	for _, err := range c.ListKeys(ctx, "nope", "") {
		if !errors.Is(err, ErrEnclaveNotFound) {
			t.Fatalf("ListKeys error = %v", err)
		}
	}
}

func TestBackup(t *testing.T) {
	snapshot := bytes.Repeat([]byte("snapshot-bytes "), 1000)
	for _, compress := range []bool{false, true} {
		srv := newFakeKMS(t)
		srv.other = func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != "/v1/db" {
				t.Errorf("%s %s", r.Method, r.URL.Path)
			}
			if r.Header.Get("Accept-Encoding") != "gzip" {
				t.Errorf("Accept-Encoding %q", r.Header.Get("Accept-Encoding"))
			}
			if compress {
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				zw.Write(snapshot)
				zw.Close()
				return
			}
			w.Write(snapshot) // streamed, no Content-Length needed
		}
		c := newTestClient(t, testKey(t), srv)
		var out bytes.Buffer
		n, err := c.Backup(context.Background(), srv.host(), &out)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(snapshot)) || !bytes.Equal(out.Bytes(), snapshot) {
			t.Fatalf("compress=%v: got %d bytes, want the snapshot (%d)", compress, n, len(snapshot))
		}
	}
	srv := newFakeKMS(t)
	srv.other = func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, wire.ContentTypeJSON, wire.ErrAccessDenied)
	}
	c := newTestClient(t, testKey(t), srv)
	if _, err := c.Backup(context.Background(), "", io.Discard); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("Backup = %v, want ErrAccessDenied", err)
	}
}

func TestRestore(t *testing.T) {
	snapshot := bytes.Repeat([]byte{0, 1, 2, 0x1f}, 5000)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(snapshot)
	zw.Close()
	for _, tt := range []struct {
		name    string
		input   []byte
		wantLen int64
	}{
		{"raw", snapshot, int64(len(snapshot))},
		{"gzip file", zipped.Bytes(), int64(len(snapshot))}, // seekable: exact length
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeKMS(t)
			var got []byte
			var gotLen int64
			var ctype, cenc, method string
			srv.other = func(w http.ResponseWriter, r *http.Request) {
				method, ctype, cenc = r.Method, r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding")
				gotLen = r.ContentLength
				got, _ = io.ReadAll(r.Body)
				w.Header().Set("Content-Length", "0")
			}
			c := newTestClient(t, testKey(t), srv)
			if err := c.Restore(context.Background(), srv.host(), bytes.NewReader(tt.input), int64(len(tt.input))); err != nil {
				t.Fatal(err)
			}
			if method != http.MethodPut || ctype != "" || cenc != "" {
				t.Errorf("method %s Content-Type %q Content-Encoding %q", method, ctype, cenc)
			}
			if !bytes.Equal(got, snapshot) {
				t.Errorf("server got %d bytes, want the raw snapshot (%d)", len(got), len(snapshot))
			}
			if gotLen != tt.wantLen {
				t.Errorf("Content-Length %d, want %d", gotLen, tt.wantLen)
			}
		})
	}
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(context.Background(), "", bytes.NewReader(snapshot), 1); !errors.Is(err, ErrNoHost) {
		t.Fatalf("Restore without host = %v", err)
	}
	srv := newFakeKMS(t)
	srv.other = func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		wire.WriteError(w, wire.ContentTypeProtobuf, wire.ErrHSMMismatch.WithDetail("backup sealed under another HSM key"))
	}
	c = newTestClient(t, testKey(t), srv)
	if err := c.Restore(context.Background(), srv.host(), bytes.NewReader(snapshot), int64(len(snapshot))); !errors.Is(err, ErrHSMMismatch) {
		t.Fatalf("Restore = %v, want ErrHSMMismatch", err)
	}
}

func TestEnclaveNameEscaped(t *testing.T) {
	srv := newFakeKMS(t)
	var enclave string
	srv.handle(wire.KeyCreate, func(e string, _ []byte) (proto.Message, error) { enclave = e; return nil, nil })
	c := newTestClient(t, testKey(t), srv)
	if err := c.CreateKey(context.Background(), "my enclave%", "k"); err != nil {
		t.Fatal(err)
	}
	req, _ := srv.last()
	if enclave != "my enclave%" || req.URL.EscapedPath() != "/v1/kms/my%20enclave%25" {
		t.Fatalf("enclave %q, path %q", enclave, req.URL.EscapedPath())
	}
	for _, bad := range []string{".", "..", "a/b"} {
		if err := c.CreateKey(context.Background(), bad, "k"); err == nil {
			t.Errorf("CreateKey in enclave %q accepted", bad)
		}
	}
}

func TestDataKeyStringRedacted(t *testing.T) {
	dk := DataKey{Version: 3, Plaintext: []byte("PLAINTEXT-SENTINEL"), Ciphertext: []byte("c")}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(verb, dk); strings.Contains(out, "PLAINTEXT-SENTINEL") || strings.Contains(out, hex.EncodeToString(dk.Plaintext)) {
			t.Fatalf("%s printed the plaintext: %s", verb, out)
		}
	}
}
