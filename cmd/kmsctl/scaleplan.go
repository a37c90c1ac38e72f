package main

import (
	"fmt"
	"strings"
)

// scaleInput is what scale add and scale remove decide on, gathered by one
// read-only play on every node of the cluster at once.
type scaleInput struct {
	Nodes  []nodeState
	Target string
	// OperatorFP is the fingerprint of the HSM key kmsctl installs (scale
	// add); "" when it could not be read (OperatorErr says why).
	OperatorFP, OperatorErr string
	// Storage is, for scale add, the first entry found in the target's
	// storage path ("" = empty or absent), or why it could not be listed.
	Storage map[string]string
}

// scalePlan is what scale add or scale remove will do.
type scalePlan struct {
	Op       string   `json:"op"` // "add" or "remove"
	Host     string   `json:"host"`
	Endpoint string   `json:"endpoint"`
	ID       int      `json:"id"`      // remove: its member ID; -1 = not a member
	Via      string   `json:"via"`     // the healthy member the change goes through
	Members  []string `json:"members"` // the members (hosts) that stay, or that it joins
	HSM      string   `json:"hsm_fingerprint,omitempty"`
	// Phases are the built-in playbook's phases to run, in order; none:
	// nothing to do (Done says why).
	Phases    []string `json:"phases"`
	Provision bool     `json:"provision"` // add: the provision playbook runs first
	Done      string   `json:"done,omitempty"`
}

// members returns the nodes other than target whose Key Manager answers,
// and the healthy one a membership change goes through: ready for writes
// and seeing no member down; a refusal when there is none.
func scaleVia(in scaleInput) (members []nodeState, via *nodeState, err error) {
	for _, n := range in.Nodes {
		if n.Host != in.Target && n.View != nil {
			members = append(members, n)
		}
	}
	if len(members) == 0 {
		return nil, nil, refusal{"no member of the cluster other than " + in.Target + " answers",
			"A membership change goes through a healthy member: check with `kmsctl status`"}
	}
	for i, m := range members {
		if m.ReadyWrite && len(m.View.Down) == 0 && m.View.Leader >= 0 {
			return members, &members[i], nil
		}
	}
	return nil, nil, refusal{fmt.Sprintf("no member is ready for writes with every member up (%s)", joinAnd(hostNames(members))),
		"A membership change is a write: every member must be up. `kmsctl status` shows which is down; `kmsctl recover node` rebuilds it"}
}

// memberHosts are the inventory hosts of the members v lists, but not skip.
func memberHosts(nodes []nodeState, v *nodeView, skip string) []string {
	var out []string
	for _, n := range nodes {
		if _, ok := v.lists(n.Endpoint); ok && n.Host != skip {
			out = append(out, n.Host)
		}
	}
	return out
}

// listedBy finds a member (other than t) whose view lists t's endpoint:
// its host and t's ID there; "" when none does.
func listedBy(nodes []nodeState, t *nodeState) (string, int) {
	for _, n := range nodes {
		if n.Host == t.Host || n.View == nil {
			continue
		}
		if id, ok := n.View.lists(t.Endpoint); ok {
			return n.Host, id
		}
	}
	return "", -1
}

// fresh reports whether v is a node that runs on its own, without history:
// what CLUSTER:ADDNODE takes.
func fresh(v *nodeView) bool { return len(v.Members) == 1 && v.Commit == 0 }

// planScaleAdd applies scale add's rules: a pure function. It returns the
// plan, or the first rule broken.
func planScaleAdd(in scaleInput) (scalePlan, error) {
	t := byHost(in.Nodes, in.Target)
	p := scalePlan{Op: "add", Host: in.Target, ID: -1}
	if t == nil {
		return p, refusal{in.Target + " is not a node of the cluster's inventory group", "Add it to the group (with its kms_endpoint) first"}
	}
	p.Endpoint = t.Endpoint
	if by, id := listedBy(in.Nodes, t); by != "" && (t.View == nil || t.View.ID != id) {
		return p, refusal{fmt.Sprintf("%s is a member (node %d) that does not answer as such", t.Host, id),
			"A member that is down is rebuilt by `kmsctl recover node " + t.Host + "`"}
	}
	members, via, err := scaleVia(in)
	if err != nil {
		return p, err
	}
	p.Via = via.Host
	p.Members = memberHosts(in.Nodes, via.View, in.Target)
	for _, m := range members {
		switch {
		case m.HSMFingerprint == "":
			return p, refusal{fmt.Sprintf("the HSM key of member %s could not be read (%s)", m.Host, m.HSMError),
				"kmsctl compares the cluster's HSM key with the one it installs; fix the access to its env file (kms_env_file) first"}
		case p.HSM == "":
			p.HSM = m.HSMFingerprint
		case p.HSM != m.HSMFingerprint:
			return p, refusal{fmt.Sprintf("the members' HSM keys differ: %s has %s, %s has %s", members[0].Host, p.HSM, m.Host, m.HSMFingerprint),
				"Find out which key the cluster's data is sealed with first (`kmsctl status`)"}
		}
	}
	switch {
	case in.OperatorFP == "":
		return p, refusal{"the HSM key to install could not be read: " + in.OperatorErr, "Give it with MINIO_KMS_HSM_KEY, kms_hsm_key_file or kms_hsm_key_command"}
	case in.OperatorFP != p.HSM:
		return p, refusal{fmt.Sprintf("the HSM key kmsctl would install (%s) is not the cluster's (%s)", in.OperatorFP, p.HSM),
			"A node with another HSM key cannot join: give the cluster's key (MINIO_KMS_HSM_KEY, kms_hsm_key_file or kms_hsm_key_command)"}
	}
	if id, listed := via.View.lists(t.Endpoint); listed {
		p.ID = id
		if t.View != nil && t.View.ID == id {
			p.Done = fmt.Sprintf("%s is already a member (node %d, %s)", t.Host, id, t.Endpoint)
			return p, nil
		}
		return p, refusal{fmt.Sprintf("%s is a member (node %d) that does not answer as such", t.Host, id),
			"A member that is down is rebuilt by `kmsctl recover node " + t.Host + "`"}
	}
	switch {
	case t.View != nil && fresh(t.View):
		p.Phases = []string{"add", "wait", "prove"}
	case t.View != nil:
		return p, refusal{fmt.Sprintf("%s runs a Key Manager holding state: node %d of a cluster of %d (%s), commit %d", t.Host, t.View.ID, len(t.View.Members), memberList(t.View.Members), t.View.Commit),
			"Only a clean node joins a cluster: if it must, take it out of its own (`kmsctl scale remove`) or stop it and wipe its storage path first"}
	case !t.SSH:
		return p, unreachableTarget{t.Host, orUnknown(t.SSHError)}
	case isRunning(t.ServiceState):
		return p, refusal{fmt.Sprintf("%s is %s on %s although its API does not answer", t.Service, t.ServiceState, t.Host),
			"Find out why (journalctl -u " + t.Service + "); scale add provisions and starts only a stopped node"}
	case in.Storage[t.Host] != "":
		return p, refusal{fmt.Sprintf("the storage path (kms_storage_path) of %s is not empty (it holds %s): a node started on it would not start clean", t.Host, in.Storage[t.Host]),
			"scale add starts only a clean node: if that state is no longer needed (a former member's), empty the storage path first"}
	default:
		p.Provision = true
		p.Phases = []string{"start", "add", "wait", "prove"}
	}
	return p, nil
}

// planScaleRemove applies scale remove's rules: a pure function.
func planScaleRemove(in scaleInput) (scalePlan, error) {
	t := byHost(in.Nodes, in.Target)
	p := scalePlan{Op: "remove", Host: in.Target, ID: -1}
	if t == nil {
		return p, refusal{in.Target + " is not a node of the cluster's inventory group", "Name a host of the group (--cluster GROUP)"}
	}
	p.Endpoint = t.Endpoint
	by, id := listedBy(in.Nodes, t)
	p.ID = id
	if by == "" {
		// Not (or no longer) a member: what is left is the teardown, as
		// after a run cut short once the node was removed.
		switch {
		case !t.SSH:
			return p, unreachableTarget{t.Host, orUnknown(t.SSHError)}
		case t.View != nil && !fresh(t.View):
			return p, refusal{fmt.Sprintf("%s is no member of this cluster but runs a Key Manager holding state: node %d of a cluster of %d (%s), commit %d",
				t.Host, t.View.ID, len(t.View.Members), memberList(t.View.Members), t.View.Commit),
				"Check the inventory: scale remove tears down only a node of this cluster"}
		}
		p.Phases = []string{"teardown"}
		if t.View != nil || isRunning(t.ServiceState) {
			p.Phases = []string{"stop", "teardown"}
		}
		p.Done = fmt.Sprintf("%s is not a member of the cluster: only its service is stopped and its files removed", t.Host)
		return p, nil
	}
	if t.View == nil || t.View.ID != p.ID {
		return p, refusal{fmt.Sprintf("%s (node %d) does not answer as that member", t.Host, p.ID),
			"scale remove decommissions a healthy member; a dead one is rebuilt by `kmsctl recover node " + t.Host + "`"}
	}
	_, via, err := scaleVia(in)
	if err != nil {
		return p, err
	}
	p.Via = via.Host
	p.Members = memberHosts(in.Nodes, via.View, t.Host)
	if _, ok := via.View.lists(t.Endpoint); !ok {
		return p, refusal{fmt.Sprintf("the members disagree: %s lists %s, %s does not", by, t.Host, via.Host),
			"Wait until they agree (`kmsctl status`), then run scale remove again"}
	}
	p.Phases = []string{"remove", "confirm", "stop", "teardown", "wait"}
	return p, nil
}

// unreachableTarget is a target that did not answer SSH: the command exits
// 3 and changes nothing.
type unreachableTarget struct{ host, why string }

func (u unreachableTarget) Error() string {
	return fmt.Sprintf("%s did not answer SSH (%s); nothing was changed", u.host, u.why)
}

// scalePlanText is the plan as printed, step by step.
func scalePlanText(p scalePlan) string {
	var b strings.Builder
	if p.Via != "" {
		fmt.Fprintf(&b, "cluster members: %s; the change goes through %s", joinAnd(append([]string{}, p.Members...)), p.Via)
		if p.HSM != "" {
			fmt.Fprintf(&b, "; HSM key %s", p.HSM)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nplan: scale %s %s (%s)\n", p.Op, p.Host, p.Endpoint)
	step := 0
	line := func(phase, what string) {
		step++
		fmt.Fprintf(&b, "  %2d %-9s %s\n", step, phase, what)
	}
	if p.Provision {
		line("provision", "service user, directories, binary, certificates, config, env file (0600, the HSM key), unit; service stopped")
	}
	for _, ph := range p.Phases {
		switch ph {
		case "start":
			line(ph, "start the service on "+p.Host+" (clean)")
		case "add":
			line(ph, fmt.Sprintf("CLUSTER:ADDNODE %s through %s (writes blocked while it joins)", p.Endpoint, p.Via))
		case "wait":
			if p.Op == "add" {
				line(ph, p.Host+" listed by every member, caught up")
			} else {
				line(ph, "the remaining members agree and are ready for writes")
			}
		case "prove":
			line(ph, "a throw-away key written and read back through "+p.Host)
		case "remove":
			line(ph, fmt.Sprintf("CLUSTER:REMOVENODE node %d (%s) through %s", p.ID, p.Endpoint, p.Via))
		case "confirm":
			line(ph, "no remaining member lists it ("+joinAnd(p.Members)+")")
		case "stop":
			line(ph, "stop and disable the service on "+p.Host)
		case "teardown":
			line(ph, "remove what provision put on "+p.Host+", the env file with the HSM key first; verify no file of it holds the key")
		}
	}
	return b.String()
}
