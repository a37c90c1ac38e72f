package remote_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
)

// dialErr dials and requires a *HostKeyError of kind.
func dialHostKeyErr(t *testing.T, o remote.Options, kind remote.HostKeyKind) *remote.HostKeyError {
	t.Helper()
	c, err := remote.Dial(ctx(t), o)
	if err == nil {
		c.Close()
		t.Fatalf("dial succeeded; want a %v host key error", kind)
	}
	var hk *remote.HostKeyError
	if !errors.As(err, &hk) {
		t.Fatalf("dial error %v is not a *HostKeyError", err)
	}
	if hk.Kind != kind {
		t.Fatalf("host key error kind = %v, want %v: %v", hk.Kind, kind, err)
	}
	var u interface{ Unreachable() bool }
	if !errors.As(err, &u) || !u.Unreachable() {
		t.Errorf("host key error is not Unreachable: %v", err)
	}
	return hk
}

func TestUnknownHostKey(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	hk := dialHostKeyErr(t, e.opts(s), remote.Unknown)
	fp := ssh.FingerprintSHA256(s.HostKey())
	msg := hk.Error()
	for _, want := range []string{"unknown host key", fp, "kms_ssh_host_keys", "--accept-new-host-keys", fmt.Sprintf("[127.0.0.1]:%d", s.Port())} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if hk.Fingerprint != fp {
		t.Errorf("fingerprint = %s, want %s", hk.Fingerprint, fp)
	}
	if len(s.Logins()) != 0 {
		t.Errorf("client authenticated to a server with an unknown key: %v", s.Logins())
	}
}

func TestChangedHostKeyNamesFileAndLine(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	old := sshtest.GenerateKey(t).PublicKey()
	e.trust("# comment", "other.example ssh-ed25519 "+strings.Fields(string(ssh.MarshalAuthorizedKey(old)))[1], sshtest.KnownHostsLine(s.Addr(), old))
	hk := dialHostKeyErr(t, e.opts(s), remote.Changed)
	msg := hk.Error()
	host := fmt.Sprintf("[127.0.0.1]:%d", s.Port())
	for _, want := range []string{"host key for " + host + " changed", e.knownHosts + ":3", ssh.FingerprintSHA256(old), ssh.FingerprintSHA256(s.HostKey()), "ssh-keygen -R"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if hk.File != e.knownHosts || hk.Line != 3 {
		t.Errorf("file:line = %s:%d", hk.File, hk.Line)
	}
}

func TestRevokedHostKey(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	e.trust(s.KnownHostsLine(), sshtest.RevokedLine("*", s.HostKey()))
	hk := dialHostKeyErr(t, e.opts(s), remote.Revoked)
	if !strings.Contains(hk.Error(), "revoked") || hk.Line != 2 {
		t.Errorf("revoked error = %v (line %d)", hk, hk.Line)
	}
}

func TestHashedKnownHostsEntry(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	e.trust(sshtest.HashedKnownHostsLine(s.Addr(), s.HostKey()))
	c := e.dial(e.opts(s))
	if out, _, err := run(t, c, "echo ok", ""); err != nil || out != "ok\n" {
		t.Fatalf("run: %q %v", out, err)
	}
}

// twoKeyServer accepts SSH handshakes with an ed25519 and an ECDSA host
// key and any client key; it serves nothing else.
func twoKeyServer(t *testing.T) (addr string, ed, ec ssh.PublicKey) {
	t.Helper()
	edKey := sshtest.GenerateKey(t)
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ssh.NewSignerFromKey(ecPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(edKey)
	cfg.AddHostKey(ecKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					ch.Reject(ssh.Prohibited, "no channels")
				}
			}()
		}
	}()
	return ln.Addr().String(), edKey.PublicKey(), ecKey.PublicKey()
}

func TestHostKeyAlgorithmFollowsKnownKeyType(t *testing.T) {
	e := newEnv(t)
	addr, ed, ec := twoKeyServer(t)
	_, port, _ := net.SplitHostPort(addr)
	o := remote.Options{Alias: "two", HostName: "127.0.0.1", User: "u", IdentityFiles: []string{e.keyFile},
		SSHConfigFile: "none", AgentSocket: "none", KnownHostsFiles: []string{e.knownHosts}}
	o.Port, _ = strconv.Atoi(port)
	// Only the ed25519 key is on record: the client must ask for it rather
	// than take the ECDSA key (x/crypto's default preference) and call the
	// host key "changed".
	e.trust(sshtest.KnownHostsLine(addr, ed))
	c := e.dial(o)
	c.Close()
	// The same holds for a pinned key.
	o.KnownHostsFiles = nil
	o.PinnedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ec)))}
	e.dial(o).Close()
	o.PinnedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ed)))}
	e.dial(o).Close()
}

func TestHostCertificateTrustedByCA(t *testing.T) {
	e := newEnv(t)
	ca := sshtest.NewCA(t)
	hostKey := sshtest.GenerateKey(t)
	s := e.server(sshtest.Config{HostKey: hostKey, HostCert: ca.SignHost(t, hostKey.PublicKey(), "127.0.0.1")})
	e.trust(ca.KnownHostsLine(fmt.Sprintf("[127.0.0.1]:%d", s.Port())))
	c := e.dial(e.opts(s))
	if out, _, err := run(t, c, "echo cert", ""); err != nil || out != "cert\n" {
		t.Fatalf("run: %q %v", out, err)
	}

	// A certificate from a CA we do not trust falls back to the plain key,
	// which is unknown.
	e2 := newEnv(t)
	s2 := e2.server(sshtest.Config{HostKey: hostKey, HostCert: sshtest.NewCA(t).SignHost(t, hostKey.PublicKey(), "127.0.0.1")})
	e2.trust(ca.KnownHostsLine(fmt.Sprintf("[127.0.0.1]:%d", s2.Port())))
	hk := dialHostKeyErr(t, e2.opts(s2), remote.Unknown)
	if hk.Fingerprint != ssh.FingerprintSHA256(hostKey.PublicKey()) {
		t.Errorf("fingerprint %s is not the plain host key's", hk.Fingerprint)
	}

	// A revoked CA is refused even though it is also trusted.
	e3 := newEnv(t)
	s3 := e3.server(sshtest.Config{HostKey: hostKey, HostCert: ca.SignHost(t, hostKey.PublicKey(), "127.0.0.1")})
	e3.trust(ca.KnownHostsLine(fmt.Sprintf("[127.0.0.1]:%d", s3.Port())), sshtest.RevokedLine("*", ca.PublicKey()))
	dialHostKeyErr(t, e3.opts(s3), remote.Revoked)
}

func TestPinnedHostKey(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	o := e.opts(s)
	o.PinnedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey())))}
	c := e.dial(o) // no known_hosts file at all
	if _, _, err := run(t, c, "true", ""); err != nil {
		t.Fatal(err)
	}
}

func TestPinnedHostKeyMismatchIgnoresKnownHosts(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	e.trust(s.KnownHostsLine()) // known_hosts would accept it, the pin must win
	o := e.opts(s)
	other := sshtest.GenerateKey(t).PublicKey()
	o.PinnedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other)))}
	hk := dialHostKeyErr(t, o, remote.Changed)
	if !strings.Contains(hk.Error(), "kms_ssh_host_keys") || !strings.Contains(hk.Error(), ssh.FingerprintSHA256(other)) || !strings.Contains(hk.Error(), "changed") {
		t.Errorf("pinned mismatch message: %v", hk)
	}
}

func TestAcceptNewWritesStateFile(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	state := filepath.Join(e.home, "state", "kmsctl", "known_hosts")
	o := e.opts(s)
	o.StateKnownHosts = state
	o.AcceptNew = true
	c := e.dial(o)
	c.Close()
	b := readFile(t, state)
	if want := s.KnownHostsLine(); strings.TrimSpace(b) != want {
		t.Errorf("state file = %q, want %q", b, want)
	}
	fi, err := os.Stat(state)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: %v %v", fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(state)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode: %v %v", di.Mode(), err)
	}
	// Without accept-new, the state file alone now trusts the host.
	o.AcceptNew = false
	e.dial(o)
	if b2 := readFile(t, state); b2 != b {
		t.Errorf("state file changed on second dial: %q", b2)
	}
}

func TestAcceptNewRefusesChangedKey(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	state := filepath.Join(e.home, "state_known_hosts")
	old := sshtest.GenerateKey(t).PublicKey()
	sshtest.WriteKnownHosts(t, state, sshtest.KnownHostsLine(s.Addr(), old))
	o := e.opts(s)
	o.StateKnownHosts, o.AcceptNew = state, true
	hk := dialHostKeyErr(t, o, remote.Changed)
	if hk.File != state || hk.Line != 1 {
		t.Errorf("changed key located at %s:%d", hk.File, hk.Line)
	}
	if b := readFile(t, state); strings.Count(b, "\n") != 1 {
		t.Errorf("state file was appended to: %q", b)
	}
}

// A key that is pinned and also @revoked in a known_hosts file is refused:
// a revocation wins over the pin.
func TestPinnedAndRevokedHostKeyRefused(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	e.trust("# revoked after the inventory pinned it", sshtest.RevokedLine("*", s.HostKey()))
	o := e.opts(s)
	o.PinnedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey())))}
	hk := dialHostKeyErr(t, o, remote.Revoked)
	if hk.File != e.knownHosts || hk.Line != 2 || hk.Fingerprint != ssh.FingerprintSHA256(s.HostKey()) {
		t.Errorf("revoked pinned key reported at %s:%d (%s): %v", hk.File, hk.Line, hk.Fingerprint, hk)
	}
	if len(s.Logins()) != 0 {
		t.Errorf("client authenticated to a server with a revoked key: %v", s.Logins())
	}
}

// Accept-new does not apply to a host whose keys are pinned (README, Host
// keys): another key is refused as changed, and nothing is recorded; the
// pinned key itself is accepted without being recorded.
func TestAcceptNewWithPinnedKeys(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	state := filepath.Join(e.home, "state", "known_hosts")
	o := e.opts(s)
	o.StateKnownHosts, o.AcceptNew = state, true
	other := sshtest.GenerateKey(t).PublicKey()
	o.PinnedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other)))}
	hk := dialHostKeyErr(t, o, remote.Changed)
	if !strings.Contains(hk.Error(), "kms_ssh_host_keys") || hk.KnownFingerprint != ssh.FingerprintSHA256(other) {
		t.Errorf("pinned mismatch in accept-new mode: %v", hk)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("accept-new recorded a key of a host with pinned keys: %v", err)
	}
	o.PinnedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey())))}
	e.dial(o)
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("accept-new recorded a pinned key: %v", err)
	}
}

// The key accept-new records is shown: a warning (which kmsctl prints on
// stderr) names the host, the fingerprint and the file; a key already on
// record is not announced again.
func TestAcceptNewShowsRecordedFingerprint(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	state := filepath.Join(e.home, "known_hosts.kmsctl")
	var logs bytes.Buffer
	o := e.opts(s)
	o.StateKnownHosts, o.AcceptNew = state, true
	o.Logger = zerolog.New(&logs).Level(zerolog.WarnLevel)
	e.dial(o)
	fp := ssh.FingerprintSHA256(s.HostKey())
	line := logs.String()
	for _, want := range []string{`"level":"warn"`, fp, state, fmt.Sprintf("[127.0.0.1]:%d", s.Port())} {
		if !strings.Contains(line, want) {
			t.Errorf("accept-new log %q lacks %q", line, want)
		}
	}
	var rec struct{ Host, Fingerprint, File string }
	if err := json.Unmarshal(logs.Bytes(), &rec); err != nil || rec.Fingerprint != fp || rec.File != state || rec.Host != fmt.Sprintf("[127.0.0.1]:%d", s.Port()) {
		t.Errorf("accept-new log fields = %+v, %v", rec, err)
	}
	logs.Reset()
	e.dial(o)
	if logs.Len() != 0 {
		t.Errorf("a key on record announced again: %s", logs.String())
	}
}

// A @cert-authority entry is not a key on record for the host: a server
// that presents a plain key no entry matches is unknown (and the client
// still accepts plain keys, so that the error names the fingerprint), not
// changed, wherever the CA line is in the file.
func TestPlainKeyWithOnlyCAKnownIsUnknown(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	ca := sshtest.NewCA(t)
	e.trust("# site CA", "", ca.KnownHostsLine(fmt.Sprintf("[127.0.0.1]:%d", s.Port())))
	hk := dialHostKeyErr(t, e.opts(s), remote.Unknown)
	if hk.Fingerprint != ssh.FingerprintSHA256(s.HostKey()) || hk.File != "" {
		t.Errorf("unknown key error = %+v, want the server's fingerprint and no file", hk)
	}
}

// When the host has several keys on record and the one it presents is of a
// type on record, the changed-key error names the first entry of that type
// (one to remove), not the first entry.
func TestChangedHostKeyNamesEntryOfSameType(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	oldEC, err := ssh.NewPublicKey(&ecPriv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	oldED := sshtest.GenerateKey(t).PublicKey()
	e.trust(sshtest.KnownHostsLine(s.Addr(), oldEC), sshtest.KnownHostsLine(s.Addr(), oldED), sshtest.KnownHostsLine(s.Addr(), sshtest.GenerateKey(t).PublicKey()))
	hk := dialHostKeyErr(t, e.opts(s), remote.Changed)
	if hk.File != e.knownHosts || hk.Line != 2 || hk.KnownFingerprint != ssh.FingerprintSHA256(oldED) {
		t.Errorf("changed key located at %s:%d (%s), want line 2 (%s)", hk.File, hk.Line, hk.KnownFingerprint, ssh.FingerprintSHA256(oldED))
	}
}

// CheckHostKeys parses pinned keys as a connection would and names a bad
// one by its place in the list, quoting at most its first 40 characters.
func TestCheckHostKeys(t *testing.T) {
	good := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshtest.GenerateKey(t).PublicKey())))
	if err := remote.CheckHostKeys([]string{good, good + " comment"}); err != nil {
		t.Errorf("valid keys: %v", err)
	}
	if err := remote.CheckHostKeys(nil); err != nil {
		t.Errorf("no keys: %v", err)
	}
	bad40 := "ssh-ed25519 " + strings.Repeat("A", 28) // 40 characters, not a key
	err := remote.CheckHostKeys([]string{good, bad40})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("parse pinned host key 2 (%q)", bad40)) {
		t.Errorf("bad second key: %v", err)
	}
	long := "ssh-ed25519 " + strings.Repeat("B", 60)
	err = remote.CheckHostKeys([]string{long})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("parse pinned host key 1 (%q)", long[:40]+"...")) {
		t.Errorf("long bad key: %v", err)
	}
}

// A known_hosts file named twice (the inventory's kms_ssh_known_hosts may
// be the user's own file) is read once, and the files after it are still
// read.
func TestKnownHostsFileNamedTwice(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	e.trust("# nothing for this host")
	second := filepath.Join(e.home, "site_known_hosts")
	sshtest.WriteKnownHosts(t, second, s.KnownHostsLine())
	o := e.opts(s)
	o.KnownHostsFiles = []string{e.knownHosts, e.knownHosts, second}
	e.dial(o).Close()
}

// A planned key change (--expect-host-key): the host's new key, named by its fingerprint,
// is accepted although the user's known_hosts still has the old one; it replaces the
// host's entries in kmsctl's own known_hosts (other hosts' lines kept), is announced as a
// warning, and trusts the host on the next dial without the fingerprint. The user's
// known_hosts is not changed.
func TestExpectedKeyReplacesStateEntry(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	old := sshtest.GenerateKey(t).PublicKey()
	other := sshtest.GenerateKey(t).PublicKey()
	e.trust(sshtest.KnownHostsLine(s.Addr(), old))
	userBefore := readFile(t, e.knownHosts)
	state := filepath.Join(e.home, "kmsctl_known_hosts")
	otherLine := sshtest.KnownHostsLine("other.example:22", other)
	sshtest.WriteKnownHosts(t, state, sshtest.KnownHostsLine(s.Addr(), old), otherLine)
	var logs bytes.Buffer
	o := e.opts(s)
	o.StateKnownHosts = state
	o.Logger = zerolog.New(&logs).Level(zerolog.WarnLevel)
	fp := ssh.FingerprintSHA256(s.HostKey())
	// Without the fingerprint the changed key is refused, naming the flag that accepts it.
	hk := dialHostKeyErr(t, o, remote.Changed)
	if !strings.Contains(hk.Error(), "--expect-host-key target="+fp) {
		t.Errorf("changed-key message does not show the --expect-host-key form: %v", hk)
	}
	o.ExpectedKeys = []string{fp}
	e.dial(o)
	got := readFile(t, state)
	if want := otherLine + "\n" + s.KnownHostsLine() + "\n"; got != want {
		t.Errorf("kmsctl's known_hosts after the planned change:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kmsctl's known_hosts mode: %v %v", fi, err)
	}
	if b := readFile(t, e.knownHosts); b != userBefore {
		t.Errorf("the user's known_hosts was changed:\n%s", b)
	}
	for _, want := range []string{`"level":"warn"`, fp, ssh.FingerprintSHA256(old), state, "--expect-host-key"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("planned-change warning %q lacks %q", logs.String(), want)
		}
	}
	// The next dial, without the fingerprint: kmsctl's entry wins over the user's old one.
	o.ExpectedKeys = nil
	e.dial(o)
	if b := readFile(t, state); b != got {
		t.Errorf("kmsctl's known_hosts changed on a plain dial: %q", b)
	}
	// Expected again with the key already trusted by kmsctl's file: nothing rewritten or
	// announced again.
	o.ExpectedKeys = []string{fp}
	logs.Reset()
	e.dial(o)
	if b := readFile(t, state); b != got || logs.Len() != 0 {
		t.Errorf("kmsctl's known_hosts rewritten for a key it already trusted: %q\n%s", b, logs.String())
	}
}

// A planned key change that names another fingerprint is refused: nothing is recorded, no
// login happens, and the message shows the key the host offers and the flag that would
// accept it. A revoked key is refused even when it is the expected one.
func TestExpectedKeyMismatchRefused(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	old := sshtest.GenerateKey(t).PublicKey()
	e.trust(sshtest.KnownHostsLine(s.Addr(), old))
	userBefore := readFile(t, e.knownHosts)
	state := filepath.Join(e.home, "state", "known_hosts")
	o := e.opts(s)
	o.StateKnownHosts, o.AcceptNew = state, true
	wrong := ssh.FingerprintSHA256(sshtest.GenerateKey(t).PublicKey())
	o.ExpectedKeys = []string{wrong}
	hk := dialHostKeyErr(t, o, remote.Unexpected)
	fp := ssh.FingerprintSHA256(s.HostKey())
	for _, want := range []string{fp, wrong, "--expect-host-key target=" + fp, "nothing recorded"} {
		if !strings.Contains(hk.Error(), want) {
			t.Errorf("message %q lacks %q", hk.Error(), want)
		}
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused planned change wrote kmsctl's known_hosts: %v", err)
	}
	if b := readFile(t, e.knownHosts); b != userBefore {
		t.Errorf("the user's known_hosts was changed:\n%s", b)
	}
	// The old key itself, still on record, is not what the user expects either.
	o.ExpectedKeys = []string{ssh.FingerprintSHA256(old)}
	dialHostKeyErr(t, o, remote.Unexpected)
	if len(s.Logins()) != 0 {
		t.Errorf("client authenticated to a host with an unexpected key: %v", s.Logins())
	}

	e.trust(sshtest.RevokedLine("*", s.HostKey()))
	o.ExpectedKeys = []string{fp}
	dialHostKeyErr(t, o, remote.Revoked)
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an expected but revoked key was recorded: %v", err)
	}
}

// A key pinned in the inventory that matches replaces the host's old entry in kmsctl's own
// known_hosts (so that the old key does not outlive the pin there).
func TestPinnedKeyReplacesStaleStateEntry(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	old := sshtest.GenerateKey(t).PublicKey()
	state := filepath.Join(e.home, "known_hosts.kmsctl")
	sshtest.WriteKnownHosts(t, state, sshtest.KnownHostsLine(s.Addr(), old))
	o := e.opts(s)
	o.StateKnownHosts = state
	o.PinnedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey())))}
	e.dial(o)
	if got, want := readFile(t, state), s.KnownHostsLine()+"\n"; got != want {
		t.Errorf("kmsctl's known_hosts = %q, want %q", got, want)
	}
}

func TestParseFingerprint(t *testing.T) {
	fp := ssh.FingerprintSHA256(sshtest.GenerateKey(t).PublicKey())
	for in, want := range map[string]string{fp: fp, fp + "=": fp} {
		if got, err := remote.ParseFingerprint(in); err != nil || got != want {
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SHA256:", strings.TrimPrefix(fp, "SHA256:"), "sha256:" + fp[7:], fp[:len(fp)-1], fp + "AA", "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", "SHA256:!" + fp[8:]} {
		if got, err := remote.ParseFingerprint(bad); err == nil {
			t.Errorf("ParseFingerprint(%q) = %q, want an error", bad, got)
		}
	}
}
