package inventory

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Graph writes the group tree like `ansible-inventory --graph`: "@all:", then
// child groups and hosts sorted by name, each level indented by "  |", with
// "ungrouped" always shown. With withVars (like --graph --vars) each host is
// followed by its variables as resolved from the inventory (group and host
// vars with precedence applied, without the layout defaults; see MaskedVars
// for those), and each group by its own vars, as "{name = value}" lines
// sorted by name. Secrets are masked.
func (inv *Inventory) Graph(w io.Writer, withVars bool) error {
	bw := bufio.NewWriter(w)
	if err := inv.graphGroup(bw, GroupAll, 0, withVars); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write inventory graph: %w", err)
	}
	return nil
}

func graphLine(w *bufio.Writer, depth int, s string) {
	if depth > 0 {
		w.WriteString(strings.Repeat("  |", depth))
		w.WriteString("--")
	}
	w.WriteString(s)
	w.WriteByte('\n')
}

func (inv *Inventory) graphGroup(w *bufio.Writer, name string, depth int, withVars bool) error {
	g := inv.groups[name]
	graphLine(w, depth, "@"+name+":")
	for _, c := range slices.Sorted(slices.Values(g.children)) {
		if err := inv.graphGroup(w, c, depth+1, withVars); err != nil {
			return err
		}
	}
	if name != GroupAll {
		for _, h := range slices.Sorted(slices.Values(g.hosts)) {
			graphLine(w, depth+1, h)
			if withVars {
				vars, err := inv.resolveInventory(h, nil)
				if err != nil {
					return err
				}
				writeVars(w, depth+2, maskVars(plain(vars)))
			}
		}
	}
	if withVars {
		vars := make(map[string]any, len(g.vars)+len(g.dirVars))
		for _, src := range []map[string]variable{g.vars, g.dirVars} {
			for k, v := range src {
				vars[k] = deepCopy(v.value)
			}
		}
		writeVars(w, depth+1, maskVars(vars))
	}
	return nil
}

func writeVars(w *bufio.Writer, depth int, vars map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		graphLine(w, depth, "{"+k+" = "+FormatValue(vars[k])+"}")
	}
}

// FormatValue renders a variable value for display: strings as they are,
// other values as compact JSON (mappings with sorted keys).
func FormatValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if v == nil {
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
