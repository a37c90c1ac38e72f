package modules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kmsctl/kmsctl/tasks"
)

// checkEnum checks, when the argument is given and known (no template),
// that it is one of allowed.
func checkEnum(args tasks.Args, name string, allowed ...string) error {
	if !args.Has(name) || !args.Literal(name) {
		return nil
	}
	v, err := args.String(name)
	if err != nil {
		return err
	}
	if !slices.Contains(allowed, v) {
		return fmt.Errorf("%s %q: want %s", name, v, orList(allowed))
	}
	return nil
}

// orList joins words as "a, b or c", leaving out the empty one.
func orList(words []string) string {
	var w []string
	for _, s := range words {
		if s != "" {
			w = append(w, s)
		}
	}
	if len(w) < 2 {
		return strings.Join(w, "")
	}
	return strings.Join(w[:len(w)-1], ", ") + " or " + w[len(w)-1]
}
