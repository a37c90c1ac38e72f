package kmsmodules_test

import (
	"errors"
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

// TestCheckAPIKey: the admin API key is checked where the modules look for
// it, on this machine: a good file passes, a file others may read is a
// refusal, a missing, empty or malformed file and no source at all are
// errors naming the file; the environment comes first; a command is not
// run (nothing to check before the first module runs it).
func TestCheckAPIKey(t *testing.T) {
	good := "k1:" + strings.Repeat("A", 43)
	goodFile := writeKey(t, good, 0o600)
	for _, tc := range []struct {
		name    string
		env     string
		flag    string
		file    string
		command []string
		want    string // "" passes
		refused bool
	}{
		{name: "good flag file", flag: goodFile},
		{name: "good inventory file", file: goodFile},
		{name: "readable by others", flag: writeKey(t, good, 0o644), want: "has mode 0644: others may read the key; run chmod 600", refused: true},
		{name: "missing", flag: "/nonexistent/api.key", want: "--api-key-file /nonexistent/api.key: open /nonexistent/api.key"},
		{name: "empty", file: writeKey(t, "", 0o600), want: "api.key is empty"},
		{name: "malformed", flag: writeKey(t, "garbage", 0o600), want: "not a Key Manager API key"},
		{name: "no source", want: "no admin API key: export MINIO_KMS_API_KEY"},
		{name: "environment first", env: good, flag: "/nonexistent/api.key"},
		{name: "malformed environment", env: "garbage", want: "admin API key from $MINIO_KMS_API_KEY"},
		{name: "command not run", command: []string{"/nonexistent/print-key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := kmsmodules.Options{Getenv: func(k string) string {
				if k == inventory.EnvAPIKey {
					return tc.env
				}
				return ""
			}, APIKeyFile: tc.flag}
			err := kmsmodules.CheckAPIKey(o, inventory.KMSNode{Host: "kms1", APIKeyFile: tc.file, APIKeyCommand: tc.command})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
			var r interface{ Refused() bool }
			if refused := errors.As(err, &r) && r.Refused(); refused != tc.refused {
				t.Errorf("refused = %v, want %v (%v)", refused, tc.refused, err)
			}
			if strings.Contains(err.Error(), good) {
				t.Errorf("the key appears in %v", err)
			}
		})
	}
}
