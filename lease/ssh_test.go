package lease_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

// TestOverSSH: the lease through the real SSH client and an in-process
// SSH+SFTP server: the first run's lease lands as a 0644 file (directory
// made), a second run is refused naming it, and release removes it.
func TestOverSSH(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	key := sshtest.GenerateKey(t)
	keyFile := sshtest.ClientKeyFile(t, key, "")
	kh := filepath.Join(home, "known_hosts")
	dir := filepath.Join(t.TempDir(), "var", "lib", "kmsctl")
	var nodes []lease.Node
	var lines []string
	for _, name := range []string{"kms1", "kms2"} {
		s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
		lines = append(lines, s.KnownHostsLine())
		nodes = append(nodes, lease.Node{Name: name, Dir: filepath.Join(dir, name), Dial: func(ctx context.Context) (lease.Conn, error) {
			return remote.Dial(ctx, remote.Options{Alias: name, HostName: "127.0.0.1", Port: s.Port(), User: "tester",
				IdentityFiles: []string{keyFile}, SSHConfigFile: "none", KnownHostsFiles: []string{kh}, AgentSocket: "none", ConnectTimeout: 10 * time.Second})
		}})
	}
	sshtest.WriteKnownHosts(t, kh, lines...)
	a, err := lease.Acquire(ctx(t), lease.Options{Cluster: "kms", Nodes: nodes, Holder: holder("alice@bastion1", "run-a")})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		fi, err := os.Stat(lease.Path(n.Dir, "kms"))
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("%s: %v %v", n.Name, fi, err)
		}
	}
	_, err = lease.Acquire(ctx(t), lease.Options{Cluster: "kms", Nodes: nodes, Holder: holder("bob@bastion2", "run-b")})
	var held *lease.HeldError
	if !errors.As(err, &held) || held.Lease.User != "alice@bastion1" {
		t.Fatalf("second run: %v", err)
	}
	a.SetStep("step 2")
	if err := a.Renew(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, nl := range lease.Survey(ctx(t), "kms", nodes, time.Now()) {
		if nl.Lease == nil || nl.Lease.Step != "step 2" || nl.Expired {
			t.Errorf("survey: %s", nl.Describe())
		}
	}
	if err := a.Release(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if _, err := os.Stat(lease.Path(n.Dir, "kms")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: lease left after release: %v", n.Name, err)
		}
	}
}
