package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
)

// lab is a few simulator nodes and the environment of a client command.
type lab struct {
	t      *testing.T
	ca     *kmsim.CA
	apiKey string
	admin  string
	home   string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	ca, err := kmsim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	key, id, err := kmsim.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, caDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, caDir, "lab.crt"), ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &lab{t: t, ca: ca, apiKey: key, admin: id, home: home}
}

func (l *lab) start(dir string) *kmsim.Node {
	l.t.Helper()
	cert, err := l.ca.ServerCertificate("127.0.0.1")
	if err != nil {
		l.t.Fatal(err)
	}
	n, err := kmsim.Start(context.Background(), kmsim.Config{
		Dir: dir, HSMKey: testHSM(), Address: "127.0.0.1:0", AdminIdentity: l.admin,
		Certificates: []tls.Certificate{cert}, PeerCAs: l.ca.Pool(), HeartbeatInterval: 50 * time.Millisecond,
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { n.Close() })
	return n
}

// run runs minkms with args against server; it returns the exit code,
// stdout and stderr.
func (l *lab) run(server string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	vars := map[string]string{"MINIO_KMS_SERVER": "https://" + server, "MINIO_KMS_API_KEY": l.apiKey, "HOME": l.home}
	code := run(context.Background(), args, env(vars), nil, &out, &errOut)
	return code, out.String(), errOut.String()
}

func (l *lab) mustRun(server string, args ...string) string {
	l.t.Helper()
	code, out, errOut := l.run(server, args...)
	if code != 0 {
		l.t.Fatalf("minkms %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// The vendor's manual procedure, with the simulator's client commands:
// add, ls, stat, ls-*, backup, a dead node, edit --rm, restore, rm.
func TestClientCommands(t *testing.T) {
	l := newLab(t)
	a := l.start(filepath.Join(t.TempDir(), "a"))
	b := l.start(filepath.Join(t.TempDir(), "b"))
	l.mustRun(a.Addr(), "add", "https://"+b.Host())
	rows := regexp.MustCompile(`(?m)^(\d+)\s+(online|offline)\s+(\S+)\s+\S+\s+(\S+)$`)
	kmsimtest.Eventually(t, "ls shows two online nodes", func() error {
		out := l.mustRun(a.Addr(), "ls")
		m := rows.FindAllStringSubmatch(out, -1)
		if len(m) != 2 || m[0][1] != "0" || m[0][2] != "online" || m[0][3] != "Leader" || m[1][2] != "online" || m[1][3] != "Follower" || m[1][4] != b.Host() {
			return fmt.Errorf("ls:\n%s", out)
		}
		return nil
	})
	var st map[string]any
	if err := json.Unmarshal([]byte(l.mustRun(a.Addr(), "stat", "--json")), &st); err != nil || st["nodes_up"] == nil {
		t.Fatalf("stat --json: %v %v", st, err)
	}
	if out := l.mustRun(a.Addr(), "stat"); !strings.Contains(out, "COMMIT") || !strings.Contains(out, kmsim.DefaultVersion) {
		t.Fatalf("stat:\n%s", out)
	}

	// Objects, listed by the ls-* commands (-a instead of the environment).
	c, err := kms.New(kms.Config{Endpoints: []string{a.Addr()}, APIKey: mustKey(t, l.apiKey), RootCAs: l.ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, name := range []string{"app-1", "app-2", "db-1"} {
		if err := c.CreateKey(ctx, "", name); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CreateEnclave(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	if out := l.mustRun(a.Addr(), "ls-key", "app-"); out != "app-1\napp-2\n" {
		t.Fatalf("ls-key app-: %q", out)
	}
	if out := l.mustRun(a.Addr(), "ls-key", "-e", "team"); out != "" {
		t.Fatalf("ls-key -e team: %q", out)
	}
	if out := l.mustRun(a.Addr(), "ls-enclave"); out != "default\nteam\n" {
		t.Fatalf("ls-enclave: %q", out)
	}
	if out := l.mustRun(a.Addr(), "ls-policy", "--json"); out != "" {
		t.Fatalf("ls-policy: %q", out)
	}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"ls-key", "db", "-a", l.apiKey, "-k"}, env(map[string]string{"MINIO_KMS_SERVER": a.Addr()}), nil, &out, &errOut); code != 0 || out.String() != "db-1\n" {
		t.Fatalf("ls-key with -a and -k: %d %q %q", code, out.String(), errOut.String())
	}

	// Backups: the default name, and a named one; never over a file.
	cwd := t.TempDir()
	t.Chdir(cwd)
	name := strings.TrimSpace(l.mustRun(a.Addr(), "backup"))
	if !regexp.MustCompile(`^\d{8}_\d{6}_kms\.db\.gzip$`).MatchString(name) {
		t.Fatalf("backup file name %q", name)
	}
	if fi, err := os.Stat(filepath.Join(cwd, name)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	raw := filepath.Join(cwd, "raw.db")
	l.mustRun(a.Addr(), "backup", raw, "--compress", "off")
	if code, _, errOut := l.run(a.Addr(), "backup", raw); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("backup over a file: %d %q", code, errOut)
	}

	// Node b dies: ls shows it offline; edit --rm removes it on a.
	b.Close()
	kmsimtest.Eventually(t, "ls shows node 1 offline", func() error {
		if out := l.mustRun(a.Addr(), "ls"); !regexp.MustCompile(`(?m)^1\s+offline`).MatchString(out) {
			return fmt.Errorf("ls:\n%s", out)
		}
		return nil
	})
	if code, _, _ := l.run(a.Addr(), "edit", a.Addr(), "--rm", "1", "--rm", "2"); code != 2 {
		t.Fatalf("edit with two IDs: exit %d, want 2", code)
	}
	l.mustRun(a.Addr(), "edit", "https://"+a.Host(), "--rm", "1")
	if out := l.mustRun(a.Addr(), "ls"); len(rows.FindAllString(out, -1)) != 1 {
		t.Fatalf("ls after edit:\n%s", out)
	}

	// Restore both backups onto fresh nodes; rm removes a node with quorum.
	for _, file := range []string{name, raw} {
		fresh := l.start(filepath.Join(t.TempDir(), "fresh"))
		l.mustRun(a.Addr(), "restore", fresh.Addr(), file)
		if out := l.mustRun(fresh.Addr(), "ls-key"); out != "app-1\napp-2\ndb-1\n" {
			t.Fatalf("keys after restoring %s: %q", file, out)
		}
	}
	d := l.start(filepath.Join(t.TempDir(), "d"))
	l.mustRun(a.Addr(), "add", a.Addr(), d.Host())
	kmsimtest.Eventually(t, "rm node d", func() error {
		if code, out, errOut := l.run(a.Addr(), "rm", d.Host()); code != 0 {
			return fmt.Errorf("exit %d: %s%s", code, out, errOut)
		}
		return nil
	})
	if out := l.mustRun(a.Addr(), "ls"); len(rows.FindAllString(out, -1)) != 1 {
		t.Fatalf("ls after rm:\n%s", out)
	}
	kmsimtest.Eventually(t, "the removed node is fresh", func() error {
		if id := d.NodeID(); id != 0 || d.ClusterID() == a.ClusterID() {
			return fmt.Errorf("node %d of %s", id, d.ClusterID())
		}
		return nil
	})
}

func TestClientErrors(t *testing.T) {
	l := newLab(t)
	a := l.start(filepath.Join(t.TempDir(), "a"))
	var out, errOut bytes.Buffer
	// No API key: the message names the variable (and never needs argv).
	if code := run(context.Background(), []string{"ls"}, env(map[string]string{"MINIO_KMS_SERVER": a.Addr(), "HOME": l.home}), nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "MINIO_KMS_API_KEY") {
		t.Fatalf("no API key: %d %q", code, errOut.String())
	}
	// Without the lab CA (another HOME) the server certificate is refused.
	errOut.Reset()
	if code := run(context.Background(), []string{"ls"}, env(map[string]string{"MINIO_KMS_SERVER": a.Addr(), "MINIO_KMS_API_KEY": l.apiKey, "HOME": t.TempDir()}), nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "certificate") {
		t.Fatalf("unknown CA: %d %q", code, errOut.String())
	}
	// A bad API key is not echoed.
	errOut.Reset()
	if code := run(context.Background(), []string{"ls", "--api-key", "k1:SENTINELSECRET"}, env(map[string]string{"MINIO_KMS_SERVER": a.Addr()}), nil, &out, &errOut); code != 1 || strings.Contains(errOut.String(), "SENTINELSECRET") {
		t.Fatalf("bad key: %d %q", code, errOut.String())
	}
	if code, _, _ := l.run(a.Addr(), "edit", a.Addr()); code != 2 {
		t.Fatalf("edit without --rm: %d", code)
	}
	if code, _, _ := l.run(a.Addr(), "ls", "extra"); code != 2 {
		t.Fatalf("ls with an argument: %d", code)
	}
}

func mustKey(t *testing.T, s string) kms.APIKey {
	t.Helper()
	k, err := kms.ParseAPIKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
