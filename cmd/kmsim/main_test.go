package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms/kmsim"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func testHSM() hsm.Key {
	var s [32]byte
	copy(s[:], "kmsim command test sentinel key!")
	return hsm.New(s)
}

func TestIdentity(t *testing.T) {
	var out, errOut bytes.Buffer
	// The test vector of docs/protocol.md §2.4, from stdin.
	code := run(context.Background(), []string{"identity", "-"}, env(nil), strings.NewReader("k1:d7cY_5k8HbBGkZpoy2hGmvkxg83QDBXsA_nFXDfTk2E\n"), &out, &errOut)
	if code != 0 || out.String() != "h1:Rvxa7nj8zkL48CeDkN6LhpX-K7KK6uhIhpBOcTHNhWw\n" {
		t.Fatalf("identity -: %d %q %q", code, out.String(), errOut.String())
	}
	// The root API key derived from the HSM key in the environment.
	out.Reset()
	k := testHSM()
	code = run(context.Background(), []string{"identity", "--hsm"}, env(map[string]string{"MINIO_KMS_HSM_KEY": k.Text()}), nil, &out, &errOut)
	key, id, _ := kmsim.RootAPIKey(k)
	if code != 0 || out.String() != "API Key:  "+key+"\nIdentity: "+id+"\n" {
		t.Fatalf("identity --hsm: %d %q", code, out.String())
	}
	// A new pair.
	out.Reset()
	if code := run(context.Background(), []string{"identity", "--json"}, env(nil), nil, &out, &errOut); code != 0 || !regexp.MustCompile(`^\{"api_key":"k1:[A-Za-z0-9_-]{43}","identity":"h1:[A-Za-z0-9_-]{43}"\}\n$`).MatchString(out.String()) {
		t.Fatalf("identity --json: %d %q", code, out.String())
	}
	// A bad key is an error that does not echo the key.
	errOut.Reset()
	if code := run(context.Background(), []string{"identity", "-"}, env(nil), strings.NewReader("k1:SENTINELSECRET"), &out, &errOut); code != 1 || strings.Contains(errOut.String(), "SENTINELSECRET") {
		t.Fatalf("bad key: %d %q", code, errOut.String())
	}
}

func TestServerErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"server", t.TempDir(), "--config", "x.yaml"}, env(nil), nil, &out, &errOut); code != 1 || errOut.String() != "kms: no HSM provided\n" {
		t.Fatalf("no HSM: %d %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"server", t.TempDir()}, env(map[string]string{"MINIO_KMS_HSM_KEY": testHSM().Text()}), nil, &out, &errOut); code != 1 || errOut.String() != "kms: no TLS configuration provided\n" {
		t.Fatalf("no TLS: %d %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"server"}, env(nil), nil, &out, &errOut); code != 2 {
		t.Fatalf("no DIR: %d %q", code, errOut.String())
	}
}

func TestServer(t *testing.T) {
	dir := t.TempDir()
	ca, err := kmsim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"public.crt": certPEM, "private.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte("version: v1\ntls:\n  certs:\n    - key: private.key\n      cert: public.crt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int)
	k := testHSM()
	go func() {
		done <- run(ctx, []string{"server", filepath.Join(dir, "data"), "--config", config, "--address", "127.0.0.1:0"}, env(map[string]string{"MINIO_KMS_HSM_KEY": k.Text()}), nil, &out, &errOut)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "Server is up and running") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner: %q %q", out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	banner := out.String()
	key, _, _ := kmsim.RootAPIKey(k)
	if !strings.Contains(banner, "API Key     "+key) || !strings.Contains(banner, "Node 0: 127.0.0.1:") || !strings.Contains(banner, "Cluster ID") {
		t.Fatalf("banner:\n%s", banner)
	}
	endpoint := regexp.MustCompile(`Endpoint +(https://\S+)`).FindStringSubmatch(banner)
	if endpoint == nil {
		t.Fatalf("no endpoint in banner:\n%s", banner)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	res, err := c.Get(endpoint[1] + "/version")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("version: %v %v", res, err)
	}
	res.Body.Close()
	c.CloseIdleConnections()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

func TestServerVersion(t *testing.T) {
	if v, c := serverVersion("2024-03-26T17-52-38Z", "abc"); v != "2024-03-26T17-52-38Z" || c != "abc" {
		t.Fatalf("vendor format: %s %s", v, c)
	}
	if v, c := serverVersion("6e778c7-dirty", "6e778c7"); v != kmsim.DefaultVersion || c != "6e778c7" {
		t.Fatalf("git version: %s %s", v, c)
	}
	if v, c := serverVersion("v1.2.3", ""); v != kmsim.DefaultVersion || c != "v1.2.3" {
		t.Fatalf("git version without commit: %s %s", v, c)
	}
}
