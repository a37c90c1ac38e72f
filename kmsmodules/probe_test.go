package kmsmodules_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kms/pb"
)

// TestProbeWrite: kms_probe_write creates, uses and deletes a throw-away
// key through the node and leaves no key behind; check mode writes
// nothing; a node that does not answer fails the task.
func TestProbeWrite(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(2)
	h := l.sshHost("kms1", nodes[0])
	c := l.client(nodes[1])
	keys := func() []string {
		var out []string
		for k, err := range c.ListKeys(context.Background(), "", "") {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, (*pb.KeyStatusResponse).GetName(k))
		}
		return out
	}
	res, err := l.run("kms_probe_write", h, nil, true)
	if err != nil || res.Changed || !strings.Contains(res.Msg, "would create, use and delete") {
		t.Fatalf("check mode: %+v, %v", res, err)
	}
	res, err = l.run("kms_probe_write", h, nil, false)
	key, _ := res.Data["key"].(string)
	if err != nil || res.Changed || !strings.HasPrefix(key, "kmsctl-probe-") || res.Data["endpoint"] != nodes[0].Host() {
		t.Fatalf("probe: %+v, %v", res, err)
	}
	if k := keys(); len(k) != 0 {
		t.Errorf("keys left behind: %v", k)
	}
	nodes[0].Close()
	if _, err := l.run("kms_probe_write", h, nil, false); err == nil || !strings.Contains(err.Error(), "write and read back through kms1") {
		t.Fatalf("probe of a stopped node: %v", err)
	}
}

// TestEnvFile: kms_env_file renders the env file with the operator's HSM
// key and writes it 0600; a second run changes nothing, a wrong mode is
// fixed; check mode writes nothing; the key is never in a message; a
// template that does not write the key and a missing operator key fail.
func TestEnvFile(t *testing.T) {
	l := newLab(t)
	n := l.start()
	h := l.sshHost("kms1", n)
	h.conn.DeleteFile(inventory.DefaultEnvFile)
	dir := t.TempDir()
	tpl := filepath.Join(dir, "minkms.env.j2")
	if err := os.WriteFile(tpl, []byte("MINIO_KMS_HSM_KEY={{ kms_hsm_key }}\nMINIO_KMS_VOLUME={{ volume }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args map[string]any, check bool) (string, bool, error) {
		t.Helper()
		res, err := l.run("kms_env_file", h, args, check)
		if strings.Contains(res.Msg, l.hsmKey.Text()) || (err != nil && strings.Contains(err.Error(), l.hsmKey.Text())) {
			t.Errorf("the key is shown: %q, %v", res.Msg, err)
		}
		return res.Msg, res.Changed, err
	}
	args := map[string]any{"src": tpl}
	if _, _, err := run(args, false); err == nil || !strings.Contains(err.Error(), "HSM key") {
		t.Fatalf("no operator key: %v", err)
	}
	l.env[inventory.EnvHSMKey] = l.hsmKey.Text()
	// The template's other variables come from the task's; here none.
	if _, _, err := run(args, false); err == nil || !strings.Contains(err.Error(), "volume") {
		t.Fatalf("an undefined variable: %v", err)
	}
	if err := os.WriteFile(tpl, []byte("MINIO_KMS_HSM_KEY={{ kms_hsm_key }}\nMINIO_KMS_VOLUME=/mnt/minio-kms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	msg, changed, err := run(args, true)
	if _, written := h.conn.File(inventory.DefaultEnvFile); err != nil || !changed || written || !strings.Contains(msg, l.hsmKey.Fingerprint()) {
		t.Fatalf("check mode: %q %v %v (written %v)", msg, changed, err, written)
	}
	if _, changed, err := run(args, false); err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	f, _ := h.conn.File(inventory.DefaultEnvFile)
	if f.Mode.Perm() != 0o600 || f.Content != "MINIO_KMS_HSM_KEY="+l.hsmKey.Text()+"\nMINIO_KMS_VOLUME=/mnt/minio-kms\n" {
		t.Fatalf("env file %o %q", f.Mode, f.Content)
	}
	if msg, changed, err := run(args, false); err != nil || changed || !strings.Contains(msg, "already holds") {
		t.Fatalf("second write: %q %v %v", msg, changed, err)
	}
	h.conn.SetFile(inventory.DefaultEnvFile, f.Content, 0o644)
	if _, changed, err := run(args, false); err != nil || !changed {
		t.Fatalf("mode 0644: %v %v", changed, err)
	}
	if f, _ := h.conn.File(inventory.DefaultEnvFile); f.Mode.Perm() != 0o600 {
		t.Fatalf("mode after the fix: %o", f.Mode)
	}
	var other [32]byte
	other[3] = 1
	l.env[inventory.EnvHSMKey] = hsm.New(other).Text()
	if _, changed, err := run(args, false); err != nil || !changed {
		t.Fatalf("another operator key: %v %v", changed, err)
	}
	if err := os.WriteFile(tpl, []byte("MINIO_KMS_VOLUME=/mnt/minio-kms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(args, false); err == nil || !strings.Contains(err.Error(), "does not write the HSM key") {
		t.Fatalf("a template without the key: %v", err)
	}
}
