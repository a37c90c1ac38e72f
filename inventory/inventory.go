package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kmsctl/kmsctl/yamlpos"
)

// Names of the implicit groups every inventory has.
const (
	GroupAll       = "all"
	GroupUngrouped = "ungrouped"
)

// maxNodes bounds the work done on one load, so that a hostile inventory
// (YAML aliases nested to expand exponentially, huge host ranges) fails fast.
const maxNodes = 500_000

// maxDepth bounds how deeply groups may be nested under children:.
const maxDepth = 64

// maxRangeHosts bounds how many hosts a single host range pattern expands to.
const maxRangeHosts = 10_000

// variable is a value with the position it was written at.
type variable struct {
	value any
	pos   yamlpos.Pos
	rank  int // precedence layer it was resolved from (higher wins); set by resolve
}

// group is one inventory group, merged over every place it is written.
type group struct {
	name     string
	pos      yamlpos.Pos
	vars     map[string]variable    // written in the inventory file
	dirVars  map[string]variable    // from group_vars/ (over vars, see Vars)
	children []string               // direct child groups, first-seen order
	childPos map[string]yamlpos.Pos // where each child was listed under this group
	hosts    []string               // direct hosts, first-seen order
	hostSet  map[string]bool
	parents  []string
	depth    int // longest distance from "all"
}

// host is one inventory host with its own (host-level) variables.
type host struct {
	name    string
	pos     yamlpos.Pos
	vars    map[string]variable // written in the inventory file
	dirVars map[string]variable // from host_vars/
	groups  []string            // groups the host is directly listed in, first-seen order
}

// Inventory is a loaded, validated inventory. It is immutable after Load or
// Parse and safe for concurrent use.
type Inventory struct {
	hosts      []*host
	hostByName map[string]*host
	groups     map[string]*group
	groupOrder []string // "all" first, then first-seen order, "ungrouped" last
	files      []string
}

// Load reads and merges one or more inventories (-i may be given more than
// once). Later inventories add hosts and groups; a variable defined again in
// a later file for the same host or group overrides the earlier value.
//
// Like Ansible, Load also reads the group_vars/ and host_vars/ directories
// next to each inventory file (see LoadVarsDirs for the rules), and a path
// that is a directory is read as an inventory directory: its *.yml and
// *.yaml files in name order, then its group_vars/ and host_vars/.
//
// Every problem in every file is reported at once, as a *yamlpos.List.
func Load(paths ...string) (*Inventory, error) {
	if len(paths) == 0 {
		return nil, errors.New("load inventory: no inventory file given (pass -i FILE)")
	}
	b := newBuilder()
	var dirs []string
	for _, p := range paths {
		files, dir, err := inventoryFiles(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read inventory: %w", err)
			}
			b.parseFile(f, data)
		}
		if !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	for _, d := range dirs {
		if err := b.loadVarsDirs(d); err != nil {
			return nil, err
		}
	}
	return b.finish()
}

// Parse parses one inventory held in memory; name is used in error positions.
func Parse(name string, data []byte) (*Inventory, error) {
	b := newBuilder()
	b.parseFile(name, data)
	return b.finish()
}

// Hosts returns every host name in the order first written.
func (inv *Inventory) Hosts() []string {
	out := make([]string, len(inv.hosts))
	for i, h := range inv.hosts {
		out[i] = h.name
	}
	return out
}

// Groups returns every group name: "all" first, then in the order first
// written, "ungrouped" last.
func (inv *Inventory) Groups() []string {
	return slices.Clone(inv.groupOrder)
}

// HasHost reports whether name is a host of the inventory.
func (inv *Inventory) HasHost(name string) bool {
	_, ok := inv.hostByName[name]
	return ok
}

// GroupHosts returns the hosts of a group and of all its descendants, in
// inventory order.
func (inv *Inventory) GroupHosts(name string) ([]string, error) {
	if _, ok := inv.groups[name]; !ok {
		return nil, fmt.Errorf("group %q is not in the inventory (see kmsctl inventory graph)", name)
	}
	return inv.hostNames(inv.groupHostSet(name)), nil
}

// HostGroups returns the groups host belongs to, directly or through a child
// group, sorted, without "all" (Ansible's group_names).
func (inv *Inventory) HostGroups(hostName string) ([]string, error) {
	h, err := inv.host(hostName)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range inv.ancestors(h) {
		if g != GroupAll {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (inv *Inventory) host(name string) (*host, error) {
	h, ok := inv.hostByName[name]
	if !ok {
		return nil, fmt.Errorf("host %q is not in the inventory %s (see kmsctl inventory list)", name, strings.Join(inv.files, ", "))
	}
	return h, nil
}

// groupHostSet returns the set of hosts in group name and its descendants.
func (inv *Inventory) groupHostSet(name string) map[string]bool {
	set := map[string]bool{}
	if name == GroupAll {
		for _, h := range inv.hosts {
			set[h.name] = true
		}
		return set
	}
	seen := map[string]bool{}
	var walk func(string)
	walk = func(g string) {
		if seen[g] {
			return
		}
		seen[g] = true
		gr := inv.groups[g]
		for _, h := range gr.hosts {
			set[h] = true
		}
		for _, c := range gr.children {
			walk(c)
		}
	}
	walk(name)
	return set
}

// hostNames returns the hosts of set in inventory order.
func (inv *Inventory) hostNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for _, h := range inv.hosts {
		if set[h.name] {
			out = append(out, h.name)
		}
	}
	return out
}

// ancestors returns every group h belongs to, directly or through child
// groups, including "all".
func (inv *Inventory) ancestors(h *host) []string {
	seen := map[string]bool{}
	var out []string
	var walk func(string)
	walk = func(g string) {
		if seen[g] {
			return
		}
		seen[g] = true
		out = append(out, g)
		for _, p := range inv.groups[g].parents {
			walk(p)
		}
	}
	for _, g := range h.groups {
		walk(g)
	}
	walk(GroupAll)
	return out
}

// builder accumulates one or more files into an Inventory.
type builder struct {
	inv    *Inventory
	probs  problems
	nodes  int                 // structural nodes visited, bounded by maxNodes
	active map[*yaml.Node]bool // group bodies being parsed, to stop alias recursion
}

func newBuilder() *builder {
	inv := &Inventory{
		hostByName: map[string]*host{},
		groups:     map[string]*group{},
	}
	b := &builder{inv: inv, active: map[*yaml.Node]bool{}}
	b.group(GroupAll, yamlpos.Pos{})
	b.group(GroupUngrouped, yamlpos.Pos{})
	return b
}

// emptyHint says what an inventory looks like.
const emptyHint = "write an inventory such as all: { children: { kms: { hosts: { kms1: { ansible_host: 10.0.0.1 } } } } }"

// parseFile adds one file's content; problems are collected in b.probs.
func (b *builder) parseFile(name string, data []byte) {
	b.inv.files = append(b.inv.files, name)
	filePos := yamlpos.Pos{File: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			b.probs.add(filePos, "", "inventory file is empty", emptyHint)
			return
		}
		b.probs.addErr(yamlpos.Syntax(name, err))
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		b.probs.add(yamlpos.Of(name, &extra), "", "more than one YAML document in the inventory", "keep one document; remove the extra --- separator")
		return
	} else if !errors.Is(err, io.EOF) {
		b.probs.addErr(yamlpos.Syntax(name, err))
		return
	}
	if len(doc.Content) == 0 {
		b.probs.add(filePos, "", "inventory file is empty", emptyHint)
		return
	}
	root := b.deref(doc.Content[0])
	if root == nil {
		return
	}
	if isNull(root) {
		b.probs.add(yamlpos.Of(name, root), "", "inventory file is empty", emptyHint)
		return
	}
	if root.Kind != yaml.MappingNode {
		b.probs.add(yamlpos.Of(name, root), "", "inventory must be a mapping of group names, got "+kindName(root),
			"start the file with all: and put hosts:, vars: and children: under it")
		return
	}
	for e := range b.entries(name, root, "") {
		name2, k, v := e.name, e.key, e.value
		switch name2 {
		case "hosts", "vars", "children":
			b.probs.add(yamlpos.Of(name, k), name2, "top-level "+name2+": is not allowed", "put it under all: (all: { "+name2+": ... })")
			continue
		case "plugin":
			b.probs.add(yamlpos.Of(name, k), name2, "Ansible inventory plugins are not supported",
				"export a static inventory (ansible-inventory -i SOURCE --list -y > inventory.yml) and use that")
			return // the rest is plugin options, not groups
		}
		if name2 != GroupAll && !b.checkGroupName(name, k, name2, name2) {
			continue
		}
		parent := ""
		if name2 != GroupAll {
			parent = GroupAll // Ansible: top-level groups are children of all
		}
		b.parseGroup(name, name2, v, name2, parent, yamlpos.Of(name, k), 0)
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return fmt.Sprintf("a scalar (%s)", strings.TrimPrefix(n.ShortTag(), "!!"))
	case yaml.AliasNode:
		return "an alias"
	default:
		return "a document"
	}
}

// deref follows aliases and counts the node against the work budget; it
// returns nil (after recording a problem once) when the budget is exhausted.
func (b *builder) deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return nil
	}
	if !b.spend(1) {
		return nil
	}
	return n
}

// spend counts n units of work against maxNodes and reports whether the
// budget still holds; the first time it does not, it records a problem.
func (b *builder) spend(n int) bool {
	if b.nodes >= maxNodes {
		return false
	}
	b.nodes += n
	if b.nodes >= maxNodes {
		b.probs.add(yamlpos.Pos{File: b.inv.files[len(b.inv.files)-1]}, "", "inventory too large (too many hosts or YAML aliases)",
			"split it, or write it without nested aliases")
		return false
	}
	return true
}

// key returns a mapping key as a string, checking it is a plain scalar and
// not repeated in its mapping (yaml.v3 does not check at the node level).
func (b *builder) key(file string, k *yaml.Node, field string, seen map[string]bool) (string, bool) {
	k = b.deref(k)
	if k == nil {
		return "", false
	}
	if k.Kind != yaml.ScalarNode || isNull(k) {
		b.probs.add(yamlpos.Of(file, k), field, "key must be a name, got "+kindName(k), "use a plain name as the key")
		return "", false
	}
	if k.ShortTag() == "!!merge" {
		b.probs.add(yamlpos.Of(file, k), field, "YAML merge keys (<<) are not supported in inventories", "write the variables out")
		return "", false
	}
	if seen[k.Value] {
		b.probs.add(yamlpos.Of(file, k), join(field, k.Value), "duplicate key", "remove one of the two")
		return "", false
	}
	seen[k.Value] = true
	return k.Value, true
}

// mapping returns n, through an alias, when it is a mapping, and nil when
// it is absent or null; anything else is a problem at field (what it must
// be, todo what to write) and nil too.
func (b *builder) mapping(file string, n *yaml.Node, field, what, todo string) *yaml.Node {
	n = b.deref(n)
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		b.probs.add(yamlpos.Of(file, n), field, what+", got "+kindName(n), todo)
		return nil
	}
	return n
}

// entry is one entry of a YAML mapping whose key is a name.
type entry struct {
	name       string
	key, value *yaml.Node
}

// entries yields the entries of mapping n in order; a key that is not a
// name, or a name given twice, is a problem at field (see key) and is
// skipped.
func (b *builder) entries(file string, n *yaml.Node, field string) iter.Seq[entry] {
	return func(yield func(entry) bool) {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name, ok := b.key(file, k, field, seen)
			if !ok {
				continue
			}
			if !yield(entry{name, k, v}) {
				return
			}
		}
	}
}

func join(field, name string) string {
	if field == "" {
		return name
	}
	return field + "." + name
}

// group returns the named group, creating it.
func (b *builder) group(name string, pos yamlpos.Pos) *group {
	g, ok := b.inv.groups[name]
	if !ok {
		g = &group{name: name, pos: pos, vars: map[string]variable{}, dirVars: map[string]variable{}, childPos: map[string]yamlpos.Pos{}, hostSet: map[string]bool{}}
		b.inv.groups[name] = g
		b.inv.groupOrder = append(b.inv.groupOrder, name)
	}
	return g
}

var groupNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func (b *builder) checkGroupName(file string, k *yaml.Node, name, field string) bool {
	if !groupNameRe.MatchString(name) || len(name) > 255 {
		b.probs.add(yamlpos.Of(file, k), field, fmt.Sprintf("invalid group name %q", name),
			"use letters, digits, _ and -, starting with a letter or _")
		return false
	}
	return true
}

// parseGroup reads a group body (hosts, vars, children) into group name.
func (b *builder) parseGroup(file, name string, n *yaml.Node, field, parent string, keyPos yamlpos.Pos, depth int) {
	g := b.group(name, keyPos)
	if parent != "" {
		p := b.inv.groups[parent]
		if !slices.Contains(p.children, name) {
			p.children = append(p.children, name)
			p.childPos[name] = keyPos
			g.parents = append(g.parents, parent)
		}
	}
	n = b.deref(n)
	if n == nil || isNull(n) {
		return
	}
	if depth >= maxDepth {
		b.probs.add(keyPos, field, fmt.Sprintf("groups nested more than %d levels deep", maxDepth), "flatten the children: hierarchy")
		return
	}
	if b.active[n] {
		b.probs.add(keyPos, field, "group body refers to itself through a YAML alias", "write the group without the recursive alias")
		return
	}
	b.active[n] = true
	defer delete(b.active, n)
	if n.Kind != yaml.MappingNode {
		b.probs.add(yamlpos.Of(file, n), field, "group must be a mapping with hosts:, vars: and children:, got "+kindName(n),
			"write "+name+": followed by hosts:, vars: or children: indented under it")
		return
	}
	for e := range b.entries(file, n, field) {
		key, k, v := e.name, e.key, e.value
		switch key {
		case "hosts":
			b.parseHosts(file, g, v, join(field, key))
		case "vars":
			b.parseVars(file, g.vars, v, join(field, key))
		case "children":
			b.parseChildren(file, g, v, join(field, key), depth)
		default:
			b.probs.add(yamlpos.Of(file, k), join(field, key), fmt.Sprintf("unknown key %q in group %s", key, name),
				"a group may only contain hosts:, vars: and children:; put variables under vars:")
		}
	}
}

func (b *builder) parseChildren(file string, g *group, n *yaml.Node, field string, depth int) {
	n = b.mapping(file, n, field, "children must be a mapping of group names",
		"write each child group as a key (children: { kms: })")
	if n == nil {
		return
	}
	for e := range b.entries(file, n, field) {
		name, k, v := e.name, e.key, e.value
		cf := join(field, name)
		if name == GroupAll {
			b.probs.add(yamlpos.Of(file, k), cf, "group all cannot be a child group", "all contains every host already; remove it here")
			continue
		}
		if !b.checkGroupName(file, k, name, cf) {
			continue
		}
		b.parseGroup(file, name, v, cf, g.name, yamlpos.Of(file, k), depth+1)
	}
}

func (b *builder) parseHosts(file string, g *group, n *yaml.Node, field string) {
	n = b.mapping(file, n, field, "hosts must be a mapping of host names to variables",
		"write each host as a key (hosts: { kms1: , kms2: { ansible_host: 10.0.0.2 } })")
	if n == nil {
		return
	}
	for e := range b.entries(file, n, field) {
		pattern, k, v := e.name, e.key, e.value
		hf := join(field, pattern)
		names, err := expandHostRange(pattern)
		if err != nil {
			b.probs.add(yamlpos.Of(file, k), hf, err.Error(), "write ranges as name[1:3] or name[01:10] or name[a:c]")
			continue
		}
		if !b.spend(len(names)) {
			return
		}
		var hostsHere []*host
		for _, name := range names {
			if prob := checkHostName(name); prob != "" {
				b.probs.add(yamlpos.Of(file, k), hf, prob, "use letters, digits, '.', '-', '_' (and ':' for IPv6); set the address in ansible_host")
				continue
			}
			h, ok := b.inv.hostByName[name]
			if !ok {
				h = &host{name: name, pos: yamlpos.Of(file, k), vars: map[string]variable{}, dirVars: map[string]variable{}}
				b.inv.hostByName[name] = h
				b.inv.hosts = append(b.inv.hosts, h)
			}
			if !slices.Contains(h.groups, g.name) {
				h.groups = append(h.groups, g.name)
			}
			if !g.hostSet[name] {
				g.hostSet[name] = true
				g.hosts = append(g.hosts, name)
			}
			hostsHere = append(hostsHere, h)
		}
		vars := map[string]variable{}
		b.parseHostVars(file, vars, v, hf)
		for _, gk := range []string{"hosts", "vars", "children"} {
			if vv, ok := vars[gk]; ok {
				b.probs.add(vv.pos, join(hf, gk), fmt.Sprintf("%s: under a host is read as a variable named %q", gk, gk),
					"write host variables directly under the host name (kms1: { ansible_host: ... }); "+gk+": belongs to groups")
				delete(vars, gk)
			}
		}
		for _, h := range hostsHere {
			for name, val := range vars {
				h.vars[name] = val
			}
		}
	}
}

// parseHostVars reads the value of a host entry: null or a mapping of vars.
func (b *builder) parseHostVars(file string, dst map[string]variable, n *yaml.Node, field string) {
	dn := b.deref(n)
	if dn != nil && dn.Kind != yaml.MappingNode && !isNull(dn) {
		b.probs.add(yamlpos.Of(file, dn), field, "host entry must be empty or a mapping of variables, got "+kindName(dn),
			"write host: followed by variables indented under it (kms1: { ansible_host: 10.0.0.1 })")
		return
	}
	b.parseVars(file, dst, n, field)
}

var varNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseVars reads a mapping of variables, checking names and the types and
// values of the variables kmsctl knows.
func (b *builder) parseVars(file string, dst map[string]variable, n *yaml.Node, field string) {
	n = b.mapping(file, n, field, "vars must be a mapping of variable names to values",
		"write each variable as name: value")
	if n == nil {
		return
	}
	for e := range b.entries(file, n, field) {
		name, k, v := e.name, e.key, e.value
		vf := join(field, name)
		if !varNameRe.MatchString(name) {
			b.probs.add(yamlpos.Of(file, k), vf, fmt.Sprintf("invalid variable name %q", name),
				"use letters, digits and _, starting with a letter or _")
			continue
		}
		var val any
		if err := v.Decode(&val); err != nil {
			msg := "cannot decode value: " + strings.TrimPrefix(err.Error(), "yaml: ")
			if IsSecret(name) {
				msg = "cannot decode value (check its YAML tag)" // the error would quote the secret
			}
			b.probs.add(yamlpos.Of(file, v), vf, msg, "fix the value")
			continue
		}
		val = normalize(val)
		vp := yamlpos.Of(file, v)
		if e := checkVar(name, val); e != nil {
			e.Pos, e.Field = vp, vf
			b.probs.addErr(e)
			continue
		}
		if s := suggestKnown(name); s != "" {
			b.probs.add(yamlpos.Of(file, k), vf, fmt.Sprintf("unknown variable %q looks like a misspelling", name), "did you mean "+s+"?")
			continue
		}
		dst[name] = variable{value: val, pos: vp}
	}
}

// finish runs the whole-inventory checks and returns the inventory or every
// problem found.
func (b *builder) finish() (*Inventory, error) {
	inv := b.inv
	if len(inv.hosts) == 0 && len(b.probs.errs) == 0 {
		b.probs.add(yamlpos.Pos{File: strings.Join(inv.files, ", ")}, "", "inventory has no hosts",
			"list hosts under all: hosts: or under a group's hosts:")
	}
	for _, h := range inv.hosts {
		if g, ok := inv.groups[h.name]; ok && h.name != GroupAll {
			b.probs.add(h.pos, h.name, fmt.Sprintf("%q is both a host and a group (group defined at %s)", h.name, g.pos),
				"rename one of them so that --limit is unambiguous")
		}
	}
	// The checks below need the group graph to be a tree of finite depth;
	// with a cycle, report what was found so far. Other problems do not stop
	// them: every problem of an inventory is reported at once.
	if b.checkCycles() {
		return nil, b.probs.err()
	}
	// Hosts in no group but all are in "ungrouped", as in Ansible.
	ung := b.group(GroupUngrouped, yamlpos.Pos{})
	for _, h := range inv.hosts {
		if len(h.groups) == 0 || (len(h.groups) == 1 && h.groups[0] == GroupAll) {
			if !ung.hostSet[h.name] {
				ung.hostSet[h.name] = true
				ung.hosts = append(ung.hosts, h.name)
				h.groups = append(h.groups, GroupUngrouped)
			}
		}
	}
	if !slices.Contains(inv.groups[GroupAll].children, GroupUngrouped) {
		inv.groups[GroupAll].children = append(inv.groups[GroupAll].children, GroupUngrouped)
		ung.parents = append(ung.parents, GroupAll)
	}
	// "ungrouped" last in Groups().
	inv.groupOrder = slices.DeleteFunc(inv.groupOrder, func(s string) bool { return s == GroupUngrouped })
	inv.groupOrder = append(inv.groupOrder, GroupUngrouped)
	b.computeDepth()
	// Checks across variables (a storage path containing the config file),
	// on each host's resolved layout.
	for _, h := range inv.hosts {
		if _, err := inv.Node(h.name, nil); err != nil {
			var ve *yamlpos.List
			if !errors.As(err, &ve) {
				return nil, err
			}
			b.probs.errs = append(b.probs.errs, ve.Errs...)
		}
	}
	b.checkEndpoints()
	if err := b.probs.err(); err != nil {
		return nil, err
	}
	return inv, nil
}

// checkEndpoints reports every host whose kms_endpoint, as written in the
// inventory, is already another host's: each Key Manager node has its own.
// Endpoints derived from ansible_host are not compared, since several
// inventory hosts may reach one machine (on different SSH ports).
func (b *builder) checkEndpoints() {
	type first struct {
		host string
		pos  yamlpos.Pos
	}
	seen := map[string]first{}
	for _, h := range b.inv.hosts {
		vars, err := b.inv.resolveInventory(h.name, nil)
		if err != nil {
			continue
		}
		v, ok := vars[VarEndpoint]
		s, isString := v.value.(string)
		if !ok || !isString {
			continue
		}
		key := strings.ToLower(s)
		if f, dup := seen[key]; dup {
			b.probs.add(v.pos, "host "+h.name+": "+VarEndpoint,
				fmt.Sprintf("endpoint %s is also the endpoint of host %s (set at %s)", s, f.host, f.pos),
				"give each Key Manager node its own kms_endpoint, its host:port as the cluster knows it")
			continue
		}
		seen[key] = first{h.name, v.pos}
	}
}

// checkCycles reports every cycle in children (a group that is its own
// ancestor), at the position of the child entry that closes it, and
// whether there was one.
func (b *builder) checkCycles() bool {
	found := false
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var visit func(g string, stack []string)
	visit = func(g string, stack []string) {
		color[g] = grey
		stack = append(stack, g)
		gr := b.inv.groups[g]
		for _, c := range gr.children {
			switch color[c] {
			case grey:
				i := slices.Index(stack, c)
				cycle := append(slices.Clone(stack[i:]), c)
				found = true
				b.probs.add(gr.childPos[c], g+".children."+c,
					"cycle in children: "+strings.Join(cycle, " -> "),
					"a group cannot contain itself; remove "+c+" from the children of "+g)
			case white:
				visit(c, stack)
			}
		}
		color[g] = black
	}
	for _, g := range b.inv.groupOrder {
		if color[g] == white {
			visit(g, nil)
		}
	}
	return found
}

// computeDepth sets each group's depth to its longest distance from "all"
// (Ansible's group depth), used to order variable precedence.
func (b *builder) computeDepth() {
	memo := map[string]int{}
	var depth func(string) int
	depth = func(g string) int {
		if d, ok := memo[g]; ok {
			return d
		}
		d := 0
		for _, p := range b.inv.groups[g].parents {
			d = max(d, depth(p)+1)
		}
		memo[g] = d
		return d
	}
	for name, g := range b.inv.groups {
		g.depth = depth(name)
	}
}

// normalize turns mappings with non-string keys (map[any]any from yaml.v3)
// into map[string]any, so every mapping a caller sees has string keys.
func normalize(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	default:
		return v
	}
}
