package tasks_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/redact"
	. "github.com/kmsctl/kmsctl/tasks"
)

// apiKey is a secret whose lower-case form differs from it.
const apiKey = "k1:SECRET-Api-Key-0123456789ABCDEF"

// isSecretName marks variables as secret by name, as inventory.IsSecret does.
func isSecretName(n string) bool {
	return strings.Contains(n, "api_key") || strings.Contains(n, "password")
}

// secretLab is a lab whose engine knows secret names and whose hosts hold kms_api_key.
func secretLab(t *testing.T, names ...string) (*lab, []Host) {
	l := newLab(t, names...)
	l.eng.Secret = isSecretName
	l.eng.Redactor = redact.New()
	hosts := l.hosts(names...)
	for _, h := range hosts {
		h.Vars["kms_api_key"] = apiKey
		h.Vars["kms_endpoint"] = h.Name + ":7373"
	}
	return l, hosts
}

func TestSecretOnCommandLineRefusedBeforeAnyHost(t *testing.T) {
	cases := []struct {
		name string
		task Task
		vars map[string]any
		arg  string // the argument named in the message
		read string // the variable named in the message
	}{
		{"shell", Task{Module: "shell", Args: map[string]any{"cmd": "minkms backup --api-key {{ kms_api_key }}"}, NoLog: true}, nil, "cmd", "kms_api_key"},
		{"command", Task{Module: "command", Args: map[string]any{"cmd": "minkms add https://kms2:7373 --api-key {{ kms_api_key }}"}}, nil, "cmd", "kms_api_key"},
		{"argv", Task{Module: "command", Args: map[string]any{"argv": []any{"minkms", "--api-key", "{{ kms_api_key }}"}}}, nil, "argv", "kms_api_key"},
		{"chdir", Task{Module: "command", Args: map[string]any{"cmd": "true", "chdir": "/tmp/{{ kms_api_key }}"}}, nil, "chdir", "kms_api_key"},
		{"creates", Task{Module: "command", Args: map[string]any{"cmd": "true", "creates": "/tmp/{{ kms_api_key }}"}}, nil, "creates", "kms_api_key"},
		{"removes", Task{Module: "shell", Args: map[string]any{"cmd": "true", "removes": "/tmp/{{ kms_api_key }}"}}, nil, "removes", "kms_api_key"},
		{"service name", Task{Module: "service", Args: map[string]any{"name": "minkms-{{ kms_api_key }}", "state": "started"}}, nil, "name", "kms_api_key"},
		{"file path", Task{Module: "file", Args: map[string]any{"path": "/etc/{{ kms_api_key }}", "state": "directory"}}, nil, "path", "kms_api_key"},
		{"file owner", Task{Module: "file", Args: map[string]any{"path": "/etc/x", "state": "touch", "owner": "{{ kms_api_key }}"}}, nil, "owner", "kms_api_key"},
		{"copy dest", Task{Module: "copy", Args: map[string]any{"content": "x", "dest": "/etc/{{ kms_api_key }}"}}, nil, "dest", "kms_api_key"},
		{"copy validate", Task{Module: "copy", Args: map[string]any{"content": "x", "dest": "/etc/x", "validate": "check --key {{ kms_api_key }} %s"}}, nil, "validate", "kms_api_key"},
		{"template dest", Task{Module: "template", Args: map[string]any{"src": "testdata/env.tmpl", "dest": "/etc/{{ kms_api_key }}"}}, nil, "dest", "kms_api_key"},
		{"fetch src", Task{Module: "fetch", Args: map[string]any{"src": "/etc/{{ kms_api_key }}", "dest": "out"}}, nil, "src", "kms_api_key"},
		{"stat path", Task{Module: "stat", Args: map[string]any{"path": "/etc/{{ kms_api_key }}"}}, nil, "path", "kms_api_key"},
		{"wait_for path", Task{Module: "wait_for", Args: map[string]any{"path": "/etc/{{ kms_api_key }}"}}, nil, "path", "kms_api_key"},
		// Computed from a secret by a filter, and through another variable.
		{"filter", Task{Module: "shell", Args: map[string]any{"cmd": "cli {{ kms_api_key | lower }}"}}, nil, "cmd", "kms_api_key"},
		{"via var", Task{Module: "shell", Args: map[string]any{"cmd": "cli --auth {{ auth }}"}}, map[string]any{"auth": "Bearer {{ kms_api_key | upper }}"}, "cmd", "auth"},
		{"map key", Task{Module: "shell", Args: map[string]any{"cmd": "cli {{ creds.api_key }}"}}, map[string]any{"creds": map[string]any{"api_key": "abc", "user": "u"}}, "cmd", "creds.api_key"},
		{"hostvars", Task{Module: "shell", Args: map[string]any{"cmd": "cli {{ hostvars.a.kms_api_key }}"}}, nil, "cmd", "hostvars.a.kms_api_key"},
		{"loop item", Task{Module: "shell", Args: map[string]any{"cmd": "cli {{ item }}"}, Loop: []any{"x", "{{ kms_api_key }}"}}, nil, "cmd", "item"},
		{"set_fact", Task{Module: "shell", Args: map[string]any{"cmd": "cli {{ k }}"}}, map[string]any{}, "cmd", "k"},
		{"play var by name", Task{Module: "shell", Args: map[string]any{"cmd": "cli {{ db_password }}"}}, map[string]any{"db_password": "pw"}, "cmd", "db_password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, hosts := secretLab(t, "a", "b")
			c.task.Name, c.task.Pos = "use the key", "site.yml:7"
			tasks := []Task{sh("first", "true"), c.task}
			if c.name == "set_fact" {
				tasks = []Task{{Name: "fact", Module: "set_fact", Args: map[string]any{"k": "{{ kms_api_key | lower }}"}}, c.task}
			}
			_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: hosts, Vars: c.vars, Tasks: tasks}})
			if !IsRefused(err) {
				t.Fatalf("want a refusal, got %v", err)
			}
			var re *RefusedError
			if !errors.As(err, &re) || re.Pos != "site.yml:7" {
				t.Fatalf("want a *RefusedError at site.yml:7, got %#v", err)
			}
			msg := err.Error()
			for _, want := range []string{"site.yml:7", `"use the key"`, "argument " + c.arg + " ", c.read, "/proc/PID/cmdline"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q: %s", want, msg)
				}
			}
			if (c.arg == "cmd" || c.arg == "argv") && !strings.Contains(msg, "stdin") {
				t.Errorf("message does not say how to pass the secret: %s", msg)
			}
			if strings.Contains(msg, apiKey) {
				t.Fatalf("the message holds the secret: %s", msg)
			}
			if len(l.connects) != 0 || len(l.rec.events) != 0 {
				t.Fatalf("a host was touched: connects %v, events %s", l.connects, l.rec.all())
			}
		})
	}
}

func TestSecretAllowedWhereItStaysOffCommandLines(t *testing.T) {
	l, hosts := secretLab(t, "a")
	tasks := []Task{
		{Name: "stdin", Module: "shell", Args: map[string]any{"cmd": `MINIO_KMS_API_KEY="$(cat)" minkms backup`, "stdin": "{{ kms_api_key }}"}},
		{Name: "env file", Module: "copy", Args: map[string]any{"content": "MINIO_KMS_API_KEY={{ kms_api_key }}\n", "dest": "/etc/default/minkms"}},
		{Name: "condition only", Module: "shell", Args: map[string]any{"cmd": "cli{% if kms_api_key %} --secure{% endif %}"}},
		{Name: "other hostvars", Module: "shell", Args: map[string]any{"cmd": "cli {{ hostvars.a.kms_endpoint }}"}},
		{Name: "loop", Module: "shell", Args: map[string]any{"cmd": "cli {{ item }}"}, Loop: []any{"{{ kms_endpoint }}"}},
	}
	if _, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: hosts, Tasks: tasks}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range callList(l.fakes["a"]) {
		if strings.Contains(c, apiKey) {
			t.Fatalf("the secret is on a command line: %q", c)
		}
	}
	if got := callList(l.fakes["a"]); !strings.Contains(strings.Join(got, "\n"), "cli a:7373") {
		t.Fatalf("calls %q", got)
	}
}

// A value that only turns out to be secret while the play runs (a
// registered result computed from a secret) is refused on the host, before
// the module runs there.
func TestSecretOnCommandLineRefusedWhileRunning(t *testing.T) {
	l, hosts := secretLab(t, "a")
	tasks := []Task{
		{Name: "derive", Module: "debug", Args: map[string]any{"msg": "{{ kms_api_key | lower }}"}, Register: "d"},
		{Name: "use", Module: "shell", Args: map[string]any{"cmd": "cli --key {{ d.msg }}"}, Pos: "site.yml:9"},
	}
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: hosts, Tasks: tasks}})
	if !IsRefused(err) {
		t.Fatalf("want a refusal, got %v", err)
	}
	if !strings.Contains(err.Error(), "site.yml:9") || strings.Contains(err.Error(), strings.ToLower(apiKey)) {
		t.Fatalf("message %v", err)
	}
	for _, c := range callList(l.fakes["a"]) {
		if strings.Contains(c, "cli") {
			t.Fatalf("the refused command ran: %q", c)
		}
	}
}

func TestDerivedSecretsAreMasked(t *testing.T) {
	l, hosts := secretLab(t, "a")
	lower, upper := strings.ToLower(apiKey), strings.ToUpper(apiKey)
	tasks := []Task{
		{Name: "msg", Module: "debug", Args: map[string]any{"msg": "{{ kms_api_key | lower }}"}},
		{Name: "var", Module: "debug", Args: map[string]any{"var": "upper(kms_api_key)"}},
		{Name: "fact", Module: "set_fact", Args: map[string]any{"k": "{{ kms_api_key | lower }}"}},
		{Name: "use fact", Module: "debug", Args: map[string]any{"msg": "{{ k }}"}},
		{Name: "loop", Module: "debug", Args: map[string]any{"msg": "{{ item }}"}, Loop: "[upper(kms_api_key)]"},
	}
	if _, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: hosts, Tasks: tasks}}); err != nil {
		t.Fatal(err)
	}
	all := l.rec.all()
	if strings.Contains(all, lower) || strings.Contains(all, upper) || strings.Contains(all, apiKey) {
		t.Fatalf("a value computed from the secret is shown:\n%s", all)
	}
	if got := l.rec.results("msg")["a"].Msg; got != redact.Mask {
		t.Fatalf("msg = %q", got)
	}
	if got := l.rec.results("var")["a"].Msg; !strings.Contains(got, redact.Mask) {
		t.Fatalf("var = %q", got)
	}
	// A value that does not depend on the secret is not masked.
	l2, hosts2 := secretLab(t, "a")
	_, err := l2.eng.Run(context.Background(), []Play{{Name: "p", Hosts: hosts2, Tasks: []Task{
		{Name: "len", Module: "debug", Args: map[string]any{"msg": "{% if kms_api_key %}has a key{% endif %}"}},
	}}})
	if err != nil || l2.rec.results("len")["a"].Msg != "has a key" {
		t.Fatalf("%v %+v", err, l2.rec.results("len")["a"])
	}
}

func TestSecretContentIsWrittenPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "env.tmpl"), []byte("KEY={{ kms_api_key }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, hosts := secretLab(t, "a")
	l.fakes["a"].SetFile("/etc/old", "api_key: old\n", 0o644)
	l.fakes["a"].SetFile("/etc/shared", "api_key: old\n", 0o640)
	tasks := []Task{
		{Name: "new", Module: "copy", Args: map[string]any{"content": "api_key: {{ kms_api_key }}\n", "dest": "/etc/new"}},
		{Name: "existing", Module: "copy", Args: map[string]any{"content": "api_key: {{ kms_api_key }}\n", "dest": "/etc/old"}},
		{Name: "given mode", Module: "copy", Args: map[string]any{"content": "api_key: {{ kms_api_key }}\n", "dest": "/etc/shared", "mode": "0640"}},
		{Name: "template", Module: "template", Args: map[string]any{"src": "env.tmpl", "dest": "/etc/tpl"}},
		{Name: "plain", Module: "copy", Args: map[string]any{"content": "hello\n", "dest": "/etc/plain"}},
	}
	l.eng.Diff = true
	_, err := l.eng.Run(context.Background(), []Play{{Name: "p", Hosts: hosts, Tasks: tasks, Files: os.DirFS(dir)}})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"/etc/new": 0o600, "/etc/old": 0o600, "/etc/shared": 0o640, "/etc/tpl": 0o600, "/etc/plain": 0o644} {
		f, ok := l.fakes["a"].File(p)
		if !ok || f.Mode != want {
			t.Errorf("%s: mode %o, want %o", p, f.Mode, want)
		}
	}
	for _, n := range []string{"new", "existing", "template"} {
		if d := l.rec.results(n)["a"].Diff; d != "" {
			t.Errorf("%s: diff of secret content %q", n, d)
		}
	}
	if strings.Contains(l.rec.all(), apiKey) {
		t.Fatal("secret in events")
	}
}
