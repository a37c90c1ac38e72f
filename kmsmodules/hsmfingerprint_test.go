package kmsmodules_test

import (
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/hsm"
)

// TestHSMFingerprint: kms_hsm_fingerprint registers the fingerprint of the
// key in the node's env file, whatever the file's quoting; a file without
// the key, with a malformed key or missing fails naming the file, never
// showing its content (the parsing is kms_hsm_check's, tested there).
func TestHSMFingerprint(t *testing.T) {
	l := newLab(t)
	other := hsm.New([32]byte{9})
	const file = "/etc/default/minkms"
	cases := []struct {
		name, content string
		want          string // fingerprint; "" = failure containing fail
		fail          string
	}{
		{"plain", "MINIO_KMS_HSM_KEY=" + l.hsmKey.Text() + "\nMINIO_KMS_VOLUME=/mnt/minio-kms\n", l.hsmKey.Fingerprint(), ""},
		{"quoted with comments", "# key\nexport MINIO_KMS_HSM_KEY=\"" + other.Text() + "\"\nMINIO_KMS_OPTS=\"--host a:7373\"\n", other.Fingerprint(), ""},
		{"no key", "MINIO_KMS_VOLUME=/mnt/minio-kms\n", "", "/etc/default/minkms sets no MINIO_KMS_HSM_KEY"},
		{"malformed key", "MINIO_KMS_HSM_KEY=hsm:aes256:c2VjcmV0LXNlY3JldA==\n", "", "malformed HSM key"},
		{"no prefix", "MINIO_KMS_HSM_KEY=\"c2VjcmV0LXNlY3JldA==\n", "", "/etc/default/minkms:1: MINIO_KMS_HSM_KEY: parse HSM key"},
		{"missing", "", "", "read the env file " + file},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := l.sshHost("kms1", l.start())
			h.node.EnvFile = file
			if c.content != "" {
				h.conn.SetFile(file, c.content, 0o600)
			} else {
				h.conn.DeleteFile(file) // the lab's hosts start with an env file
			}
			r, err := l.run("kms_hsm_fingerprint", h, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			out := r.Msg + " " + strings.Join([]string{r.Stdout, r.Stderr}, " ")
			if c.want != "" {
				if r.Failed || r.Data["fingerprint"] != c.want || r.Changed {
					t.Fatalf("result %+v, want fingerprint %s", r, c.want)
				}
			} else if !r.Failed || !strings.Contains(r.Msg, c.fail) || r.Data["fingerprint"] != nil {
				t.Fatalf("result %+v, want a failure saying %q", r, c.fail)
			}
			for _, secret := range []string{"c2VjcmV0LXNlY3JldA", l.hsmKey.Text()[len(hsm.Prefix):], other.Text()[len(hsm.Prefix):]} {
				if strings.Contains(out, secret) {
					t.Errorf("the result shows key material: %q", out)
				}
			}
		})
	}
	h := l.sshHost("kms1", l.start())
	env := h.taskEnv(map[string]any{}, nil)
	env.Host.Target = "x"
	m, _ := l.reg.Lookup("kms_hsm_fingerprint")
	if _, err := m.Apply(t.Context(), env); err == nil || !strings.Contains(err.Error(), "not an inventory host") {
		t.Errorf("kms_hsm_fingerprint on a host without inventory entry: %v", err)
	}
}
