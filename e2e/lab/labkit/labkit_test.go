package labkit

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

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
