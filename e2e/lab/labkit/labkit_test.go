package labkit

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConverged(t *testing.T) {
	ok := []NodeView{
		{Endpoint: "kms1:7373", ID: 0, Role: "Leader", LeaderID: 0, Commit: 3, Up: 3},
		{Endpoint: "kms2:7373", ID: 1, Role: "Follower", LeaderID: 0, Commit: 3, Up: 3},
		{Endpoint: "kms3:7373", ID: 2, Role: "Follower", LeaderID: 0, Commit: 3, Up: 3},
	}
	if err := Converged(ok, 3); err != nil {
		t.Fatalf("converged views: %v", err)
	}
	cases := map[string]struct {
		change func(v []NodeView)
		want   string
	}{
		"one node down":     {func(v []NodeView) { v[2].Up, v[2].Down = 2, 1 }, "kms3:7373 sees 2 up and 1 down"},
		"no answer":         {func(v []NodeView) { v[1].Err = errors.New("refused") }, "kms2:7373: refused"},
		"leader disagrees":  {func(v []NodeView) { v[1].LeaderID = 1 }, "disagree on the leader"},
		"no leader":         {func(v []NodeView) { v[0].LeaderID, v[1].LeaderID, v[2].LeaderID = -1, -1, -1 }, "leader -1 is not"},
		"leader not leader": {func(v []NodeView) { v[0].Role = "Candidate" }, "leader 0 is not"},
		"commits differ":    {func(v []NodeView) { v[2].Commit = 2 }, "commit indexes differ"},
		"same ids":          {func(v []NodeView) { v[2].ID = 1 }, "not distinct"},
	}
	for name, c := range cases {
		v := append([]NodeView(nil), ok...)
		c.change(v)
		err := Converged(v, 3)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
}

func TestWriteCerts(t *testing.T) {
	dir := t.TempDir()
	if err := WriteCerts(dir, map[string][]string{"kms1": {"10.0.0.7"}, "kms2": nil}); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	for name, hosts := range map[string][]string{"kms1": {"kms1", "10.0.0.7", "127.0.0.1", "localhost"}, "kms2": {"kms2", "127.0.0.1"}} {
		keyFile := filepath.Join(dir, name+".key")
		if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key file mode: %v, %v", name, fi, err)
		}
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), keyFile); err != nil {
			t.Fatalf("%s: certificate and key do not match: %v", name, err)
		}
		block, _ := pem.Decode(mustRead(t, filepath.Join(dir, name+".crt")))
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: h}); err != nil {
				t.Errorf("%s's certificate for %s: %v", name, h, err)
			}
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "kms9"}); err == nil {
			t.Errorf("%s's certificate is valid for kms9", name)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
