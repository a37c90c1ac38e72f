package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

// Bad or refused input is found before any host is touched: no SSH login
// happens on either live server of the lab.
func TestPlayBadInputLogsIntoNoHost(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.conf")
	play := func(vars, tasks, handlers string) string {
		pb := "- hosts: kms\n  vars:\n    kms_api_key: \"" + sentinel + "\"\n" + vars + "  tasks:\n    - command: \"true\"\n      notify: restart\n" + tasks
		if handlers == "" {
			handlers = "    - name: restart\n      command: \"true\"\n"
		}
		return pb + "  handlers:\n" + handlers
	}
	cases := []struct {
		name, playbook string
		code           int
		stderr         string
	}{
		{"secret in a command", play("", "    - shell: minkms backup --api-key {{ kms_api_key }}\n      no_log: true\n", ""), exit.Refused,
			"argument cmd of module shell reads the secret variable kms_api_key"},
		{"secret computed into a path", play("    conf: \"/etc/{{ kms_api_key | lower }}\"\n", "    - file: {path: \"{{ conf }}\", state: directory}\n", ""), exit.Refused,
			"argument path of module file reads the secret variable conf"},
		{"template syntax in a handler", play("", "", "    - name: restart\n      service: {name: \"{{ unit \", state: restarted}\n"), exit.Usage, "parse template"},
		{"unknown state", play("", "    - service: {name: minkms, state: gone}\n", ""), exit.Usage, `state "gone"`},
		{"missing copy src", play("", "    - copy: {src: "+missing+", dest: /etc/x}\n", ""), exit.Usage, "src " + missing + ": no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, "")
			pb := writePlaybook(t, c.playbook)
			te := testEnv(t)
			code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none")
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, c.code, te.out, te.errOut)
			}
			if !strings.Contains(te.errOut.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, te.errOut)
			}
			for h, s := range l.servers {
				if logins := s.Logins(); len(logins) != 0 {
					t.Errorf("%s: logins %q: a host was touched", h, logins)
				}
			}
			if strings.Contains(te.out.String()+te.errOut.String(), sentinel) {
				t.Errorf("the secret is shown:\n%s\n%s", te.out, te.errOut)
			}
		})
	}
}

// A value computed from a secret is masked like the secret, on the
// terminal, in the JSON output and in the run log.
func TestPlayMasksValuesComputedFromSecrets(t *testing.T) {
	l := newLab(t, "")
	lower := strings.ToLower(sentinel)
	pb := writePlaybook(t, `- hosts: kms
  vars:
    kms_api_key: "`+sentinel+`"
  tasks:
    - debug: {msg: "{{ kms_api_key | lower }}"}
    - debug: {var: "upper(kms_api_key)"}
    - set_fact: {k: "{{ kms_api_key | lower }}"}
    - debug: {msg: "key {{ k }}"}
`)
	for _, format := range []string{"text", "json"} {
		te := testEnv(t)
		if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "-v", "-o", format); code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", format, code, te.out, te.errOut)
		}
		logs := runLogs(t, te)
		for name, s := range map[string]string{"stdout": te.out.String(), "stderr": te.errOut.String(), "run log": logs} {
			for _, v := range []string{sentinel, lower, strings.ToUpper(sentinel)} {
				if strings.Contains(s, v) {
					t.Errorf("%s: %s shows %q:\n%s", format, name, v, s)
				}
			}
		}
		if !strings.Contains(te.out.String(), "[REDACTED]") {
			t.Errorf("%s: nothing masked:\n%s", format, te.out)
		}
	}
}

func TestPlaySyntaxCheckParsesTemplates(t *testing.T) {
	te := testEnv(t)
	pb := writePlaybook(t, "- hosts: kms\n  tasks:\n    - debug: {msg: \"{{ x | nosuchfilter }}\"}\n")
	if code := te.run(t, "play", pb, "--syntax-check"); code != exit.Usage || !strings.Contains(te.errOut.String(), "nosuchfilter") {
		t.Fatalf("exit %d\n%s", code, te.errOut)
	}
}

// Loop task names are rendered per item, and -v shows each item's outcome.
func TestPlayLoopNamesPerItem(t *testing.T) {
	l := newLab(t, "")
	pb := writePlaybook(t, `- hosts: kms1
  tasks:
    - name: remove {{ item }}
      file: {path: "{{ dir }}/{{ item }}", state: absent}
      loop: [a, b]
`)
	if err := os.MkdirAll(l.dirs["kms1"], 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.dirs["kms1"], "a"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	te := testEnv(t)
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none", "-v"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	for _, want := range []string{"  changed: [kms1] remove a", "  ok: [kms1] remove b", "changed: [kms1] remove a, remove b: 2 items: 1 changed, 1 ok"} {
		if !strings.Contains(te.out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, te.out)
		}
	}
}

// --syntax-check refuses what the playbook alone shows: a secret variable
// (by its name) on a command line, a missing local src.
func TestPlaySyntaxCheckRefusesSecretsOnCommandLines(t *testing.T) {
	te := testEnv(t)
	pb := writePlaybook(t, "- hosts: kms\n  tasks:\n    - shell: minkms backup --api-key {{ kms_api_key }}\n")
	if code := te.run(t, "play", pb, "--syntax-check"); code != exit.Refused || !strings.Contains(te.errOut.String(), "site.yml:3: task \"shell\" refused") {
		t.Fatalf("exit %d\n%s", code, te.errOut)
	}
	te = testEnv(t)
	pb = writePlaybook(t, "- hosts: kms\n  tasks:\n    - copy: {src: no-such-file, dest: /etc/x}\n")
	if code := te.run(t, "play", pb, "--syntax-check"); code != exit.Usage || !strings.Contains(te.errOut.String(), "src no-such-file: no such file or directory") {
		t.Fatalf("exit %d\n%s", code, te.errOut)
	}
}

// The way the refusal message advises works: the key goes on stdin into
// the program's environment, and no command line holds it.
func TestPlaySecretOnStdinAsAdvised(t *testing.T) {
	l := newLab(t, "")
	pb := writePlaybook(t, `- hosts: kms1
  vars:
    kms_api_key: "`+sentinel+`"
  tasks:
    - file: {path: "{{ dir }}", state: directory}
    - shell: MINIO_KMS_API_KEY="$(cat)" sh -c 'printf %s "$MINIO_KMS_API_KEY" > {{ dir }}/key'
      args:
        stdin: "{{ kms_api_key }}"
`)
	te := testEnv(t)
	if code := te.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if b, err := os.ReadFile(filepath.Join(l.dirs["kms1"], "key")); err != nil || string(b) != sentinel {
		t.Fatalf("the program did not get the key: %q %v", b, err)
	}
	for _, c := range l.servers["kms1"].Commands() {
		if strings.Contains(c, sentinel) {
			t.Fatalf("the key is on a command line: %q", c)
		}
	}
	checkNoSentinel(t, te)
}
