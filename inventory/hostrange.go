package inventory

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// hostRangeRe matches the first [beg:end] or [beg:end:stride] in a host key,
// Ansible's host range form (kms[1:3], kms[01:10], db-[a:c]).
var hostRangeRe = regexp.MustCompile(`^(.*?)\[([^\]:]*):([^\]:]*)(?::([^\]:]*))?\](.*)$`)

// expandHostRange expands Ansible host ranges in a hosts: key. A key without a
// range is returned as is. Numeric bounds with a leading zero keep their width.
func expandHostRange(pattern string) ([]string, error) {
	m := hostRangeRe.FindStringSubmatch(pattern)
	if m == nil {
		return []string{pattern}, nil
	}
	head, beg, end, strideS, tail := m[1], m[2], m[3], m[4], m[5]
	stride := 1
	if strideS != "" {
		s, err := strconv.Atoi(strideS)
		if err != nil || s <= 0 {
			return nil, fmt.Errorf("host range %q: stride %q must be a positive number", pattern, strideS)
		}
		stride = s
	}
	if beg == "" {
		beg = "0"
	}
	if end == "" {
		return nil, fmt.Errorf("host range %q: missing end of range", pattern)
	}
	var items []string
	switch {
	case isDigits(beg) && isDigits(end):
		width := 0
		if len(beg) > 1 && beg[0] == '0' {
			if len(beg) != len(end) {
				return nil, fmt.Errorf("host range %q: beginning and end must have the same width", pattern)
			}
			width = len(beg)
		}
		lo, err1 := strconv.Atoi(beg)
		hi, err2 := strconv.Atoi(end)
		if err1 != nil || err2 != nil || lo > hi {
			return nil, fmt.Errorf("host range %q: invalid numeric range %s:%s", pattern, beg, end)
		}
		if (hi-lo)/stride+1 > maxRangeHosts {
			return nil, fmt.Errorf("host range %q: more than %d hosts", pattern, maxRangeHosts)
		}
		for i := lo; i <= hi; i += stride {
			items = append(items, fmt.Sprintf("%0*d", width, i))
		}
	case len(beg) == 1 && len(end) == 1 && isLetter(beg[0]) && isLetter(end[0]):
		if beg[0] > end[0] || unicode.IsUpper(rune(beg[0])) != unicode.IsUpper(rune(end[0])) {
			return nil, fmt.Errorf("host range %q: invalid letter range %s:%s", pattern, beg, end)
		}
		for c := int(beg[0]); c <= int(end[0]); c += stride {
			items = append(items, string(rune(c)))
		}
	default:
		return nil, fmt.Errorf("host range %q: bounds must be numbers or single letters", pattern)
	}
	rest, err := expandHostRange(tail)
	if err != nil {
		return nil, err
	}
	if len(items)*len(rest) > maxRangeHosts {
		return nil, fmt.Errorf("host range %q: more than %d hosts", pattern, maxRangeHosts)
	}
	out := make([]string, 0, len(items)*len(rest))
	for _, it := range items {
		for _, r := range rest {
			out = append(out, head+it+r)
		}
	}
	return out, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

var hostNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

// checkHostName returns "" for an acceptable host name, else the problem.
// Names become ssh destinations and --limit patterns, so they are restricted
// to letters, digits, '.', '-', '_', or an IPv6 address.
func checkHostName(name string) string {
	if strings.Contains(name, ":") {
		if a, err := netip.ParseAddr(name); err != nil || !a.Is6() {
			return fmt.Sprintf("invalid host name %q: only an IPv6 address may contain ':'", name)
		}
		return ""
	}
	switch {
	case name == "":
		return "empty host name"
	case len(name) > 253:
		return "host name longer than 253 characters"
	case strings.HasPrefix(name, "-"):
		return fmt.Sprintf("invalid host name %q: must not start with '-'", name)
	case !hostNameRe.MatchString(name):
		return fmt.Sprintf("invalid host name %q", name)
	}
	return ""
}
