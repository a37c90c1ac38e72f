package kmsmodules_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/inventory"
)

// TestHSMCheck: kms_hsm_check compares the fingerprint of the HSM key in
// the node's env file with the operator's key; only fingerprints are shown,
// never a key; another key fails the task.
func TestHSMCheck(t *testing.T) {
	l := newLab(t)
	n := l.start()
	var other [32]byte
	other[0] = 9
	otherKey := hsm.New(other)
	keys := []string{l.hsmKey.Text(), otherKey.Text()}
	noKey := func(t *testing.T, s string) {
		t.Helper()
		for _, k := range keys {
			if strings.Contains(s, k) || strings.Contains(s, strings.TrimPrefix(k, hsm.Prefix)) {
				t.Errorf("a key is shown: %s", s)
			}
		}
	}
	const envFile = "/etc/default/minkms"
	h := l.sshHost("kms1", n)
	h.node.EnvFile = envFile
	l.env[inventory.EnvHSMKey] = l.hsmKey.Text()

	for name, content := range map[string]string{
		"plain":       "MINIO_KMS_HSM_KEY=" + l.hsmKey.Text() + "\nMINIO_KMS_VOLUME=/mnt/minio-kms\n",
		"quoted":      "# comment\nexport MINIO_KMS_HSM_KEY=\"" + l.hsmKey.Text() + "\"\n",
		"last wins":   "MINIO_KMS_HSM_KEY=" + otherKey.Text() + "\nMINIO_KMS_HSM_KEY='" + l.hsmKey.Text() + "'\n",
		"with spaces": "  MINIO_KMS_HSM_KEY = " + l.hsmKey.Text() + "  \n",
	} {
		h.conn.SetFile(envFile, content, 0o600)
		for _, check := range []bool{true, false} {
			r, err := l.run("kms_hsm_check", h, nil, check)
			if err != nil || r.Failed || r.Changed || r.Data["matches"] != true || r.Data["fingerprint"] != l.hsmKey.Fingerprint() {
				t.Errorf("%s (check %v): %+v, %v", name, check, r, err)
			}
			noKey(t, fmt.Sprint(r.Msg, r.Data))
		}
	}

	// Another key on the node: the task fails a verification (exit 7),
	// naming both fingerprints.
	h.conn.SetFile(envFile, "MINIO_KMS_HSM_KEY="+otherKey.Text()+"\n", 0o600)
	r, err := l.run("kms_hsm_check", h, nil, false)
	if !isVerification(err) || !r.Failed || r.Data["matches"] != false || !strings.Contains(r.Msg, otherKey.Fingerprint()) || !strings.Contains(r.Msg, l.hsmKey.Fingerprint()) {
		t.Errorf("another key: %+v, %v", r, err)
	}
	noKey(t, fmt.Sprint(r.Msg, r.Data))

	// The operator's key from kms_hsm_key_file.
	delete(l.env, inventory.EnvHSMKey)
	h.node.HSMKeyFile = writeKey(t, otherKey.Text(), 0o600)
	if r, err := l.run("kms_hsm_check", h, nil, false); err != nil || r.Failed {
		t.Errorf("operator's key from kms_hsm_key_file: %+v, %v", r, err)
	}
	h.node.HSMKeyFile = ""

	// What cannot be checked is an error that shows no key.
	for name, tc := range map[string]struct {
		content  string
		operator string
		want     string
	}{
		"no operator key": {"MINIO_KMS_HSM_KEY=" + l.hsmKey.Text() + "\n", "", "no HSM key: export MINIO_KMS_HSM_KEY"},
		"no key in file":  {"MINIO_KMS_VOLUME=/mnt\n", l.hsmKey.Text(), "sets no MINIO_KMS_HSM_KEY"},
		"malformed":       {"MINIO_KMS_HSM_KEY=hsm:aes256:" + strings.Repeat("A", 20) + "\n", l.hsmKey.Text(), envFile + ":1: MINIO_KMS_HSM_KEY"},
		"no file":         {"", l.hsmKey.Text(), "read the env file " + envFile},
	} {
		if tc.content == "" {
			h.conn.DeleteFile(envFile)
		} else {
			h.conn.SetFile(envFile, tc.content, 0o600)
		}
		l.env[inventory.EnvHSMKey] = tc.operator
		_, err := l.run("kms_hsm_check", h, nil, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) || isVerification(err) {
			t.Errorf("%s: %v, want an error saying %q (not a failed verification)", name, err, tc.want)
			continue
		}
		noKey(t, err.Error())
		if strings.Contains(err.Error(), strings.Repeat("A", 20)) {
			t.Errorf("%s: the error quotes the file: %v", name, err)
		}
	}
}
