package playbooks

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/modules"
	"github.com/kmsctl/kmsctl/tasks"
	"github.com/kmsctl/kmsctl/yamlpos"
)

// builtin returns a registry holding the general modules.
func builtin() *tasks.Registry {
	reg := tasks.NewRegistry()
	modules.Register(reg)
	kmsmodules.Register(reg, kmsmodules.Options{})
	return reg
}

func load(t *testing.T, path string) (*Playbook, error) {
	t.Helper()
	return Load(path, builtin())
}

func TestDecodeValid(t *testing.T) {
	pb, err := load(t, "testdata/valid/site.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(pb.Plays) != 1 {
		t.Fatalf("%d plays, want 1", len(pb.Plays))
	}
	p := pb.Plays[0]
	if p.Name != "configure" || p.Hosts != "kms:&prod" || p.Pos != "testdata/valid/site.yml:2" {
		t.Errorf("play = %q hosts %q pos %q", p.Name, p.Hosts, p.Pos)
	}
	if strings.Join(p.Serial, ",") != "1,50%" || p.AnyErrorsFatal == nil || *p.AnyErrorsFatal {
		t.Errorf("serial %q any_errors_fatal %v", p.Serial, p.AnyErrorsFatal)
	}
	// vars_files win over vars, as in Ansible.
	if p.Vars["greeting"] != "from-vars-file" || p.Vars["port"] != 7373 {
		t.Errorf("vars = %v", p.Vars)
	}
	if len(p.Tasks) != 6 || len(p.Handlers) != 1 {
		t.Fatalf("%d tasks %d handlers", len(p.Tasks), len(p.Handlers))
	}
	loop, loopExpr := p.Tasks[4], p.Tasks[5]
	if items, ok := loop.Loop.([]any); !ok || len(items) != 2 || items[1] != "b" || loop.LoopVar != "f" ||
		loop.DelegateTo != "kms1" || !loop.RunOnce || loop.CheckMode == nil || *loop.CheckMode {
		t.Errorf("loop task = %+v", loop)
	}
	if loopExpr.Loop != "{{ files }}" {
		t.Errorf("with_items = %#v", loopExpr.Loop)
	}
	hello, push, wait, shell := p.Tasks[0], p.Tasks[1], p.Tasks[2], p.Tasks[3]
	if hello.Module != "command" || hello.Args["cmd"] != "echo {{ greeting }}" || hello.Register != "out" || hello.ChangedWhen != "false" {
		t.Errorf("hello = %+v", hello)
	}
	if hello.When != "(greeting is defined) and (port > 1)" {
		t.Errorf("when = %q", hello.When)
	}
	if hello.Pos != "testdata/valid/site.yml:14" {
		t.Errorf("task pos = %q", hello.Pos)
	}
	if hello.Become == nil || !*hello.Become {
		t.Error("play become not inherited")
	}
	if strings.Join(push.Notify, ",") != "restart minkms" {
		t.Errorf("notify through listen = %q", push.Notify)
	}
	if push.BecomeUser != "minkms-user" || strings.Join(push.Tags, ",") != "push,config" {
		t.Errorf("push = %+v", push)
	}
	if wait.Retries != 2 || wait.Delay != 1500*time.Millisecond || wait.Until != "true" || !wait.IgnoreErrors || !wait.NoLog ||
		wait.Timeout != time.Minute || wait.Become == nil || *wait.Become {
		t.Errorf("wait = %+v", wait)
	}
	if shell.Module != "shell" || shell.Args["cmd"] != "systemctl daemon-reload" || shell.Args["chdir"] != "/tmp" || shell.Name != "" {
		t.Errorf("shell = %+v", shell)
	}
	if p.Handlers[0].Name != "restart minkms" || p.Handlers[0].Module != "service" {
		t.Errorf("handler = %+v", p.Handlers[0])
	}
}

// TestDecodeInvalid checks that every problem of a file is reported, each
// with its FILE:LINE:COL (FILE:LINE for YAML syntax errors, which yaml.v3
// reports without a column), as one *yamlpos.List.
func TestDecodeInvalid(t *testing.T) {
	cases := map[string][]string{
		"not_a_list.yml": {"not_a_list.yml:1:1: a playbook is a list of plays"},
		"many.yml": {
			`many.yml:3:17: gather_facts: kmsctl does not gather facts`,
			`many.yml:4:11: serial must be a positive number`,
			`many.yml:5:3: play: unknown key "colour"`,
			`many.yml:7:7: task "no module here" has no module`,
			`many.yml:11:7: task has two modules, "command" and "shell"`,
			`many.yml:12:7: unknown module "frobnicate"`,
			`many.yml:15:7: module copy: unknown argument "colour"`,
			`many.yml:15:7: module copy: exactly one of src, content is required, 0 given`,
			`many.yml:22:16: retries must be a non-negative integer`,
			`many.yml:23:22: ignore_errors must be true or false`,
			`many.yml:24:7: notify: no handler is named or listens to "nobody"`,
			`many.yml:27:3: play "second": hosts: is required`,
			`many.yml:33:7: task keyword "with_dict" is not supported by kmsctl`,
		},
		"bad_expr.yml":        {`bad_expr.yml:3:7: when: `},
		"handler_no_name.yml": {"handler_no_name.yml:5:7: a handler needs a name"},
		"free_form_copy.yml":  {"free_form_copy.yml:3:13: module copy: arguments must be a mapping"},
		"malformed.yml":       {"malformed.yml:3: invalid YAML: found unexpected end of stream (fix the YAML syntax"},
		// vars files are decoded strictly, problems at the vars file's line
		"vars_files.yml": {
			"vars_files.yml:3:5: vars_files: testdata/invalid/vars/dup.yml:2:1: a: duplicate key",
			"vars/dup.yml:3:11: kms_port: must be a port number",
		},
	}
	files, err := filepath.Glob("testdata/invalid/*.yml")
	if err != nil || len(files) != len(cases) {
		t.Fatalf("fixtures %q (want one per case, %d)", files, len(cases))
	}
	for _, f := range files {
		want := cases[filepath.Base(f)]
		_, err := load(t, f)
		if err == nil {
			t.Errorf("%s: no error", f)
			continue
		}
		var list *yamlpos.List
		if !errors.As(err, &list) {
			t.Errorf("%s: error is %T, want a *yamlpos.List", f, err)
		} else {
			for _, e := range list.Errs {
				if e.Pos.File != f || e.Pos.Line == 0 {
					t.Errorf("%s: problem without its position in the file: %#v", f, e.Pos)
				}
			}
		}
		msg := err.Error()
		for _, w := range want {
			if !strings.Contains(msg, "testdata/invalid/"+w) {
				t.Errorf("%s: error lacks %q:\n%s", f, w, msg)
			}
		}
		if !sorted(msg) {
			t.Errorf("%s: problems not in line order:\n%s", f, msg)
		}
		if n := len(strings.Split(msg, "\n")); n < len(want) {
			t.Errorf("%s: %d problems reported, want %d:\n%s", f, n, len(want), msg)
		}
	}
}

func TestBuiltins(t *testing.T) {
	list := List()
	if len(list) < 2 {
		t.Fatalf("List() = %v", list)
	}
	reg := builtin()
	for _, info := range list {
		if info.Description == "" {
			t.Errorf("built-in %s has no description comment", info.Name)
		}
		b, err := Show(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(info.Name, b, builtinFiles(), reg); err != nil {
			t.Errorf("built-in %s does not decode: %v", info.Name, err)
		}
		pb, err := Load(info.Name, reg)
		if err != nil || len(pb.Plays) == 0 || !strings.HasPrefix(pb.Name, "builtin:") {
			t.Errorf("Load(%s) = %v, %v", info.Name, pb, err)
		}
	}
	if _, err := Show("nosuch"); err == nil {
		t.Error("Show(nosuch) succeeded")
	}
	if _, err := Show("../decode.go"); err == nil {
		t.Error("Show escaped the built-in directory")
	}
	for _, tpl := range templateNames() {
		if b, err := Show(tpl); err != nil || !strings.Contains(string(b), "written by kmsctl") {
			t.Errorf("Show(%s) = %q, %v", tpl, b, err)
		}
	}
	if b, err := Show("templates/minkms.env.j2"); err != nil || !strings.Contains(string(b), "MINIO_KMS_HSM_KEY={{ kms_hsm_key }}") {
		t.Errorf("Show(templates/minkms.env.j2) = %q, %v", b, err)
	}
	for _, bad := range []string{"templates/nosuch.j2", "templates/../ping.yml", "templates/"} {
		if _, err := Show(bad); err == nil {
			t.Errorf("Show(%s) succeeded", bad)
		}
	}
	if _, err := Load("nosuch.yml", reg); err == nil || !strings.Contains(err.Error(), "ping") {
		t.Errorf("Load(nosuch) = %v, want an error listing the built-ins", err)
	}
}

// TestLoadFilePrefersFile: a path to a file named like a built-in loads
// the file.
func TestLoadFilePrefersFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ping")
	if err := os.WriteFile(path, []byte("- hosts: web\n  tasks:\n    - ping:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pb, err := load(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if pb.Plays[0].Hosts != "web" {
		t.Errorf("loaded %q, not the file", pb.Plays[0].Hosts)
	}
}

// TestLoadAmbiguousName: a bare name that means both a file in the
// current directory (NAME or NAME.yml) and a built-in is refused, and the
// message shows how to name either; each explicit form loads its own.
func TestLoadAmbiguousName(t *testing.T) {
	reg := builtin()
	t.Chdir(t.TempDir())
	if pb, err := Load("ping", reg); err != nil || !strings.HasPrefix(pb.Name, BuiltinPrefix) {
		t.Fatalf("no file: Load(ping) = %v, %v; want the built-in", pb, err)
	}
	for _, file := range []string{"ping.yml", "ping"} {
		if err := os.WriteFile(file, []byte("- hosts: web\n  tasks:\n    - ping:\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, arg := range []string{"ping", "ping.yml"} {
			_, err := Load(arg, reg)
			if !errors.Is(err, ErrAmbiguous) {
				t.Fatalf("file %s: Load(%s) = %v, want ErrAmbiguous", file, arg, err)
			}
			for _, want := range []string{"./" + file, "builtin:ping"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("file %s: Load(%s): %q lacks %q", file, arg, err, want)
				}
			}
		}
		pb, err := Load("./"+file, reg)
		if err != nil || pb.Plays[0].Hosts != "web" {
			t.Errorf("Load(./%s) = %v, %v; want the file", file, pb, err)
		}
		pb, err = Load("builtin:ping", reg)
		if err != nil || pb.Plays[0].Hosts == "web" || !strings.HasPrefix(pb.Name, BuiltinPrefix) {
			t.Errorf("Load(builtin:ping) = %v, %v; want the built-in", pb, err)
		}
		os.Remove(file)
	}
	if _, err := Load("builtin:nosuch", reg); !errors.Is(err, ErrUnknown) {
		t.Errorf("Load(builtin:nosuch) = %v, want ErrUnknown", err)
	}
	// A bare name without a built-in is a file.
	if err := os.WriteFile("site.yml", []byte("- hosts: web\n  tasks:\n    - ping:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pb, err := Load("site.yml", reg); err != nil || pb.Plays[0].Hosts != "web" {
		t.Errorf("Load(site.yml) = %v, %v", pb, err)
	}
}

// sorted reports whether the "file:LINE:" prefixes of msg's lines ascend.
func sorted(msg string) bool {
	last := 0
	for _, l := range strings.Split(msg, "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) < 3 {
			continue
		}
		n, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		if n < last {
			return false
		}
		last = n
	}
	return true
}

func TestDecodeMergeKeys(t *testing.T) {
	pb, err := load(t, "testdata/valid/merge.yml")
	if err != nil {
		t.Fatal(err)
	}
	ts := pb.Plays[0].Tasks
	if len(ts) != 3 {
		t.Fatalf("%d tasks", len(ts))
	}
	if ts[1].Name != "quiet again" || ts[1].Module != "command" || ts[1].ChangedWhen != "false" || ts[1].Tags[0] != "base" {
		t.Errorf("merged task = %+v", ts[1])
	}
	if ts[2].Args["cmd"] != "false" || !ts[2].IgnoreErrors || ts[2].ChangedWhen != "false" {
		t.Errorf("overriding merged task = %+v", ts[2])
	}
}
