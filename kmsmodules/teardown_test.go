package kmsmodules_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/tasks"
)

// provisioned is a host as `kmsctl provision` leaves it, in the default
// layout, for the simulator node n (running or not): env file with the
// lab's HSM key, certificates, config, unit (enabled, inactive), binary and
// a storage path with state in it; plus files of others beside them.
func (l *lab) provisioned(name string, n *kmsim.Node) *host {
	h := l.sshHost(name, n)
	k := &h.node
	k.StoragePath, k.ConfigFile, k.CertsDir = inventory.DefaultStoragePath, inventory.DefaultConfigFile, inventory.DefaultCertsDir
	k.Binary, k.Service, k.UnitFile = inventory.DefaultBinary, inventory.DefaultService, inventory.DefaultUnitDir+"/"+inventory.DefaultService
	c := h.conn
	c.SetFile(k.EnvFile, "# written by kmsctl\nMINIO_KMS_HSM_KEY="+l.hsmKey.Text()+"\nMINIO_KMS_VOLUME=/mnt/minio-kms\n", 0o600)
	c.SetFile(k.CertsDir+"/private.key", "PRIVATE KEY", 0o600)
	c.SetFile(k.CertsDir+"/public.crt", "CERT", 0o644)
	c.SetFile(k.CertsDir+"/ca.crt", "CA", 0o644)
	c.SetFile(k.ConfigFile, "version: v1\n", 0o640)
	c.SetFile(k.UnitFile, "[Service]\nExecStart=/usr/local/bin/minkms server\n", 0o644)
	c.SetFile(k.Binary, "ELF", 0o755)
	c.SetFile(k.StoragePath+"/db/state", "sealed", 0o600)
	c.SetUnit(k.Service, fake.Unit{Enabled: true})
	// Not the node's: they must survive.
	c.SetFile("/etc/default/ssh", "SSHD_OPTS=\n", 0o644)
	c.SetFile("/usr/local/bin/other", "ELF", 0o755)
	c.SetFile("/mnt/other/data", "x", 0o644)
	return h
}

// stoppedNode is a simulator node that no longer runs: its port refuses.
func (l *lab) stoppedNode() *kmsim.Node {
	n := l.start()
	n.Close()
	return n
}

// layoutPaths are the node's paths kms_teardown removes.
func layoutPaths(k inventory.KMSNode) []string {
	return []string{k.EnvFile, k.CertsDir + "/private.key", k.StoragePath, k.ConfigFile, k.CertsDir + "/public.crt", k.CertsDir + "/ca.crt",
		k.UnitFile, k.Binary, k.CertsDir, "/etc/minkms"}
}

// TestTeardown: kms_teardown on a stopped, provisioned node plans without
// changing anything, then removes exactly the node's layout, the env file
// with the HSM key first, disables the unit and reloads systemd, leaves
// every other file, shows no key, and a second run changes nothing.
func TestTeardown(t *testing.T) {
	l := newLab(t)
	h := l.provisioned("kms9", l.stoppedNode())
	before := h.conn.Snapshot()
	r, err := l.run("kms_teardown", h, nil, true)
	if err != nil || !r.Changed {
		t.Fatalf("plan = %+v, %v; want changed", r, err)
	}
	if got := h.conn.Snapshot(); got != before {
		t.Fatalf("the plan changed the host:\n%s", got)
	}
	if want := anyOf(layoutPaths(h.node)); !slices.Equal(r.Data["would_remove"].([]any), want) {
		t.Errorf("would_remove = %v, want %v", r.Data["would_remove"], want)
	}
	r, err = l.run("kms_teardown", h, nil, false)
	if err != nil || !r.Changed || r.Failed {
		t.Fatalf("teardown = %+v, %v", r, err)
	}
	if r.Data["fingerprint"] != l.hsmKey.Fingerprint() {
		t.Errorf("fingerprint = %v", r.Data["fingerprint"])
	}
	for _, p := range layoutPaths(h.node) {
		if _, ok := h.conn.File(p); ok {
			t.Errorf("%s is still there", p)
		}
	}
	for _, p := range []string{"/etc/default/ssh", "/usr/local/bin/other", "/mnt/other/data", "/etc/default", "/etc/systemd/system", "/mnt"} {
		if _, ok := h.conn.File(p); !ok {
			t.Errorf("%s was removed: not the node's", p)
		}
	}
	var changes []string
	for _, c := range h.conn.Calls() {
		switch {
		case c.Kind == fake.KindRemove:
			changes = append(changes, "remove "+c.Path)
		case c.Kind == fake.KindRun && !strings.HasPrefix(c.Command, "systemctl show") && !strings.HasPrefix(c.Command, "find "):
			changes = append(changes, c.Command)
		}
	}
	want := []string{"systemctl disable -- minkms.service", "remove /etc/default/minkms", "remove /etc/minkms/certs/private.key", "rm -rf -- /mnt/minio-kms"}
	if len(changes) < len(want) || !slices.Equal(changes[:len(want)], want) {
		t.Errorf("changes in order:\n%s\nwant them to start with:\n%s", strings.Join(changes, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Contains(changes, "systemctl daemon-reload") {
		t.Errorf("systemd not reloaded after the unit file went: %q", changes)
	}
	if u, _ := h.conn.Unit("minkms.service"); u.Enabled {
		t.Error("the unit is still enabled")
	}
	noKey(t, l.hsmKey, r)
	r, err = l.run("kms_teardown", h, nil, false)
	if err != nil || r.Changed {
		t.Fatalf("second teardown = %+v, %v; want ok, unchanged", r, err)
	}
}

// TestTeardownKeepsOthersFiles: a file of someone else's in the
// certificates directory keeps it and the config directory (rmdir only);
// one that holds the HSM key fails the verification (exit 7), after every
// path of the layout is gone.
func TestTeardownKeepsOthersFiles(t *testing.T) {
	l := newLab(t)
	h := l.provisioned("kms9", l.stoppedNode())
	h.conn.SetFile("/etc/minkms/certs/extra.pem", "someone's", 0o644)
	r, err := l.run("kms_teardown", h, nil, false)
	if err != nil || !r.Changed {
		t.Fatalf("teardown = %+v, %v", r, err)
	}
	for _, p := range []string{"/etc/minkms/certs/extra.pem", "/etc/minkms/certs", "/etc/minkms"} {
		if _, ok := h.conn.File(p); !ok {
			t.Errorf("%s was removed", p)
		}
	}
	if !strings.Contains(r.Msg, "kept /etc/minkms/certs, /etc/minkms") {
		t.Errorf("msg = %q", r.Msg)
	}
	if r, err := l.run("kms_teardown", h, nil, false); err != nil || r.Changed {
		t.Errorf("second teardown = %+v, %v; want ok", r, err)
	}

	h = l.provisioned("kms8", l.stoppedNode())
	h.conn.SetFile("/etc/minkms/env.bak", "MINIO_KMS_HSM_KEY="+l.hsmKey.Text()+"\n", 0o600)
	r, err = l.run("kms_teardown", h, nil, false)
	if !isVerification(err) || !r.Failed || !strings.Contains(err.Error(), "/etc/minkms/env.bak holds the HSM key "+l.hsmKey.Fingerprint()) {
		t.Fatalf("teardown with a copy of the key left = %+v, %v; want a verification error naming the file", r, err)
	}
	if _, ok := h.conn.File(h.node.EnvFile); ok {
		t.Error("the env file is still there")
	}
	noKey(t, l.hsmKey, r)
}

// TestTeardownRefusals: kms_teardown refuses (exit 4) a running node, a
// node whose Key Manager answers, a layout it must not act on, and an env
// file that is not one; each time the host is left exactly as it was. It
// takes no path to remove.
func TestTeardownRefusals(t *testing.T) {
	l := newLab(t)
	cases := []struct {
		name    string
		running bool // the simulator node answers
		set     func(h *host)
		want    string
	}{
		{"service active", false, func(h *host) { h.conn.SetUnit("minkms.service", fake.Unit{Active: true, Enabled: true}) }, "minkms.service is active on kms9"},
		{"running member", true, func(h *host) {}, "answers as node 0 of a cluster of 1"},
		{"storage path /", false, func(h *host) { h.node.StoragePath = "/" }, "the storage path is /"},
		{"storage path holds the config", false, func(h *host) { h.node.StoragePath = "/etc/minkms" }, "kms_storage_path: refusing /etc/minkms"},
		{"storage path in /usr", false, func(h *host) { h.node.StoragePath = "/usr" }, "refusing /usr"},
		{"relative path", false, func(h *host) { h.node.Binary = "bin/minkms" }, `the binary "bin/minkms" is not an absolute, clean path`},
		{"unclean path", false, func(h *host) { h.node.ConfigFile = "/etc/minkms/../passwd" }, "is not an absolute, clean path"},
		{"ssh directory", false, func(h *host) { h.node.Binary = "/root/.ssh/authorized_keys" }, "is in an SSH directory"},
		{"unit file of another service", false, func(h *host) { h.node.UnitFile = "/etc/systemd/system/ssh.service" }, "is not named after the service"},
		{"env file is not one", false, func(h *host) {
			h.node.EnvFile = "/etc/passwd"
			h.conn.SetFile("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644)
		}, "/etc/passwd on kms9 is not a Key Manager env file"},
		{"a file path is a directory", false, func(h *host) { h.node.Binary = "/usr/local/bin" }, "the binary /usr/local/bin on kms9 is a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := l.start()
			if !c.running {
				n.Close()
			}
			h := l.provisioned("kms9", n)
			c.set(h)
			before := h.conn.Snapshot()
			for _, check := range []bool{true, false} {
				r, err := l.run("kms_teardown", h, nil, check)
				if !isRefusal(err) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("check=%v: %+v, %v; want a refusal saying %q", check, r, err, c.want)
				}
				if !strings.Contains(err.Error(), "nothing was removed") {
					t.Errorf("the refusal does not say that nothing was removed: %v", err)
				}
			}
			if got := h.conn.Snapshot(); got != before {
				t.Errorf("the refused teardown changed the host:\n%s\nwas:\n%s", got, before)
			}
		})
	}
	if err := l.reg.Validate(tasks.Task{Module: "kms_teardown", Args: map[string]any{"path": "/etc/passwd"}}); err == nil {
		t.Error("kms_teardown took a path argument: it removes only the node's layout")
	}
}

func anyOf(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// noKey fails when the result shows the HSM key.
func noKey(t *testing.T, k hsm.Key, r tasks.Result) {
	t.Helper()
	payload := k.Text()[len(hsm.Prefix):]
	for _, s := range []string{r.Msg, r.Stdout, r.Stderr} {
		if strings.Contains(s, payload) {
			t.Errorf("the result shows the HSM key: %q", s)
		}
	}
	if d := fmt.Sprint(r.Data); strings.Contains(d, payload) {
		t.Errorf("the result's data shows the HSM key: %s", d)
	}
}

// TestTeardownRemovesInterruptedUploads: the temp copies that an upload cut
// off before its rename leaves beside a file of the layout (a file, or the
// private directory of the slow path) are removed with it, the env file's,
// which holds the HSM key, right after the env file; a temp copy of a file
// that is not the node's stays. Without them in the layout, the env file's
// copy would keep the HSM key on the host unseen.
func TestTeardownRemovesInterruptedUploads(t *testing.T) {
	l := newLab(t)
	h := l.provisioned("kms9", l.stoppedNode())
	envLeft := "/etc/default/.minkms.kmsctl-tmp-3f9a1c0d2b4e6f70"
	binLeft := "/usr/local/bin/.minkms.kmsctl-tmp-0011223344556677"
	others := "/etc/default/.ssh.kmsctl-tmp-aaaaaaaaaaaaaaaa"
	h.conn.SetFile(envLeft, "MINIO_KMS_HSM_KEY="+l.hsmKey.Text()+"\n", 0o600)
	h.conn.SetFile(binLeft+"/minkms", "ELF, half of it", 0o600)
	h.conn.SetFile(others, "SSHD_OPTS=\n", 0o600)
	r, err := l.run("kms_teardown", h, nil, true)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	would := r.Data["would_remove"].([]any)
	if len(would) < 2 || would[0] != h.node.EnvFile || would[1] != envLeft || !slices.Contains(would, any(binLeft)) {
		t.Errorf("would_remove = %v; want the env file, then its interrupted upload %s, and %s", would, envLeft, binLeft)
	}
	r, err = l.run("kms_teardown", h, nil, false)
	if err != nil || r.Failed {
		t.Fatalf("teardown = %+v, %v", r, err)
	}
	for _, p := range []string{envLeft, binLeft, binLeft + "/minkms"} {
		if _, ok := h.conn.File(p); ok {
			t.Errorf("%s is still there", p)
		}
	}
	if _, ok := h.conn.File(others); !ok {
		t.Errorf("%s was removed: an upload of a file that is not the node's", others)
	}
	noKey(t, l.hsmKey, r)
	if r, err := l.run("kms_teardown", h, nil, false); err != nil || r.Changed {
		t.Errorf("second teardown = %+v, %v; want ok, unchanged", r, err)
	}
}
