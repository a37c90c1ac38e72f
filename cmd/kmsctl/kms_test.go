package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

// kmsLab is a three-node simulator cluster whose first two nodes are also
// SSH hosts (kms1, kms2; in-process SSH servers that forward tunnels), the
// third stopped, and an inventory reaching their Key Manager APIs through
// SSH (kms_api ssh, kms_port the node's port, kms_ca_file the lab's CA).
type kmsLab struct {
	inventory string
	admin     kms.APIKey
	nodes     []*kmsim.Node
	deadID    uint32
	// leaseDirs are kms1's and kms2's lease directories (kms_lease_dir).
	leaseDirs []string
}

func newKMSLab(t *testing.T) *kmsLab {
	t.Helper()
	dir := t.TempDir()
	sc := startSimCluster(t, dir, 3, hsm.New([32]byte{7}), "")
	caFile := sc.caFile
	l := &kmsLab{admin: sc.admin, nodes: sc.nodes}
	l.deadID = l.nodes[2].NodeID()
	l.nodes[2].Close()

	key := sshtest.GenerateKey(t)
	keyFile := sshtest.ClientKeyFile(t, key, "")
	var hosts, known strings.Builder
	for i, h := range []string{"kms1", "kms2"} {
		s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
		_, port, _ := net.SplitHostPort(l.nodes[i].Host())
		fmt.Fprintf(&hosts, "        %s:\n          ansible_host: 127.0.0.1\n          ansible_port: %d\n          kms_endpoint: %s\n          kms_port: %s\n          kms_lease_dir: %s\n",
			h, s.Port(), l.nodes[i].Host(), port, filepath.Join(dir, "lease-"+h))
		l.leaseDirs = append(l.leaseDirs, filepath.Join(dir, "lease-"+h))
		known.WriteString(s.KnownHostsLine() + "\n")
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(known.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	l.inventory = filepath.Join(dir, "inventory.yml")
	inv := fmt.Sprintf("all:\n  vars:\n    ansible_user: tester\n    ansible_ssh_private_key_file: %s\n    kms_ssh_known_hosts: %s\n"+
		"    kms_api: ssh\n    kms_ca_file: %s\n  children:\n    kms:\n      hosts:\n%s", keyFile, kh, caFile, hosts.String())
	if err := os.WriteFile(l.inventory, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestKeyManagerModules: the CLI registers the Key Manager modules; they
// reach each node through its SSH connection with the admin API key from
// MINIO_KMS_API_KEY; removing a live node's ID exits 4 and changes nothing,
// a wait that runs out exits 6, removing the dead node's ID works.
func TestKeyManagerModules(t *testing.T) {
	l := newKMSLab(t)
	play := func(tasks string) (*testEnvT, int) {
		te := testEnv(t)
		te.vars[envAPIKey] = l.admin.Secret()
		pb := writePlaybook(t, "- hosts: kms\n  tasks:\n"+tasks)
		code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none")
		return te, code
	}
	te, code := play(`    - kms_status:
      register: st
    - assert:
        that:
          - st.endpoint == kms_endpoint
          - len(st.members) == 3
          - st.live
`)
	if code != 0 {
		t.Fatalf("kms_status: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if strings.Contains(te.out.String()+te.errOut.String()+runLogs(t, te), l.admin.Secret()) {
		t.Error("the admin API key appears in the output or run log")
	}

	// --api-key-file: a 0600 file works, a file others may read is refused (exit 4).
	keyFile := filepath.Join(t.TempDir(), "api.key")
	if err := os.WriteFile(keyFile, []byte(l.admin.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	status := writePlaybook(t, "- hosts: kms\n  tasks:\n    - kms_status:\n")
	te = testEnv(t)
	if code := te.run(t, "play", status, "-i", l.inventory, "--ssh-config", "none", "--api-key-file", keyFile); code != 0 {
		t.Fatalf("--api-key-file: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	te = testEnv(t)
	if code := te.run(t, "play", status, "-i", l.inventory, "--ssh-config", "none", "--api-key-file", keyFile); code != exit.Refused ||
		!strings.Contains(te.out.String()+te.errOut.String(), "chmod 600 "+keyFile) {
		t.Fatalf("--api-key-file readable by others: exit %d, want %d\n%s\n%s", code, exit.Refused, te.out, te.errOut)
	}

	te, code = play(fmt.Sprintf("    - kms_remove_node:\n        id: %d\n      when: inventory_hostname == 'kms1'\n", l.nodes[1].NodeID()))
	if code != exit.Refused || !strings.Contains(te.out.String()+te.errOut.String(), "is up as seen by") {
		t.Fatalf("removing a live node: exit %d, want %d\n%s\n%s", code, exit.Refused, te.out, te.errOut)
	}

	te, code = play("    - kms_wait:\n        timeout: 1s\n        interval: 100ms\n")
	if code != exit.TimedOut || !strings.Contains(te.out.String()+te.errOut.String(), "timed out after 1s") {
		t.Fatalf("waiting for a cluster with a dead node: exit %d, want %d\n%s\n%s", code, exit.TimedOut, te.out, te.errOut)
	}

	te, code = play(fmt.Sprintf("    - kms_remove_node:\n        id: %d\n      when: inventory_hostname == 'kms1'\n    - kms_wait:\n        timeout: 20s\n        interval: 100ms\n", l.deadID))
	if code != 0 || !strings.Contains(te.out.String(), "changed: [kms1]") {
		t.Fatalf("removing the dead node: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
}

// TestKeysReadByModulesAreMasked: the keys the Key Manager modules read
// themselves - the admin API key from kms_api_key_file, the operator's HSM
// key from kms_hsm_key_command, the node's HSM key from its env file - are
// masked in the text output, the JSON output and the run log, even when a
// misbehaving task prints them (a command's output, a debug of a
// registered result).
func TestKeysReadByModulesAreMasked(t *testing.T) {
	l := newKMSLab(t)
	dir := t.TempDir()
	apiKeyFile := filepath.Join(dir, "api.key")
	if err := os.WriteFile(apiKeyFile, []byte(l.admin.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	operator := hsm.New([32]byte{7, 7, 7})
	keyCommand := filepath.Join(dir, "hsm-key")
	if err := os.WriteFile(keyCommand, []byte("#!/bin/sh\necho '"+operator.Text()+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	node := hsm.New([32]byte{9, 9, 9})
	envFile := filepath.Join(dir, "minkms.env")
	if err := os.WriteFile(envFile, []byte("MINIO_KMS_HSM_KEY="+node.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{"API key (file)": l.admin.Secret(), "HSM key (command)": operator.Text(), "HSM key (env file)": node.Text()}
	pb := writePlaybook(t, `- hosts: kms
  tasks:
    - kms_status:
    - kms_hsm_check:
      ignore_errors: true
    - command: cat {{ kms_api_key_file }}
      register: api
    - debug: {var: api}
    - command: "{{ key_command }}"
      register: hsm
    - debug: {msg: "operator {{ hsm.stdout }}"}
    - command: cat {{ kms_env_file }}
      register: envfile
    - debug: {msg: "{{ envfile.stdout_lines }}"}
`)
	for _, output := range []string{"text", "json"} {
		te := testEnv(t)
		code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "-o", output, "-v",
			"-e", "kms_api_key_file="+apiKeyFile, "-e", "kms_hsm_key_command="+keyCommand, "-e", "key_command="+keyCommand, "-e", "kms_env_file="+envFile)
		if code != 0 {
			t.Fatalf("-o %s: exit %d\n%s\n%s", output, code, te.out, te.errOut)
		}
		shown := map[string]string{"output": te.out.String() + te.errOut.String(), "run log": runLogs(t, te)}
		for where, text := range shown {
			for what, key := range keys {
				if strings.Contains(text, key) {
					t.Errorf("-o %s: the %s shows in the %s:\n%s", output, what, where, text)
				}
			}
			if n := strings.Count(text, redact.Mask); n < 3 {
				t.Errorf("-o %s: %d masks in the %s, want one for each key at least:\n%s", output, n, where, text)
			}
		}
	}
}
