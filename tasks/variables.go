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

// scope builds the variables a task sees on a host, lowest precedence
// first: inventory host vars, play vars, registered results and facts,
// extra vars; plus inventory_hostname, ansible_check_mode,
// ansible_diff_mode and hostvars (every play host's inventory and play
// vars, extra vars over them).
// String variables that are templates themselves ("{{ base }}/conf") are
// rendered against the others, a few levels deep; one that fails to
// render stays as written. The scope's alt holds the same with every
// secret disguised (see secrets), hostvars' taken from hv.
func (r *run) scope(p Play, hs *hostState, hv scope) scope {
	v := merge(hs.host.Vars, p.Vars, hs.facts, r.e.ExtraVars)
	v["inventory_hostname"] = hs.host.Name
	v["ansible_check_mode"] = r.e.Check
	v["ansible_diff_mode"] = r.e.Diff
	var alt map[string]any
	for k, val := range v {
		d, ok := r.sec.disguise(val, r.sec.isNamed(k) || hs.derived[k])
		if !ok {
			continue
		}
		if alt == nil {
			alt = merge(v)
		}
		alt[k] = d
	}
	if hv.alt != nil && alt == nil {
		alt = merge(v)
	}
	v["hostvars"] = hv.vars
	if alt != nil {
		alt["hostvars"] = hv.alt
		if hv.alt == nil {
			alt["hostvars"] = hv.vars
		}
	}
	for range 5 {
		changed := false
		for _, k := range sortedKeys(v) {
			s, ok := v[k].(string)
			if !ok || !isTemplated(s) {
				continue
			}
			out, err := r.ev.render(s, v)
			if err != nil || out == s {
				continue
			}
			v[k] = out
			changed = true
			if alt == nil {
				continue
			}
			as, _ := alt[k].(string)
			if a, err := r.ev.render(as, alt); err != nil || a != out {
				r.sec.register(out)
				if err != nil {
					a = alter(out)
				}
				alt[k] = a
			} else {
				alt[k] = out
			}
		}
		if !changed {
			break
		}
	}
	return scope{vars: v, alt: alt}
}

// hostvarsOf maps every host of the play to its inventory and play
// variables, extra vars (-e) over them as in the host's own variables (the
// hostvars variable of its tasks), with the same disguised as alt.
func (r *run) hostvarsOf(p Play) scope {
	hv := make(map[string]any, len(p.Hosts))
	for _, h := range p.Hosts {
		hv[h.Name] = merge(h.Vars, p.Vars, r.e.ExtraVars)
	}
	sc := scope{vars: hv}
	if d, ok := r.sec.disguise(hv, false); ok {
		sc.alt = d.(map[string]any)
	}
	return sc
}
