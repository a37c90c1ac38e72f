package kmsmodules_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/tasks"
)

// status runs kms_status on h with the registry reg and memo, and returns
// its error (nil when it reached the node with a key the node accepts).
func statusWith(t *testing.T, reg *tasks.Registry, h *host, memo *sync.Map) error {
	t.Helper()
	m, _ := reg.Lookup("kms_status")
	r, err := m.Apply(t.Context(), h.taskEnv(map[string]any{}, memo))
	if err != nil {
		return err
	}
	if r.Failed {
		t.Fatalf("kms_status failed: %s", r.Msg)
	}
	return nil
}

func writeKey(t *testing.T, text string, mode os.FileMode) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "api.key")
	if err := os.WriteFile(f, []byte(text+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, mode); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestAPIKeySources: the admin API key comes from MINIO_KMS_API_KEY, then
// --api-key-file, then kms_api_key_file, then kms_api_key_command; a file
// others may read is refused with the fix; a command runs once per run,
// without a shell; the key never appears in an error.
func TestAPIKeySources(t *testing.T) {
	l := newLab(t)
	n := l.start()
	good := l.admin.Secret()
	const wrong = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	registry := func(env map[string]string, flagFile string) *tasks.Registry {
		reg := tasks.NewRegistry()
		kmsmodules.Register(reg, kmsmodules.Options{Getenv: func(k string) string { return env[k] }, APIKeyFile: flagFile})
		return reg
	}
	goodFile, wrongFile := writeKey(t, good, 0o600), writeKey(t, wrong, 0o600)
	h := l.sshHost("kms1", n)

	// Each source alone works.
	h.node.APIKeyFile = goodFile
	if err := statusWith(t, registry(nil, ""), h, nil); err != nil {
		t.Errorf("kms_api_key_file: %v", err)
	}
	h.node.APIKeyFile = ""
	if err := statusWith(t, registry(nil, goodFile), h, nil); err != nil {
		t.Errorf("--api-key-file: %v", err)
	}
	h.node.APIKeyCommand = []string{"cat", goodFile}
	if err := statusWith(t, registry(nil, ""), h, nil); err != nil {
		t.Errorf("kms_api_key_command: %v", err)
	}

	// Precedence: environment > --api-key-file > kms_api_key_file > command.
	h.node.APIKeyFile, h.node.APIKeyCommand = wrongFile, []string{"cat", wrongFile}
	if err := statusWith(t, registry(map[string]string{inventory.EnvAPIKey: good}, wrongFile), h, nil); err != nil {
		t.Errorf("the environment does not come first: %v", err)
	}
	if err := statusWith(t, registry(nil, goodFile), h, nil); err != nil {
		t.Errorf("--api-key-file does not come before kms_api_key_file: %v", err)
	}
	h.node.APIKeyFile, h.node.APIKeyCommand = goodFile, []string{"cat", wrongFile}
	if err := statusWith(t, registry(nil, ""), h, nil); err != nil {
		t.Errorf("kms_api_key_file does not come before the command: %v", err)
	}

	// A command runs once per run (Env.Memo), not once per host.
	count := filepath.Join(t.TempDir(), "count")
	script := filepath.Join(t.TempDir(), "print-key")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho run >> "+count+"\ncat "+goodFile+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	h.node.APIKeyFile, h.node.APIKeyCommand = "", []string{script}
	memo := &sync.Map{}
	reg := registry(nil, "")
	for range 3 {
		if err := statusWith(t, reg, h, memo); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "run") != 1 {
		t.Errorf("the key command ran %d times in one run, want once", strings.Count(string(b), "run"))
	}

	// Misuse: a file others may read, a failing command, none at all, a
	// file holding something else. The key never appears in the error.
	for name, tc := range map[string]struct {
		flag, file string
		cmd        []string
		refusal    bool
		want       []string
	}{
		"group-readable file": {file: writeKey(t, good, 0o640), refusal: true, want: []string{"mode 0640", "chmod 600 "}},
		"world-readable flag": {flag: writeKey(t, good, 0o644), refusal: true, want: []string{"--api-key-file", "chmod 600 "}},
		"failing command":     {cmd: []string{"sh", "-c", "echo vault is sealed >&2; exit 3"}, want: []string{"kms_api_key_command (sh)", "exit status 3", "vault is sealed"}},
		"silent command":      {cmd: []string{"true"}, want: []string{"printed nothing"}},
		"missing program":     {cmd: []string{"/nonexistent/pass"}, want: []string{"kms_api_key_command"}},
		"nothing":             {want: []string{"no admin API key", "MINIO_KMS_API_KEY", "kms_api_key_file", "kms_api_key_command"}},
		"not a key":           {file: writeKey(t, "hsm:aes256:"+good, 0o600), want: []string{"admin API key from kms_api_key_file", "not a Key Manager API key"}},
	} {
		h.node.APIKeyFile, h.node.APIKeyCommand = tc.file, tc.cmd
		err := statusWith(t, registry(nil, tc.flag), h, nil)
		if err == nil || isRefusal(err) != tc.refusal {
			t.Errorf("%s: %v (refusal %v), want an error (refusal %v)", name, err, isRefusal(err), tc.refusal)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want it to say %q", name, err, w)
			}
		}
		if strings.Contains(err.Error(), good[3:]) {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}
}
