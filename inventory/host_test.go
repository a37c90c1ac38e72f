package inventory

import (
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/safepath"
	"github.com/kmsctl/kmsctl/yamlpos"
)

const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq8ZzQ3oK4o2mM3w0bC8o3l2m8kqv0dZ6r4mFQj9f7w"

// sshOf resolves host and returns its SSH settings.
func sshOf(inv *Inventory, host string, extra map[string]any) (SSHSettings, error) {
	h, err := inv.Resolve(host, extra)
	return h.SSH, err
}

func TestResolveSSHSettings(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	inv := mustParse(t, `
all:
  vars:
    ansible_user: admin
    ansible_become: "yes"
  hosts:
    plain:
    full:
      ansible_host: 10.0.0.9
      ansible_port: "2222"
      ansible_user: ops
      ansible_ssh_private_key_file: ~/.ssh/id_kms
      ansible_become: no
      ansible_become_user: minkms-user
      kms_ssh_host_keys: ["`+hostKey+`"]
      kms_ssh_known_hosts: ~/kh
      kms_ssh_proxy_jump: jump@bastion:2200,inner
      kms_api: ssh
    legacy:
      ansible_ssh_host: 2001:db8::5
      ansible_ssh_port: 2200
      ansible_ssh_user: root
      ansible_private_key_file: /k
`)
	c, err := sshOf(inv, "plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := SSHSettings{Host: "plain", Address: "plain", Port: 0, User: "admin", Become: true, BecomeUser: "root", API: APIDirect}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("plain:\n got %+v\nwant %+v", c, want)
	}
	c, err = sshOf(inv, "full", nil)
	if err != nil {
		t.Fatal(err)
	}
	want = SSHSettings{Host: "full", Address: "10.0.0.9", Port: 2222, User: "ops",
		PrivateKeyFile: filepath.Join(home, ".ssh/id_kms"), Become: false, BecomeUser: "minkms-user",
		SSHHostKeys: []string{hostKey}, KnownHostsFile: filepath.Join(home, "kh"),
		ProxyJump: "jump@bastion:2200,inner", API: APISSH}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("full:\n got %+v\nwant %+v", c, want)
	}
	c, err = sshOf(inv, "legacy", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Address != "2001:db8::5" || c.Port != 2200 || c.User != "root" || c.PrivateKeyFile != "/k" {
		t.Errorf("legacy names: %+v", c)
	}
	// -e overrides, and a bad -e value is reported as such.
	c, err = sshOf(inv, "plain", map[string]any{"ansible_port": 2022, "ansible_become": "off"})
	if err != nil || c.Port != 2022 || c.Become {
		t.Errorf("-e: %+v %v", c, err)
	}
	_, err = sshOf(inv, "plain", map[string]any{"ansible_port": "abc", "ansible_become": "perhaps"})
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 2 {
		t.Fatalf("bad -e: want 2 problems, got %v", err)
	}
	for _, e := range ve.Errs {
		if e.Pos.File != "-e" || !strings.Contains(e.Field, "host plain") {
			t.Errorf("bad -e problem: %v", e)
		}
	}
	if _, err := sshOf(inv, "ghost", nil); err == nil || !strings.Contains(err.Error(), `"ghost"`) {
		t.Errorf("unknown host: %v", err)
	}
}

func TestNodeDefaults(t *testing.T) {
	inv := mustParse(t, `
all:
  hosts:
    kms1:
    kms2:
      ansible_host: 10.1.1.2
    kms3:
      ansible_host: 2001:db8::3
      kms_port: 7474
`)
	n, err := inv.Node("kms1", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := KMSNode{Host: "kms1", Endpoint: "kms1:7373", Port: 7373, StoragePath: "/mnt/minio-kms",
		ConfigFile: "/etc/minkms/config.yaml", EnvFile: "/etc/default/minkms", CertsDir: "/etc/minkms/certs",
		Binary: "/usr/local/bin/minkms", Service: "minkms.service", Cluster: "kms", UnitFile: "/etc/systemd/system/minkms.service", User: "minkms-user", API: APIDirect,
		LeaseDir: "/var/lib/kmsctl"}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", n, want)
	}
	if n, _ := inv.Node("kms2", nil); n.Endpoint != "10.1.1.2:7373" {
		t.Errorf("endpoint from ansible_host = %q", n.Endpoint)
	}
	if n, _ := inv.Node("kms3", nil); n.Endpoint != "[2001:db8::3]:7474" || n.Port != 7474 {
		t.Errorf("IPv6 endpoint = %q port %d", n.Endpoint, n.Port)
	}
	if pos, ok := inv.Origin("kms1", VarStoragePath); !ok || pos.File != "(default)" {
		t.Errorf("Origin of a default = %v %v", pos, ok)
	}
}

func TestNodeOverridesAndValidation(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	inv := mustParse(t, `
all:
  children:
    kms:
      vars:
        kms_storage_path: /srv/minkms/data
        kms_service: minkms
        kms_ca_file: ~/ca.pem
      hosts:
        kms1:
          kms_endpoint: kms1.cluster:7373
          kms_config_file: /opt/minkms/config.yaml
          kms_env_file: /opt/minkms/env
          kms_certs_dir: /opt/minkms/certs
          kms_binary: /opt/minkms/bin/minkms
          kms_user: kms
          kms_api: ssh
          kms_lease_dir: /opt/kmsctl
`)
	n, err := inv.Node("kms1", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := KMSNode{Host: "kms1", Endpoint: "kms1.cluster:7373", Port: 7373, StoragePath: "/srv/minkms/data",
		ConfigFile: "/opt/minkms/config.yaml", EnvFile: "/opt/minkms/env", CertsDir: "/opt/minkms/certs",
		Binary: "/opt/minkms/bin/minkms", Service: "minkms", Cluster: "kms", UnitFile: "/etc/systemd/system/minkms", User: "kms", API: APISSH, CAFile: filepath.Join(home, "ca.pem"), LeaseDir: "/opt/kmsctl"}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("overrides:\n got %+v\nwant %+v", n, want)
	}
	// Bad -e values: every one reported, at "-e".
	_, err = inv.Node("kms1", map[string]any{
		"kms_storage_path": "/", "kms_port": 0, "kms_endpoint": "nohost", "kms_api": "carrier-pigeon",
	})
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 4 {
		t.Fatalf("want 4 problems, got %v", err)
	}
	for _, e := range ve.Errs {
		if e.Pos != extraPos {
			t.Errorf("position %v, want -e: %v", e.Pos, e)
		}
	}
	// A storage path that would swallow the certs dir, set in two places:
	// the error names both positions.
	_, err = inv.Node("kms1", map[string]any{"kms_storage_path": "/opt/minkms"})
	if err == nil || !strings.Contains(err.Error(), "-e: host kms1: kms_storage_path: storage path /opt/minkms contains kms_config_file /opt/minkms/config.yaml (set at inv.yml:12:28)") {
		t.Errorf("containment: %v", err)
	}
	// Nor may it swallow the lease directory: wiping it would drop the
	// lease of the run that wipes.
	_, err = inv.Node("kms1", map[string]any{"kms_lease_dir": "/srv/minkms/data/kmsctl"})
	if err == nil || !strings.Contains(err.Error(), "storage path /srv/minkms/data contains kms_lease_dir /srv/minkms/data/kmsctl (set at -e)") {
		t.Errorf("lease directory in the storage path: %v", err)
	}
	// The storage path checks, one by one.
	for _, p := range []string{"/", "/etc", "/etc/minkms", "/usr/local/minkms", "/var", "/var/lib", "/home", "/home/alice", "/root", "/tmp",
		"/proc/1", "/dev/sda", "/boot/x", "/lib64/x", "relative", "/a/../b", "/a/./b", "/a//b", "/a/", "/a b", "/a;b", "/a$b", "",
		"/root/.ssh", "/home/alice/.ssh", "/etc/pam.d", "/var/lib/dpkg", "/lib/systemd", "/mnt/x/../../etc"} {
		if _, err := inv.Node("kms1", map[string]any{"kms_storage_path": p}); err == nil {
			t.Errorf("storage path %q accepted", p)
		}
	}
	// What the dangerous-path rule refuses is a refusal (exit code 4), the
	// rest invalid input.
	for p, refusal := range map[string]bool{"/root/.ssh": true, "/": true, "/mnt/../etc": true, "/opt/minkms": true, "relative": false, "/a b": false, "/mnt/kms/": false} {
		_, err := inv.Node("kms1", map[string]any{"kms_storage_path": p})
		var se *safepath.Error
		if errors.As(err, &se) != refusal {
			t.Errorf("storage path %q: %v; want a *safepath.Error: %v", p, err, refusal)
		}
	}
	for _, p := range []string{"/mnt/minio-kms", "/data", "/var/lib/minkms", "/home/alice/kms", "/srv/kms", "/opt/minkms-data"} {
		if _, err := inv.Node("kms1", map[string]any{"kms_storage_path": p}); err != nil {
			t.Errorf("storage path %q rejected: %v", p, err)
		}
	}
}

// TestNodeValidationPositions checks that a bad layout value in a file is
// reported at the line of the variable.
func TestNodeValidationPositions(t *testing.T) {
	_, err := Parse("site.yml", []byte("all:\n  vars:\n    kms_storage_path: /usr\n  hosts:\n    kms1:\n      kms_port: 99999\n"))
	if err == nil {
		t.Fatal("want error")
	}
	want := "site.yml:3:23: all.vars.kms_storage_path: storage path /usr is refused: it is a system directory the host needs to boot and to be reached (name the Key Manager's own data directory, e.g. /mnt/minio-kms)\n" +
		"site.yml:6:17: all.hosts.kms1.kms_port: port 99999 out of range (write a number from 1 to 65535)"
	if err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%v", err, want)
	}
}

func TestExpandHomeRelative(t *testing.T) {
	t.Setenv("HOME", "/home/op")
	for in, want := range map[string]string{"~": "/home/op", "~/x": "/home/op/x", "/abs": "/abs", "rel/x": "rel/x", "~other/x": "~other/x"} {
		got, err := expandHome(in)
		if err != nil || got != want {
			t.Errorf("expandHome(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestResolveUnsupported checks the Ansible settings kmsctl cannot honour
// are refused rather than silently ignored.
func TestResolveUnsupported(t *testing.T) {
	inv := mustParse(t, `
all:
  hosts:
    local:
      ansible_connection: local
    proxied:
      ansible_ssh_common_args: '-o ProxyCommand="ssh -W %h:%p -q bastion"'
    proxied_ok:
      ansible_ssh_common_args: '-J bastion'
      kms_ssh_proxy_jump: bastion
    args_ok:
      ansible_ssh_common_args: '-o ServerAliveInterval=5'
      ansible_connection: ssh
    extra:
      ansible_ssh_extra_args: '-J bastion'
    args:
      ansible_ssh_args: '-o ProxyJump=bastion'
`)
	for host, want := range map[string]string{
		"local":   "inv.yml:5:27: host local: ansible_connection: connection type local is not supported",
		"proxied": "inv.yml:7:32: host proxied: ansible_ssh_common_args: kmsctl does not read ansible_ssh_common_args",
		"extra":   "inv.yml:15:31: host extra: ansible_ssh_extra_args: kmsctl does not read ansible_ssh_extra_args",
		"args":    "inv.yml:17:25: host args: ansible_ssh_args: kmsctl does not read ansible_ssh_args",
	} {
		_, err := sshOf(inv, host, nil)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Resolve(%s) = %v, want %q", host, err, want)
		}
	}
	for _, host := range []string{"proxied_ok", "args_ok"} {
		if _, err := sshOf(inv, host, nil); err != nil {
			t.Errorf("Resolve(%s): %v", host, err)
		}
	}
}

// TestResolveOneValue: Resolve's three views of a host come from one merged
// set of variables with -e applied: the address -e gives reaches the SSH
// settings, the derived endpoint of the layout and the variables alike, and
// each view equals the one Vars and Node give on their own.
func TestResolveOneValue(t *testing.T) {
	inv := mustParse(t, `
all:
  vars:
    kms_port: 7474
  hosts:
    kms1:
      ansible_host: 10.0.0.1
      ansible_user: ops
`)
	extra := map[string]any{"ansible_host": "10.9.9.9", "kms_port": 7400}
	h, err := inv.Resolve("kms1", extra)
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "kms1" || h.SSH.Address != "10.9.9.9" || h.SSH.User != "ops" || h.KMS.Endpoint != "10.9.9.9:7400" || h.KMS.Port != 7400 {
		t.Errorf("Resolve = %+v", h)
	}
	vars, err := inv.Vars("kms1", extra)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.Vars, vars) || h.Vars["kms_endpoint"] != "10.9.9.9:7400" {
		t.Errorf("Resolve vars:\n got %v\nwant %v", h.Vars, vars)
	}
	node, err := inv.Node("kms1", extra)
	if err != nil || !reflect.DeepEqual(h.KMS, node) {
		t.Errorf("Resolve layout %+v, Node %+v, %v", h.KMS, node, err)
	}
	// One report for every problem of the host, settings and layout alike;
	// kms_api, read by both, is reported once.
	_, err = inv.Resolve("kms1", map[string]any{"ansible_port": "abc", "kms_storage_path": "/", "kms_api": "pigeon"})
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	if _, err := inv.Resolve("ghost", nil); err == nil || !strings.Contains(err.Error(), `"ghost"`) {
		t.Errorf("unknown host: %v", err)
	}
}

// TestEveryProblemAtOnce: a problem of the resolved layout (a storage path
// holding the config file) is reported together with a per-field problem
// of another host, not only once that one is fixed.
func TestEveryProblemAtOnce(t *testing.T) {
	_, err := Parse("inv.yml", []byte(`all:
  hosts:
    kms1:
      kms_port: 99999
    kms2:
      kms_storage_path: /opt/minkms
      kms_config_file: /opt/minkms/config.yaml
`))
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 2 {
		t.Fatalf("want 2 problems, got %v", err)
	}
	if !strings.HasPrefix(ve.Errs[0].Error(), "inv.yml:4:17: all.hosts.kms1.kms_port: port 99999") ||
		!strings.HasPrefix(ve.Errs[1].Error(), "inv.yml:6:25: host kms2: kms_storage_path: storage path /opt/minkms contains kms_config_file") {
		t.Errorf("problems:\n%v", err)
	}
	var se *safepath.Error
	if !errors.As(err, &se) {
		t.Errorf("the storage path refusal is not a *safepath.Error: %v", err)
	}
}

// TestDuplicateEndpoint: two hosts with one kms_endpoint are an error naming
// both hosts and where each was set; endpoints derived from one
// ansible_host are not.
func TestDuplicateEndpoint(t *testing.T) {
	// A host without kms_endpoint (listed first) does not end the check.
	_, err := Parse("inv.yml", []byte(`all:
  hosts:
    bastion:
    kms1:
      kms_endpoint: kms1.example:7373
    kms2:
      kms_endpoint: KMS1.example:7373
    kms3:
      kms_endpoint: kms3.example:7373
`))
	want := "inv.yml:7:21: host kms2: kms_endpoint: endpoint KMS1.example:7373 is also the endpoint of host kms1 (set at inv.yml:5:21) (give each Key Manager node its own kms_endpoint, its host:port as the cluster knows it)"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	// Set once for a group: every host after the first is reported.
	_, err = Parse("inv.yml", []byte(`all:
  vars:
    kms_endpoint: one:7373
  hosts:
    a:
    b:
    c:
`))
	var ve *yamlpos.List
	if !errors.As(err, &ve) || len(ve.Errs) != 2 || !strings.Contains(ve.Errs[1].Error(), "host c: kms_endpoint: endpoint one:7373 is also the endpoint of host a (set at inv.yml:3:19)") {
		t.Errorf("group endpoint: %v", err)
	}
	mustParse(t, `
all:
  hosts:
    a: {ansible_host: 127.0.0.1, ansible_port: 2201}
    b: {ansible_host: 127.0.0.1, ansible_port: 2202}
`)
}

// TestNodeKeySources: where the keys are (files, commands) and
// kms_api_address resolve; a key itself in an inventory is refused at its
// position, without echoing it.
func TestNodeKeySources(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	inv := mustParse(t, `
all:
  vars:
    kms_api_key_file: ~/kms/api.key
    kms_hsm_key_command: [pass, show, "kms/hsm key"]
  hosts:
    kms1:
      kms_api_key_command: pass show 'kms/api key'
      kms_hsm_key_file: /etc/kmsctl/hsm.key
      kms_api_address: 203.0.113.7:17373
`)
	n, err := inv.Node("kms1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.APIKeyFile != filepath.Join(home, "kms/api.key") || n.HSMKeyFile != "/etc/kmsctl/hsm.key" ||
		!slices.Equal(n.APIKeyCommand, []string{"pass", "show", "kms/api key"}) ||
		!slices.Equal(n.HSMKeyCommand, []string{"pass", "show", "kms/hsm key"}) || n.APIAddress != "203.0.113.7:17373" {
		t.Errorf("key sources: %+v", n)
	}
	if _, err := inv.Node("kms1", map[string]any{"kms_api_key_command": "pass 'unterminated"}); err == nil || !strings.Contains(err.Error(), "cannot split") {
		t.Errorf("an unterminated quote in a command: %v", err)
	}
	for name, v := range map[string]any{"kms_api_key_command": "", "kms_hsm_key_command": []any{"pass", 3}, "kms_hsm_key_file": 7, "kms_api_address": "no-port"} {
		if _, err := inv.Node("kms1", map[string]any{name: v}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s = %v: %v, want an error naming it", name, v, err)
		}
	}
	const sentinel = "hsm:aes256:SENTINEL"
	_, err = Parse("inv.yml", []byte("all:\n  hosts:\n    kms1:\n      kms_hsm_key: "+sentinel+"\n"))
	if err == nil || !isRefusal(err) || strings.Contains(err.Error(), sentinel) ||
		!strings.Contains(err.Error(), "inv.yml:4:20") || !strings.Contains(err.Error(), "MINIO_KMS_HSM_KEY") {
		t.Errorf("an HSM key in an inventory: %v; want a refusal at inv.yml:4:20 pointing to MINIO_KMS_HSM_KEY", err)
	}
}

// TestNodeFileSources: the local sources of the node's files are read
// with ~ expanded; a value that is not a path is an error naming it.
func TestNodeFileSources(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	inv := mustParse(t, `
all:
  vars:
    kms_binary_src: ~/bin/minkms
    kms_ca_src: ./pki/ca.crt
  hosts:
    kms1:
      kms_tls_cert_src: /pki/kms1.crt
      kms_tls_key_src: /pki/kms1.key
      kms_config_src: /pki/config.yaml
    kms2:
      kms_service: kms.service
      kms_unit_file: /tmp/kms.service
`)
	n, err := inv.Node("kms1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.BinarySrc != filepath.Join(home, "bin/minkms") || n.CASrc != "./pki/ca.crt" || n.TLSCertSrc != "/pki/kms1.crt" ||
		n.TLSKeySrc != "/pki/kms1.key" || n.ConfigSrc != "/pki/config.yaml" || n.UnitFile != "/etc/systemd/system/minkms.service" {
		t.Errorf("file sources: %+v", n)
	}
	n, err = inv.Node("kms2", nil)
	if err != nil || n.TLSCertSrc != "" || n.TLSKeySrc != "" || n.ConfigSrc != "" || n.UnitFile != "/tmp/kms.service" {
		t.Errorf("kms2 names no certificate or config source: %+v, %v", n, err)
	}
	if _, err := inv.Node("kms2", map[string]any{"kms_unit_file": "relative/x"}); err == nil || !strings.Contains(err.Error(), "kms_unit_file") {
		t.Errorf("a relative kms_unit_file: %v", err)
	}
	for _, name := range []string{"kms_binary_src", "kms_tls_cert_src", "kms_tls_key_src", "kms_ca_src", "kms_config_src"} {
		for _, v := range []any{7, "a\x01b"} {
			if _, err := inv.Node("kms1", map[string]any{name: v}); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s = %q: %v, want an error naming it", name, v, err)
			}
		}
	}
}

// TestNodeFilesFromPeer: kms_binary_from, kms_ca_from and kms_config_from
// take peer only, and never together with the local source of the same
// file; the node's own certificate and key have no such variable.
func TestNodeFilesFromPeer(t *testing.T) {
	inv := mustParse(t, `
all:
  vars:
    kms_binary_from: peer
    kms_ca_from: peer
  hosts:
    kms2:
      kms_config_from: peer
`)
	n, err := inv.Node("kms2", nil)
	if err != nil || n.BinaryFrom != "peer" || n.CAFrom != "peer" || n.ConfigFrom != "peer" || n.BinarySrc != "" {
		t.Fatalf("kms2: %+v, %v", n, err)
	}
	if _, err := inv.Node("kms2", map[string]any{"kms_ca_src": "/pki/ca.crt"}); err == nil || !strings.Contains(err.Error(), "kms_ca_from and kms_ca_src") {
		t.Errorf("a CA from a peer and from a local file: %v", err)
	}
	for _, v := range []any{"kms1", "Peer", 1, true} {
		if _, err := inv.Node("kms2", map[string]any{"kms_config_from": v}); err == nil || !strings.Contains(err.Error(), "kms_config_from") {
			t.Errorf("kms_config_from = %v: %v, want an error naming it", v, err)
		}
	}
	for _, name := range []string{"kms_tls_key_from", "kms_tls_cert_from"} {
		_, err := Parse("inv.yml", []byte("all:\n  hosts:\n    kms1:\n      "+name+": peer\n"))
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "never copied from a peer") {
			t.Errorf("%s (the node's own file from a peer): %v", name, err)
		}
	}
}
