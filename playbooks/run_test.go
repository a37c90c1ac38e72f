package playbooks

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/modules"
	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/tasks"
)

const testInventory = `all:
  vars:
    color: blue
  children:
    kms:
      hosts:
        kms1: {color: red}
        kms2:
        kms3:
    web:
      hosts:
        web1:
`

const testPlaybook = `- name: kms
  hosts: kms
  tasks:
    - ping:
- name: web
  hosts: web
  tasks:
    - ping:
`

func parse(t *testing.T) (*inventory.Inventory, *Playbook) {
	t.Helper()
	inv, err := inventory.Parse("inventory.yml", []byte(testInventory))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Decode("site.yml", []byte(testPlaybook), nil, builtin())
	if err != nil {
		t.Fatal(err)
	}
	return inv, pb
}

func hostNames(p tasks.Play) []string {
	var out []string
	for _, h := range p.Hosts {
		out = append(out, h.Name)
	}
	return out
}

func TestPlays(t *testing.T) {
	inv, pb := parse(t)
	plays, err := Plays(pb, Options{Inventory: inv, Limit: "kms:!kms2", ExtraVars: map[string]any{"x": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	// --limit leaves the web play without hosts: it is dropped.
	if len(plays) != 1 || plays[0].Name != "kms" || !slices.Equal(hostNames(plays[0]), []string{"kms1", "kms3"}) {
		t.Fatalf("plays = %+v", plays)
	}
	h := plays[0].Hosts[0]
	if h.Vars["color"] != "red" || h.Vars["x"] != "1" || h.Vars["inventory_hostname"] != "kms1" {
		t.Errorf("kms1 vars = %v", h.Vars)
	}
	if plays[0].Hosts[1].Vars["color"] != "blue" {
		t.Errorf("kms3 vars = %v", plays[0].Hosts[1].Vars)
	}

	if _, err := Plays(pb, Options{Inventory: inv, Limit: "web1:&kms"}); !errors.Is(err, ErrNoHosts) {
		t.Errorf("no hosts left: err = %v", err)
	}
	if _, err := Plays(pb, Options{Inventory: inv, Limit: "nosuchhost"}); err == nil || !strings.Contains(err.Error(), "--limit") {
		t.Errorf("bad --limit: err = %v", err)
	}
}

func TestRun(t *testing.T) {
	inv, pb := parse(t)
	var mu sync.Mutex
	hosts := map[string]*fake.Conn{}
	eng := &tasks.Engine{Modules: builtin(), Connect: func(_ context.Context, h tasks.Host) (tasks.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		hosts[h.Name] = fake.New(t, h.Name)
		return hosts[h.Name], nil
	}}
	recap, err := Run(context.Background(), eng, pb, Options{Inventory: inv, Limit: "kms1,web1"})
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	for name, c := range hosts {
		for _, cmd := range c.Commands() {
			ran = append(ran, name+": "+cmd)
		}
	}
	slices.Sort(ran)
	if !slices.Equal(ran, []string{"kms1: true", "web1: true"}) {
		t.Errorf("commands %q", ran)
	}
	if len(recap) != 2 || recap["kms1"].OK != 1 || recap["web1"].OK != 1 {
		t.Errorf("recap %v", recap)
	}
}

// TestPlaysResolveEachHostOnce: a host in several plays is resolved once:
// every play holds the same resolved value (the same variables map, which
// each resolution would make anew), and a host that fails to resolve is
// reported once, not once per play.
func TestPlaysResolveEachHostOnce(t *testing.T) {
	inv, err := inventory.Parse("inventory.yml", []byte(testInventory))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Decode("site.yml", []byte("- hosts: kms\n  tasks: [{ping: }]\n- hosts: kms1\n  tasks: [{ping: }]\n"), nil, builtin())
	if err != nil {
		t.Fatal(err)
	}
	extra := map[string]any{"ansible_host": "10.9.9.9"}
	plays, err := Plays(pb, Options{Inventory: inv, ExtraVars: extra})
	if err != nil {
		t.Fatal(err)
	}
	first, second := plays[0].Hosts[0], plays[1].Hosts[0]
	if first.Name != "kms1" || second.Name != "kms1" {
		t.Fatalf("hosts %v %v", first.Name, second.Name)
	}
	if reflect.ValueOf(first.Vars).UnsafePointer() != reflect.ValueOf(second.Vars).UnsafePointer() {
		t.Error("kms1 was resolved once per play: the plays hold different variables maps")
	}
	ih, ok := first.Target.(inventory.Host)
	if !ok || ih.SSH.Address != "10.9.9.9" || ih.KMS.Endpoint != "10.9.9.9:7373" || first.Vars["ansible_host"] != "10.9.9.9" {
		t.Errorf("kms1's resolved host = %#v (Target %T)", first.Target, first.Target)
	}
	_, err = Plays(pb, Options{Inventory: inv, ExtraVars: map[string]any{"ansible_port": "abc"}})
	if err == nil || strings.Count(err.Error(), "host kms1: ansible_port") != 1 {
		t.Errorf("want kms1's bad -e reported once, got %v", err)
	}
}

func TestPlaysHostsTemplate(t *testing.T) {
	inv, _ := parse(t)
	reg := tasks.NewRegistry()
	modules.Register(reg)
	pb, err := Decode("t.yml", []byte("- hosts: \"{{ target }}\"\n  tasks:\n    - ping:\n"), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	plays, err := Plays(pb, Options{Inventory: inv, ExtraVars: map[string]any{"target": "kms2"}})
	if err != nil || len(plays) != 1 || !slices.Equal(hostNames(plays[0]), []string{"kms2"}) {
		t.Fatalf("plays %+v, err %v", plays, err)
	}
	if _, err := Plays(pb, Options{Inventory: inv}); err == nil || !strings.Contains(err.Error(), "undefined variable target") || !strings.Contains(err.Error(), "-e") {
		t.Fatalf("without -e target: %v", err)
	}
	if _, err := Decode("t.yml", []byte("- hosts: \"{{ target \"\n  tasks:\n    - ping:\n"), nil, reg); err == nil || !strings.Contains(err.Error(), "t.yml:1:10: hosts: parse template") {
		t.Fatalf("hosts template syntax: %v", err)
	}
}
