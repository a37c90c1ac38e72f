package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

func TestParseHostArg(t *testing.T) {
	cases := []struct {
		in                string
		user, alias, fail string
		port              int
	}{
		{in: "kms1", alias: "kms1"},
		{in: "root@kms1", user: "root", alias: "kms1"},
		{in: "root@10.0.0.1:2222", user: "root", alias: "10.0.0.1", port: 2222},
		{in: "[::1]:22", alias: "::1", port: 22},
		{in: "[fe80::1]", alias: "fe80::1"},
		{in: "u@[::1]:2200", user: "u", alias: "::1", port: 2200},
		{in: "host:0", fail: "port"},
		{in: "host:http", fail: "port"},
		{in: "@host", fail: "empty user"},
		{in: "root@", fail: "empty host"},
	}
	for _, c := range cases {
		got, err := parseHostArg(c.in)
		if c.fail != "" {
			if err == nil || !strings.Contains(err.Error(), c.fail) {
				t.Errorf("parseHostArg(%q) error %v, want one about %q", c.in, err, c.fail)
			}
			continue
		}
		if err != nil || got.User != c.user || got.Alias != c.alias || got.Port != c.port || got.Name != c.in {
			t.Errorf("parseHostArg(%q) = %+v, %v", c.in, got, err)
		}
	}
}

func TestPingArguments(t *testing.T) {
	key := sshtest.GenerateKey(t)
	keyFile := sshtest.ClientKeyFile(t, key, "")
	s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, Users: []string{"alice"}})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	sshtest.WriteKnownHosts(t, kh, s.KnownHostsLine())

	te := testEnv(t)
	host := fmt.Sprintf("alice@127.0.0.1:%d", s.Port())
	code := te.run(t, "ping", host, "--ssh-config", "none", "--known-hosts", kh, "--private-key", keyFile)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if out := te.out.String(); !strings.Contains(out, "ok: ["+host+"] ping") || !strings.Contains(out, host+" : ok=1 changed=0 unreachable=0 failed=0") {
		t.Errorf("output:\n%s", out)
	}
	if got := strings.Join(s.Commands(), "|"); got != "true" {
		t.Errorf("server ran %q, want true", got)
	}

	// -u supplies the user when the argument has none.
	te = testEnv(t)
	host = fmt.Sprintf("127.0.0.1:%d", s.Port())
	if code := te.run(t, "ping", host, "--ssh-config", "none", "--known-hosts", kh, "--private-key", keyFile, "-u", "alice"); code != 0 {
		t.Fatalf("-u alice: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
}

func TestPingInventoryHosts(t *testing.T) {
	l := newLab(t, "")
	te := testEnv(t)
	if code := te.run(t, "ping", "-i", l.inventory, "--ssh-config", "none", "-o", "json"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	for _, h := range []string{"kms1", "kms2"} {
		if !strings.Contains(te.out.String(), `"host":"`+h+`","status":"ok"`) {
			t.Errorf("no ok result for %s:\n%s", h, te.out)
		}
	}
	te = testEnv(t)
	if code := te.run(t, "ping", "-i", l.inventory, "--ssh-config", "none", "--limit", "kms2"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if out := te.out.String(); strings.Contains(out, "kms1") || !strings.Contains(out, "ok: [kms2]") {
		t.Errorf("--limit kms2:\n%s", out)
	}
}

// TestPingHostKeys: a changed host key makes the host unreachable (exit 3)
// with the known_hosts file:line on stderr; an unknown key is trusted only
// with --accept-new-host-keys, into kmsctl's own known_hosts.
func TestPingHostKeys(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.ssh/known_hosts of the machine running the test
	key := sshtest.GenerateKey(t)
	keyFile := sshtest.ClientKeyFile(t, key, "")
	s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	host := fmt.Sprintf("tester@127.0.0.1:%d", s.Port())
	flags := []string{"--ssh-config", "none", "--private-key", keyFile}

	// Changed: the known_hosts file has another key for this address.
	other := sshtest.GenerateKey(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	sshtest.WriteKnownHosts(t, kh, "# comment", sshtest.KnownHostsLine(s.Addr(), other.PublicKey()))
	te := testEnv(t)
	if code := te.run(t, append([]string{"ping", host, "--known-hosts", kh}, flags...)...); code != exit.Unreachable {
		t.Fatalf("changed key: exit %d, want 3\n%s\n%s", code, te.out, te.errOut)
	}
	stderr := te.errOut.String()
	if !strings.Contains(stderr, "host key for") || !strings.Contains(stderr, "changed") || !strings.Contains(stderr, kh+":2") {
		t.Errorf("stderr lacks the changed-key error with %s:2:\n%s", kh, stderr)
	}
	if !strings.Contains(te.out.String(), "unreachable: ["+host+"]") {
		t.Errorf("stdout:\n%s", te.out)
	}

	// Unknown: refused, with the fingerprint, unless accepted.
	te = testEnv(t)
	empty := filepath.Join(t.TempDir(), "empty_known_hosts")
	sshtest.WriteKnownHosts(t, empty)
	if code := te.run(t, append([]string{"ping", host, "--known-hosts", empty}, flags...)...); code != exit.Unreachable {
		t.Fatalf("unknown key: exit %d, want 3\n%s\n%s", code, te.out, te.errOut)
	}
	if !strings.Contains(te.errOut.String(), "unknown host key") || !strings.Contains(te.errOut.String(), "SHA256:") {
		t.Errorf("stderr:\n%s", te.errOut)
	}
	before := len(te.errOut.String())
	if code := te.run(t, append([]string{"ping", host, "--known-hosts", empty, "--accept-new-host-keys"}, flags...)...); code != 0 {
		t.Fatalf("--accept-new-host-keys: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	// The key it recorded is shown on the terminal, not only in the run log.
	accepted := te.errOut.String()[before:]
	for _, want := range []string{ssh.FingerprintSHA256(s.HostKey()), filepath.Join(te.stateDir, "known_hosts"), fmt.Sprintf("[127.0.0.1]:%d", s.Port())} {
		if !strings.Contains(accepted, want) {
			t.Errorf("stderr of --accept-new-host-keys lacks %q:\n%s", want, accepted)
		}
	}
	own, err := os.ReadFile(filepath.Join(te.stateDir, "known_hosts"))
	if err != nil || !strings.Contains(string(own), strings.TrimSpace(strings.SplitN(s.KnownHostsLine(), " ", 2)[1])) {
		t.Errorf("kmsctl's known_hosts = %q, %v; want the server's key", own, err)
	}
	// Now known: accepted without the flag, and without a word.
	before = len(te.errOut.String())
	if code := te.run(t, append([]string{"ping", host, "--known-hosts", empty}, flags...)...); code != 0 {
		t.Fatalf("after accept: exit %d\n%s", code, te.errOut)
	}
	if again := te.errOut.String()[before:]; again != "" {
		t.Errorf("stderr once the key is known: %s", again)
	}
}

// TestPingTimeout: a host that does not answer in --timeout ends ping with
// exit code 6, and an interrupted ping with 130.
func TestPingTimeoutAndInterrupt(t *testing.T) {
	// A listener that accepts and never speaks SSH.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	drain := func() {
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	}
	t.Cleanup(drain)
	te := testEnv(t)
	if code := te.run(t, "ping", ln.Addr().String(), "--ssh-config", "none", "--timeout", "200ms"); code != exit.TimedOut {
		t.Errorf("--timeout: exit %d, want %d\n%s\n%s", code, exit.TimedOut, te.out, te.errOut)
	}
	drain()
	ctx, cancel := context.WithCancel(context.Background())
	te = testEnv(t)
	done := make(chan int)
	go func() {
		done <- run(ctx, te.env, []string{"kmsctl", "ping", ln.Addr().String(), "--ssh-config", "none"})
	}()
	accepted <- <-accepted // wait until ping connected (the handshake hangs)
	cancel()
	if code := <-done; code != exit.Interrupted {
		t.Errorf("interrupted: exit %d, want %d\n%s\n%s", code, exit.Interrupted, te.out, te.errOut)
	}
}
