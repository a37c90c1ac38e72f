package inventory

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Select returns the hosts matching an Ansible host pattern (--limit, a
// play's hosts:), in inventory order, without duplicates.
//
// A pattern is a list of terms separated by ',' or ':' (':' inside [...] or
// in an IPv6 address does not separate). A term is:
//
//   - all or *: every host;
//   - a host name or a group name (a group selects its hosts and those of its
//     descendants);
//   - a shell glob (*, ?, [abc], [!abc]) over group and host names: kms*;
//   - ~REGEX: a regular expression over group and host names;
//   - any of these followed by a subscript [i], [i:j] or [i-j] (inclusive,
//     negative i counts from the end) picking from the matched hosts: kms[0];
//   - prefixed with & to intersect, or with ! to exclude.
//
// As in Ansible, plain terms are united first, then & terms intersect, then !
// terms exclude; a pattern of only ! terms starts from all. A term that
// matches nothing is an error naming it (Ansible only warns).
func (inv *Inventory) Select(pattern string) ([]string, error) {
	if inv.HasHost(pattern) {
		return []string{pattern}, nil
	}
	terms := splitPattern(pattern)
	if len(terms) == 0 {
		return nil, fmt.Errorf("select hosts: empty host pattern (use all, a group or a host name)")
	}
	var plain, and, not []string
	for _, t := range terms {
		switch t[0] {
		case '&':
			and = append(and, t[1:])
		case '!':
			not = append(not, t[1:])
		default:
			plain = append(plain, t)
		}
	}
	if len(plain) == 0 {
		plain = []string{GroupAll}
	}
	set := map[string]bool{}
	for _, t := range plain {
		hs, err := inv.matchTerm(t)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			set[h] = true
		}
	}
	for _, t := range and {
		hs, err := inv.matchTerm(t)
		if err != nil {
			return nil, err
		}
		keep := map[string]bool{}
		for _, h := range hs {
			if set[h] {
				keep[h] = true
			}
		}
		set = keep
	}
	for _, t := range not {
		hs, err := inv.matchTerm(t)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			delete(set, h)
		}
	}
	return inv.hostNames(set), nil
}

// splitPattern splits on ',' (if present) or ':' outside brackets, trimming
// spaces and dropping empty terms. A term that parses as an IPv6 address is
// not split on ':'.
func splitPattern(p string) []string {
	var raw []string
	if strings.Contains(p, ",") {
		raw = strings.Split(p, ",")
	} else if isIPv6ish(p) {
		raw = []string{p}
	} else {
		depth, start := 0, 0
		for i := 0; i < len(p); i++ {
			switch p[i] {
			case '[':
				depth++
			case ']':
				if depth > 0 {
					depth--
				}
			case ':':
				if depth == 0 {
					raw = append(raw, p[start:i])
					start = i + 1
				}
			}
		}
		raw = append(raw, p[start:])
	}
	var out []string
	for _, t := range raw {
		if t = strings.TrimSpace(t); t != "" && t != "!" && t != "&" {
			out = append(out, t)
		}
	}
	return out
}

var ipv6ishRe = regexp.MustCompile(`^[!&]?[0-9A-Fa-f]*:[0-9A-Fa-f:.%A-Za-z]*:[0-9A-Fa-f.%A-Za-z]*$`)

// isIPv6ish reports whether p looks like an IPv6 address (at least two ':'
// and only hex digits, dots and a zone), so it is not split on ':'.
func isIPv6ish(p string) bool {
	return strings.Count(p, ":") >= 2 && ipv6ishRe.MatchString(p) && !strings.ContainsAny(p, "[]*?~")
}

// subscriptRe matches Ansible's subscript: NAME[i], NAME[i:j], NAME[i-j].
var subscriptRe = regexp.MustCompile(`^(.+)\[(?:(-?[0-9]+)|([0-9]+)?\s*[:-]\s*([0-9]+)?)\]$`)

// matchTerm resolves one term (without & or !) to hosts in inventory order.
// A term ending in [...] is first tried as a subscript of what precedes it
// (Ansible's rule), then as a glob over the whole term (kms[13]).
func (inv *Inventory) matchTerm(term string) ([]string, error) {
	if inv.HasHost(term) {
		return []string{term}, nil
	}
	var subErr error
	if m := subscriptRe.FindStringSubmatch(term); m != nil && term[0] != '~' {
		base, err := inv.matchBase(m[1])
		if err != nil {
			return nil, err
		}
		if len(base) > 0 {
			hosts, err := applySubscript(term, base, m[2], m[3], m[4])
			if err == nil {
				return hosts, nil
			}
			subErr = err
		}
	}
	hosts, err := inv.matchBase(term)
	if err != nil && subErr == nil {
		return nil, err
	}
	if len(hosts) > 0 {
		return hosts, nil
	}
	if subErr != nil {
		return nil, subErr
	}
	return nil, fmt.Errorf("select hosts: pattern %q matches no host or group in the inventory (see kmsctl inventory graph)", term)
}

// matchBase matches a name, glob or ~regex against group names (selecting
// their hosts) and, for a glob or regex or when no group matched, host names.
func (inv *Inventory) matchBase(p string) ([]string, error) {
	var match func(string) bool
	isPattern := false
	switch {
	case p == "*" || p == GroupAll:
		return inv.Hosts(), nil
	case p[0] == '~':
		re, err := regexp.Compile(`^(?:` + p[1:] + `)`) // anchored at the start, like Python's re.match
		if err != nil {
			return nil, fmt.Errorf("select hosts: invalid regular expression in %q: %w", p, err)
		}
		match, isPattern = re.MatchString, true
	case strings.ContainsAny(p, "*?["):
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("select hosts: invalid glob %q: %w", p, err)
		}
		match, isPattern = func(s string) bool { ok, _ := path.Match(p, s); return ok }, true
	default:
		match = func(s string) bool { return s == p }
	}
	set := map[string]bool{}
	groupMatched := false
	for _, g := range inv.groupOrder {
		if match(g) {
			groupMatched = true
			for h := range inv.groupHostSet(g) {
				set[h] = true
			}
		}
	}
	if !groupMatched || isPattern {
		for _, h := range inv.hosts {
			if match(h.name) {
				set[h.name] = true
			}
		}
	}
	return inv.hostNames(set), nil
}

// applySubscript picks hosts[i] or hosts[i..j] (inclusive), as Ansible does.
func applySubscript(term string, hosts []string, single, from, to string) ([]string, error) {
	n := len(hosts)
	if single != "" {
		i, _ := strconv.Atoi(single)
		if i < 0 {
			i += n
		}
		if i < 0 || i >= n {
			return nil, fmt.Errorf("select hosts: subscript in %q out of range (%d hosts match)", term, n)
		}
		return hosts[i : i+1], nil
	}
	i, j := 0, n-1
	if from != "" {
		i, _ = strconv.Atoi(from)
	}
	if to != "" {
		j, _ = strconv.Atoi(to)
	}
	if i >= n {
		return nil, fmt.Errorf("select hosts: subscript in %q out of range (%d hosts match)", term, n)
	}
	j = min(j, n-1)
	if j < i {
		return nil, fmt.Errorf("select hosts: empty subscript range in %q", term)
	}
	return hosts[i : j+1], nil
}
