package kmsim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// FileConfig is the server's YAML configuration file (vendor format v1):
//
//	version: v1
//	admin:
//	  identity: h1:...          # optional; without it the root API key is generated and printed
//	tls:
//	  certs:
//	    - key: /etc/minkms/certs/private.key
//	      cert: /etc/minkms/certs/public.crt
//	  ca: /etc/minkms/certs/CAs # optional: PEM file or directory; verifies peers' server certificates
//
// Unknown keys are rejected. Relative paths are relative to the file.
type FileConfig struct {
	Version string `yaml:"version"`
	Admin   struct {
		Identity string `yaml:"identity"`
	} `yaml:"admin"`
	TLS *struct {
		Certs []struct {
			Key  string `yaml:"key"`
			Cert string `yaml:"cert"`
		} `yaml:"certs"`
		CA string `yaml:"ca"`
	} `yaml:"tls"`

	dir string
}

// LoadConfig reads and strictly decodes a configuration file. Errors name
// the file and, where yaml knows it, the line.
func LoadConfig(path string) (*FileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kms: read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var fc FileConfig
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("kms: config %s: %s", path, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n ", ""))
	}
	if fc.Version != "v1" {
		return nil, fmt.Errorf("kms: config %s: version is %q, want v1", path, fc.Version)
	}
	fc.dir = filepath.Dir(path)
	return &fc, nil
}

func (fc *FileConfig) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(fc.dir, p)
}

// Apply sets cfg's admin identity, certificates and peer CAs from the file.
func (fc *FileConfig) Apply(cfg *Config) error {
	cfg.AdminIdentity = strings.TrimSpace(fc.Admin.Identity)
	if fc.TLS == nil {
		return errors.New("kms: no TLS configuration provided")
	}
	if len(fc.TLS.Certs) == 0 {
		return errors.New("kms: no server certificate provided")
	}
	for i, c := range fc.TLS.Certs {
		if c.Key == "" || c.Cert == "" {
			return fmt.Errorf("kms: config: tls.certs[%d] needs both key and cert", i)
		}
		cert, err := tls.LoadX509KeyPair(fc.path(c.Cert), fc.path(c.Key))
		if err != nil {
			return fmt.Errorf("kms: load tls.certs[%d] (%s, %s): %w", i, fc.path(c.Cert), fc.path(c.Key), err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	if fc.TLS.CA != "" {
		pool, err := loadCAs(fc.path(fc.TLS.CA))
		if err != nil {
			return err
		}
		cfg.PeerCAs = pool
	}
	return nil
}

// loadCAs reads PEM certificates from a file or every file of a directory.
func loadCAs(path string) (*x509.CertPool, error) {
	files := []string{path}
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("kms: tls.ca: %w", err)
	} else if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("kms: tls.ca: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			if !e.IsDir() {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	pool := x509.NewCertPool()
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("kms: tls.ca: %w", err)
		}
		if pool.AppendCertsFromPEM(b) {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("kms: tls.ca: no PEM certificates in %s", path)
	}
	return pool, nil
}
