package main

import (
	"fmt"
	"strings"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
)

// notAHost is the usage error of command for a host name (given with
// flag, or as an argument when flag is "") that is not a node of group:
// it lists the group's hosts and, for a likely typo (one host nearer than
// the others, at most two edits away), asks whether that one was meant.
func notAHost(command, flag, name, group string, nodes []inventory.KMSNode) error {
	var hosts, near []string
	best := 3 // more edits than that is not a typo
	for _, n := range nodes {
		hosts = append(hosts, n.Host)
		switch d := editDistance(strings.ToLower(n.Host), strings.ToLower(name)); {
		case d < best:
			best, near = d, []string{n.Host}
		case d == best:
			near = append(near, n.Host)
		}
	}
	named := name
	if flag != "" {
		named = flag + " " + name
	}
	msg := fmt.Sprintf("%s: %s is not a host of group %s (its hosts: %s).", command, named, group, strings.Join(hosts, ", "))
	if len(near) == 1 {
		msg = fmt.Sprintf("%s Did you mean %s?", msg, near[0])
	}
	return exit.Usagef("%s Name a host of the group, or another group with --cluster GROUP", msg)
}
