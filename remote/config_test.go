package remote

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeConfig writes an ssh_config file and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func resolveWith(t *testing.T, o Options, home string) (*endpoint, error) {
	t.Helper()
	cfg, err := loadSSHConfig(o.SSHConfigFile, home)
	if err != nil {
		return nil, err
	}
	return resolve(o, cfg, home)
}

func TestResolveFromSSHConfig(t *testing.T) {
	home := t.TempDir()
	cfgFile := writeConfig(t, `
Host kms1
    HostName 10.0.0.5
    User deploy
    Port 2222
    IdentityFile ~/.ssh/kms_%h
    IdentitiesOnly yes
    ConnectTimeout 7
    ServerAliveInterval 5
    UserKnownHostsFile ~/.ssh/kh_a ~/.ssh/kh_b
    GlobalKnownHostsFile /etc/kh_global
    ProxyJump ops@bastion:2200,jump2

Host *
    User fallback
    IdentityFile ~/.ssh/id_all
`)
	e, err := resolveWith(t, Options{Alias: "kms1", SSHConfigFile: cfgFile}, home)
	if err != nil {
		t.Fatal(err)
	}
	if e.hostName != "10.0.0.5" || e.user != "deploy" || e.port != 2222 {
		t.Errorf("host/user/port = %s/%s/%d", e.hostName, e.user, e.port)
	}
	wantIDs := []string{filepath.Join(home, ".ssh/kms_10.0.0.5"), filepath.Join(home, ".ssh/id_all")}
	if !reflect.DeepEqual(e.identityFiles, wantIDs) || e.defaultIDs {
		t.Errorf("identity files = %v (default %v), want %v", e.identityFiles, e.defaultIDs, wantIDs)
	}
	if !e.identitiesOnly {
		t.Error("IdentitiesOnly not honoured")
	}
	if e.connectTimeout != 7*time.Second || e.keepAlive != 5*time.Second {
		t.Errorf("connect timeout = %v, keepalive = %v", e.connectTimeout, e.keepAlive)
	}
	wantKH := []string{filepath.Join(home, ".ssh/kh_a"), filepath.Join(home, ".ssh/kh_b"), "/etc/kh_global"}
	if !reflect.DeepEqual(e.knownHosts, wantKH) {
		t.Errorf("known hosts = %v, want %v", e.knownHosts, wantKH)
	}
	wantJump := []jumpSpec{{user: "ops", host: "bastion", port: 2200}, {host: "jump2"}}
	if !reflect.DeepEqual(e.proxyJump, wantJump) {
		t.Errorf("proxy jump = %+v, want %+v", e.proxyJump, wantJump)
	}

	// Options override ssh_config, as command-line flags do.
	e, err = resolveWith(t, Options{Alias: "kms1", SSHConfigFile: cfgFile, HostName: "192.0.2.1", User: "root", Port: 22022,
		IdentityFiles: []string{"~/inv_key"}, ProxyJump: "none", ConnectTimeout: time.Second,
		KnownHostsFiles: []string{"/inv/kh"}, StateKnownHosts: "~/state/kh"}, home)
	if err != nil {
		t.Fatal(err)
	}
	if e.hostName != "192.0.2.1" || e.user != "root" || e.port != 22022 || e.proxyJump != nil || e.connectTimeout != time.Second {
		t.Errorf("overrides not applied: %+v", e)
	}
	if got := e.identityFiles[len(e.identityFiles)-1]; got != filepath.Join(home, "inv_key") {
		t.Errorf("inventory identity file = %s", got)
	}
	if got := e.knownHosts[len(e.knownHosts)-2:]; !reflect.DeepEqual(got, []string{"/inv/kh", filepath.Join(home, "state/kh")}) {
		t.Errorf("extra known hosts = %v", got)
	}

	// Another alias gets the Host * values and OpenSSH's defaults.
	e, err = resolveWith(t, Options{Alias: "other", SSHConfigFile: cfgFile}, home)
	if err != nil {
		t.Fatal(err)
	}
	if e.hostName != "other" || e.user != "fallback" || e.port != 22 || e.connectTimeout != 15*time.Second || e.keepAlive != 15*time.Second || e.proxyJump != nil {
		t.Errorf("defaults: %+v", e)
	}
	wantKH = []string{filepath.Join(home, ".ssh/known_hosts"), filepath.Join(home, ".ssh/known_hosts2"), "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	if !reflect.DeepEqual(e.knownHosts, wantKH) {
		t.Errorf("default known hosts = %v", e.knownHosts)
	}
}

func TestResolveDefaultIdentities(t *testing.T) {
	home := t.TempDir()
	e, err := resolveWith(t, Options{Alias: "h", SSHConfigFile: "none", User: "u"}, home)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, ".ssh/id_ecdsa"), filepath.Join(home, ".ssh/id_rsa")}
	if !e.defaultIDs || !reflect.DeepEqual(e.identityFiles, want) {
		t.Errorf("identities = %v (default %v)", e.identityFiles, e.defaultIDs)
	}
}

func TestStrictHostKeyCheckingNoIsRefused(t *testing.T) {
	for _, v := range []string{"no", "off", "No"} {
		cfgFile := writeConfig(t, "Host *\n    StrictHostKeyChecking "+v+"\n")
		_, err := resolveWith(t, Options{Alias: "h", SSHConfigFile: cfgFile}, t.TempDir())
		if err == nil {
			t.Fatalf("StrictHostKeyChecking %s was accepted", v)
		}
		for _, want := range []string{cfgFile, "StrictHostKeyChecking", "never connects without verifying the host key"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}
	cfgFile := writeConfig(t, "Host *\n    StrictHostKeyChecking yes\n")
	if _, err := resolveWith(t, Options{Alias: "h", SSHConfigFile: cfgFile}, t.TempDir()); err != nil {
		t.Errorf("StrictHostKeyChecking yes refused: %v", err)
	}
}

func TestProxyCommandIsRefused(t *testing.T) {
	cfgFile := writeConfig(t, "Host h\n    ProxyCommand nc %h %p\n")
	_, err := resolveWith(t, Options{Alias: "h", SSHConfigFile: cfgFile}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "ProxyJump") {
		t.Fatalf("ProxyCommand: err = %v", err)
	}
	// An explicit ProxyJump (inventory) wins and makes it irrelevant.
	if _, err := resolveWith(t, Options{Alias: "h", SSHConfigFile: cfgFile, ProxyJump: "b"}, t.TempDir()); err != nil {
		t.Errorf("with ProxyJump: %v", err)
	}
}

func TestMissingExplicitConfigFile(t *testing.T) {
	_, err := resolveWith(t, Options{Alias: "h", SSHConfigFile: filepath.Join(t.TempDir(), "nope")}, t.TempDir())
	if err == nil {
		t.Fatal("missing explicit ssh config file was accepted")
	}
}

func TestParseProxyJump(t *testing.T) {
	good := map[string][]jumpSpec{
		"b":                           {{host: "b"}},
		"u@b:2222":                    {{user: "u", host: "b", port: 2222}},
		"ssh://u@b:2222, c":           {{user: "u", host: "b", port: 2222}, {host: "c"}},
		"[2001:db8::1]:22,u@[::1]:2":  {{host: "2001:db8::1", port: 22}, {user: "u", host: "::1", port: 2}},
		"first@b1,second@b2:23,third": {{user: "first", host: "b1"}, {user: "second", host: "b2", port: 23}, {host: "third"}},
	}
	for in, want := range good {
		got, err := parseProxyJump(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseProxyJump(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a,,b", "b:0", "b:x", "u@"} {
		if got, err := parseProxyJump(bad); err == nil {
			t.Errorf("parseProxyJump(%q) = %+v, want error", bad, got)
		}
	}
}
