package inventory

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/kmsctl/kmsctl/redact"

	"github.com/kmsctl/kmsctl/yamlpos"
)

// defaultPos is the position reported for a variable that was not set and
// took its default.
var defaultPos = yamlpos.Pos{File: "(default)"}

// layoutDefaults are the Key Manager layout defaults (docs/design.md §3.8), present
// in Vars at the lowest precedence so that playbooks can use them.
var layoutDefaults = map[string]any{
	VarKMSPort:     DefaultKMSPort,
	VarStoragePath: DefaultStoragePath,
	VarConfigFile:  DefaultConfigFile,
	VarEnvFile:     DefaultEnvFile,
	VarCertsDir:    DefaultCertsDir,
	VarBinary:      DefaultBinary,
	VarService:     DefaultService,
	VarCluster:     DefaultCluster,
	VarLeaseDir:    DefaultLeaseDir,
	VarKMSUser:     DefaultKMSUser,
	VarAPI:         string(DefaultAPI),
}

// precedenceGroups returns the groups whose vars apply to h, lowest
// precedence first: ordered by depth (all = 0, its children 1, ...), then
// ansible_group_priority (default 1), then name — Ansible's order, later wins.
func (inv *Inventory) precedenceGroups(h *host) []*group {
	names := inv.ancestors(h)
	gs := make([]*group, len(names))
	for i, n := range names {
		gs[i] = inv.groups[n]
	}
	prio := func(g *group) int {
		v, ok := g.dirVars[VarGroupPriority]
		if !ok {
			v, ok = g.vars[VarGroupPriority]
		}
		if ok {
			if n, ok := asInt(v.value); ok {
				return n
			}
		}
		return 1
	}
	slices.SortFunc(gs, func(a, b *group) int {
		return cmp.Or(cmp.Compare(a.depth, b.depth), cmp.Compare(prio(a), prio(b)), cmp.Compare(a.name, b.name))
	})
	return gs
}

// resolve merges h's variables with their positions: layout defaults, then
// group vars in precedence order, then host vars, then extra vars.
func (inv *Inventory) resolve(hostName string, extra map[string]any) (map[string]variable, error) {
	out, err := inv.resolveInventory(hostName, layoutDefaults)
	if err != nil {
		return nil, err
	}
	for k, v := range extra {
		out[k] = variable{value: v, pos: extraPos, rank: math.MaxInt}
	}
	if _, ok := out[VarEndpoint]; !ok {
		addr, pos := hostName, defaultPos
		if a, ok := firstVar(out, VarHost, legacyHost); ok {
			if s, ok := a.value.(string); ok && s != "" {
				addr, pos = s, a.pos // a problem with the derived endpoint is one of ansible_host
			}
		}
		port := DefaultKMSPort
		if p, ok := asInt(out[VarKMSPort].value); ok {
			port = p
		}
		out[VarEndpoint] = variable{value: net.JoinHostPort(addr, strconv.Itoa(port)), pos: pos}
	}
	return out, nil
}

// resolveInventory merges defaults, group vars in precedence order and host
// vars, without extra vars and without the derived kms_endpoint default.
func (inv *Inventory) resolveInventory(hostName string, defaults map[string]any) (map[string]variable, error) {
	h, err := inv.host(hostName)
	if err != nil {
		return nil, err
	}
	out := map[string]variable{}
	for k, v := range defaults {
		out[k] = variable{value: v, pos: defaultPos}
	}
	rank := 1
	layer := func(vars map[string]variable) {
		for k, v := range vars {
			if k != VarGroupPriority { // a property of the group, not a host variable (as in Ansible)
				v.rank = rank
				out[k] = v
			}
		}
		rank++
	}
	groups := inv.precedenceGroups(h)
	for _, g := range groups {
		layer(g.vars)
	}
	for _, g := range groups {
		layer(g.dirVars)
	}
	layer(h.vars)
	layer(h.dirVars)
	return out, nil
}

// firstVar returns the variable set at the highest precedence among names,
// which are spellings of one setting (ansible_user, ansible_ssh_user); at
// equal precedence the first name wins.
func firstVar(vars map[string]variable, names ...string) (variable, bool) {
	v, _, ok := pickVar(vars, names...)
	return v, ok
}

func pickVar(vars map[string]variable, names ...string) (variable, string, bool) {
	var best variable
	bestName, found := "", false
	for _, n := range names {
		if v, ok := vars[n]; ok && (!found || v.rank > best.rank) {
			best, bestName, found = v, n, true
		}
	}
	return best, bestName, found
}

// Vars returns host's variables with Ansible's precedence, lowest first:
//
//  1. Key Manager layout defaults (kms_port, kms_storage_path, ...; kms_endpoint
//     defaults to ansible_host-or-name:kms_port);
//  2. group vars written in inventory files, "all" first, then deeper groups;
//     groups at the same depth are ordered by ansible_group_priority
//     (default 1) and then by name, alphabetically, and the later group wins;
//  3. group vars from group_vars/ files, in the same group order (so
//     group_vars/all.yml beats an inventory file's group vars, as in Ansible);
//  4. the host's own vars written in inventory files (if the host is listed
//     several times, the last listing wins);
//  5. host vars from host_vars/ files;
//  6. extra vars (-e), over everything.
//
// It also sets the magic variables inventory_hostname, inventory_hostname_short
// and group_names (sorted, without "all"), as Ansible does. See the package
// documentation for the depth rule. The returned map
// is a deep copy that the caller may modify.
func (inv *Inventory) Vars(host string, extra map[string]any) (map[string]any, error) {
	vars, err := inv.resolve(host, extra)
	if err != nil {
		return nil, err
	}
	return inv.withMagic(host, plain(vars))
}

// withMagic adds the magic variables inventory_hostname,
// inventory_hostname_short and group_names to host's plain vars.
func (inv *Inventory) withMagic(host string, vars map[string]any) (map[string]any, error) {
	groups, err := inv.HostGroups(host)
	if err != nil {
		return nil, err
	}
	names := make([]any, len(groups))
	for i, g := range groups {
		names[i] = g
	}
	vars["inventory_hostname"] = host
	vars["inventory_hostname_short"], _, _ = strings.Cut(host, ".")
	vars["group_names"] = names
	return vars, nil
}

// Origin returns where host's variable name was set (after precedence, without
// extra vars): a file position, or File "(default)" for a layout default. A
// kms_endpoint derived from ansible_host has the position of ansible_host.
// ok is false when the variable is not set for the host.
func (inv *Inventory) Origin(host, name string) (pos yamlpos.Pos, ok bool) {
	vars, err := inv.resolve(host, nil)
	if err != nil {
		return yamlpos.Pos{}, false
	}
	v, ok := vars[name]
	return v.pos, ok
}

func plain(vars map[string]variable) map[string]any {
	out := make(map[string]any, len(vars))
	for k, v := range vars {
		out[k] = deepCopy(v.value)
	}
	return out
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}

// secretWords mark a variable as secret when its (lower-cased) name contains
// one of them.
var secretWords = []string{"api_key", "apikey", "hsm_key", "password", "passwd", "passphrase", "secret", "token", "private", "credential"}

// IsSecret reports whether a variable of this name holds a secret: its name
// contains api_key, hsm_key, password, passwd, passphrase, secret, token,
// credential or private, or ends in _pass (ansible_become_pass,
// ansible_ssh_pass). Names ending in _file or _command say where a secret
// is, not what it is (ansible_ssh_private_key_file, kms_api_key_file,
// kms_hsm_key_command), and are not secret.
func IsSecret(name string) bool {
	n := strings.ToLower(name)
	if strings.HasSuffix(n, "_file") || strings.HasSuffix(n, "_command") {
		return false
	}
	if strings.HasSuffix(n, "_pass") || n == "pass" {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// Secrets returns the string values of every secret variable (IsSecret) set
// anywhere in the inventory: group and host vars, written in inventory files
// or in group_vars/ and host_vars/, sorted and without duplicates. It
// resolves no host; a run registers them all with its redactor.
func (inv *Inventory) Secrets() []string {
	var out []string
	add := func(vars map[string]variable) {
		for k, v := range vars {
			if s, ok := v.value.(string); ok && s != "" && IsSecret(k) {
				out = append(out, s)
			}
		}
	}
	for _, g := range inv.groups {
		add(g.vars)
		add(g.dirVars)
	}
	for _, h := range inv.hosts {
		add(h.vars)
		add(h.dirVars)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// MaskedVars returns host's variables with extra (-e) over them, as Vars
// but without the magic variables, with every secret value replaced by
// redact.Mask: secret variables wholly, and any secret value appearing inside
// another variable's string. Use it to show variables (kmsctl inventory list).
func (inv *Inventory) MaskedVars(host string, extra map[string]any) (map[string]any, error) {
	vars, err := inv.resolve(host, extra)
	if err != nil {
		return nil, err
	}
	return maskVars(plain(vars)), nil
}

// maskVars masks secrets in a plain variable map, in place, and returns it.
func maskVars(vars map[string]any) map[string]any {
	r := redact.New()
	for k, v := range vars {
		if IsSecret(k) {
			addSecrets(r, v)
			vars[k] = redact.Mask
		}
	}
	for k, v := range vars {
		vars[k] = maskValue(r, v)
	}
	return vars
}

func addSecrets(r *redact.Redactor, v any) {
	switch x := v.(type) {
	case string:
		r.Add(x)
	case map[string]any:
		for _, e := range x {
			addSecrets(r, e)
		}
	case []any:
		for _, e := range x {
			addSecrets(r, e)
		}
	case nil:
	default:
		r.Add(fmt.Sprint(x))
	}
}

func maskValue(r *redact.Redactor, v any) any {
	switch x := v.(type) {
	case string:
		return r.String(x)
	case map[string]any:
		for k, e := range x {
			if IsSecret(k) {
				x[k] = redact.Mask
			} else {
				x[k] = maskValue(r, e)
			}
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskValue(r, e)
		}
		return x
	default:
		return v
	}
}
