package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

// TestExpectHostKey: a replaced inventory host (its known_hosts entry has the old key) is
// refused, with or without --accept-new-host-keys, naming its new fingerprint and the
// --expect-host-key form that accepts it; a wrong fingerprint is refused and records
// nothing; a malformed value or a host outside the inventory is a usage error before any
// host is reached; the right fingerprint is accepted and replaces the host's entry in
// kmsctl's own known_hosts, so that the next run needs no flag. The user's known_hosts
// files are never changed.
func TestExpectHostKey(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	key := sshtest.GenerateKey(t)
	keyFile := sshtest.ClientKeyFile(t, key, "")
	s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	old := sshtest.GenerateKey(t).PublicKey()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	userKH := filepath.Join(home, ".ssh", "known_hosts")
	sshtest.WriteKnownHosts(t, userKH, sshtest.KnownHostsLine(s.Addr(), old))
	invKH := filepath.Join(t.TempDir(), "known_hosts")
	sshtest.WriteKnownHosts(t, invKH, sshtest.KnownHostsLine(s.Addr(), old))
	inv := filepath.Join(t.TempDir(), "inventory.yml")
	writeTestFile(t, inv, fmt.Sprintf("all:\n  hosts:\n    kms2:\n      ansible_host: 127.0.0.1\n      ansible_port: %d\n      ansible_user: tester\n"+
		"      ansible_ssh_private_key_file: %s\n      kms_ssh_known_hosts: %s\n", s.Port(), keyFile, invKH))
	userBefore, invBefore := readTestFile(t, userKH), readTestFile(t, invKH)
	fp := ssh.FingerprintSHA256(s.HostKey())
	te := testEnv(t)
	own := filepath.Join(te.stateDir, "known_hosts")
	ping := func(want int, flags ...string) string {
		t.Helper()
		before := len(te.errOut.String())
		if code := te.run(t, append([]string{"-i", inv, "--ssh-config", "none", "ping"}, flags...)...); code != want {
			t.Fatalf("ping %v: exit %d, want %d\n%s\n%s", flags, code, want, te.out, te.errOut)
		}
		return te.errOut.String()[before:]
	}
	unchanged := func(what string) {
		t.Helper()
		if readTestFile(t, userKH) != userBefore || readTestFile(t, invKH) != invBefore {
			t.Errorf("%s: the user's known_hosts files were changed", what)
		}
	}
	noOwn := func(what string) {
		t.Helper()
		if b, err := os.ReadFile(own); err == nil && strings.Contains(string(b), strings.Fields(s.KnownHostsLine())[2]) {
			t.Errorf("%s: kmsctl's known_hosts holds the new key:\n%s", what, b)
		}
	}

	for _, flags := range [][]string{nil, {"--accept-new-host-keys"}} {
		stderr := ping(exit.Unreachable, flags...)
		for _, want := range []string{"changed", fp, "--expect-host-key kms2=" + fp} {
			if !strings.Contains(stderr, want) {
				t.Errorf("ping %v: stderr lacks %q:\n%s", flags, want, stderr)
			}
		}
		noOwn(fmt.Sprintf("a changed key with %v", flags))
	}
	wrong := ssh.FingerprintSHA256(sshtest.GenerateKey(t).PublicKey())
	stderr := ping(exit.Unreachable, "--expect-host-key", "kms2="+wrong)
	if !strings.Contains(stderr, fp) || !strings.Contains(stderr, wrong) {
		t.Errorf("a wrong fingerprint: stderr does not name both keys:\n%s", stderr)
	}
	noOwn("a wrong fingerprint")
	logins := len(s.Logins())
	for _, bad := range []string{"kms2", "kms2=", "=" + fp, "kms2=" + strings.TrimPrefix(fp, "SHA256:"), "kms2=SHA256:abc", "kms2=MD5:" + fp[7:]} {
		if stderr := ping(exit.Usage, "--expect-host-key", bad); !strings.Contains(stderr, "--expect-host-key") {
			t.Errorf("--expect-host-key %q: stderr does not name the flag:\n%s", bad, stderr)
		}
	}
	if stderr := ping(exit.Usage, "--expect-host-key", "kms9="+fp); !strings.Contains(stderr, "kms9") || !strings.Contains(stderr, "inventory") {
		t.Errorf("--expect-host-key for a host outside the inventory: %s", stderr)
	}
	if len(s.Logins()) != logins {
		t.Errorf("a usage error reached the host")
	}
	noOwn("usage errors")

	stderr = ping(exit.OK, "--expect-host-key", "kms2="+fp)
	if !strings.Contains(stderr, fp) || !strings.Contains(stderr, own) {
		t.Errorf("the planned key change is not shown on stderr with the fingerprint and kmsctl's file:\n%s", stderr)
	}
	if b := readTestFile(t, own); b != s.KnownHostsLine()+"\n" {
		t.Errorf("kmsctl's known_hosts = %q, want the host's new key only", b)
	}
	ping(exit.OK)
	unchanged("the whole test")
}

func readTestFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeTestFile(t *testing.T, p, text string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
