package kmsim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "public.crt"), string(certPEM))
	writeFile(t, filepath.Join(dir, "private.key"), string(keyPEM))
	writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.CertPEM))

	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, `version: v1
admin:
  identity: h1:Rvxa7nj8zkL48CeDkN6LhpX-K7KK6uhIhpBOcTHNhWw
tls:
  certs:
    - key: private.key
      cert: public.crt
  ca: ca.pem
`)
	fc, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := fc.Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.AdminIdentity != "h1:Rvxa7nj8zkL48CeDkN6LhpX-K7KK6uhIhpBOcTHNhWw" || len(cfg.Certificates) != 1 || cfg.PeerCAs == nil {
		t.Fatalf("applied config: %+v", cfg)
	}

	tests := []struct{ name, yaml, want string }{
		{"unknown key", "version: v1\nadmin:\n  identity: h1:x\n  colour: blue\n", "line 4: field colour not found"},
		{"bad version", "version: v2\n", `version is "v2", want v1`},
		{"not yaml", "version: [\n", "bad.yaml"},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, "bad.yaml")
		writeFile(t, p, tt.yaml)
		if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) && tt.name != "bad version" {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	for yaml, want := range map[string]string{
		"version: v1\n":                    "kms: no TLS configuration provided",
		"version: v1\ntls:\n  certs: []\n": "kms: no server certificate provided",
	} {
		p := filepath.Join(dir, "tls.yaml")
		writeFile(t, p, yaml)
		fc, err := LoadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := fc.Apply(&Config{}); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}
