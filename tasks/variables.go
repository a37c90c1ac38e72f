package tasks

// Variables: the layers a task sees on a host, merged in precedence order.

import "maps"

// merge returns one map holding every layer's variables, a later layer's
// value winning over an earlier one's.
func merge(layers ...map[string]any) map[string]any {
	n := 0
	for _, l := range layers {
		n += len(l)
	}
	out := make(map[string]any, n)
	for _, l := range layers {
		maps.Copy(out, l)
	}
	return out
}

// vars builds the variables a task sees on a host, lowest precedence
// first: inventory host vars, play vars, registered results and facts,
// extra vars; plus inventory_hostname, ansible_check_mode,
// ansible_diff_mode and hostvars (every play host's inventory and play
// vars, extra vars over them).
// String variables that are templates themselves ("{{ base }}/conf") are
// rendered against the others, a few levels deep; one that fails to
// render stays as written.
func (r *run) vars(p Play, hs *hostState, hostvars map[string]any) map[string]any {
	v := merge(hs.host.Vars, p.Vars, hs.facts, r.e.ExtraVars)
	v["inventory_hostname"] = hs.host.Name
	v["ansible_check_mode"] = r.e.Check
	v["ansible_diff_mode"] = r.e.Diff
	v["hostvars"] = hostvars
	for range 5 {
		changed := false
		for k, val := range v {
			if s, ok := val.(string); ok && isTemplated(s) {
				if out, err := r.ev.render(s, v); err == nil && out != s {
					v[k] = out
					changed = true
				}
			}
		}
		if !changed {
			break
		}
	}
	return v
}

// hostvarsOf maps every host of the play to its inventory and play
// variables, extra vars (-e) over them as in the host's own variables (the
// hostvars variable of its tasks).
func (r *run) hostvarsOf(p Play) map[string]any {
	hv := make(map[string]any, len(p.Hosts))
	for _, h := range p.Hosts {
		hv[h.Name] = merge(h.Vars, p.Vars, r.e.ExtraVars)
	}
	return hv
}
