package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/remote"
)

// The phases of recover node, in order: the tags of the recover-node
// playbook's tasks.
var recoverPhases = []string{"fence", "wipe", "remove", "push", "start", "add", "wait", "prove"}

// recoverFile is one of the node's files: where it goes on the host, its
// local source ("" = keep the host's), and whether the host has it.
type recoverFile struct {
	What   string `json:"what"`             // "binary", "config", ...
	Path   string `json:"path"`             // on the host
	Source string `json:"source,omitempty"` // local source, "" = none (the host's file is kept)
	// From is inventory.FromPeer when the file is copied from the
	// survivor the run goes through (kms_*_from), at the same path.
	From   string `json:"from,omitempty"`
	Exists bool   `json:"exists"` // on the host (known only when the host answered)
	// Template is the built-in template that writes the file when it has
	// no source and the host has none ("" = a missing file is refused).
	Template string `json:"template,omitempty"`
	// Err says why whether it exists could not be found out ("" = it
	// could).
	Err string `json:"error,omitempty"`
}

// recoverInput is everything preflight decides on, gathered by one
// read-only play: every node's state (as status sees it), the targets'
// layouts and files, and the fingerprint of the HSM key kmsctl would
// install.
type recoverInput struct {
	Nodes   []nodeState
	Targets []string
	Layout  map[string]inventory.KMSNode
	Files   map[string][]recoverFile // node → its files (when it answered SSH): the targets', and the survivors' a peer copy reads
	// OperatorFP is the fingerprint of the HSM key kmsctl installs; ""
	// when it could not be read (OperatorErr says why).
	OperatorFP, OperatorErr string
	// HostKeys are the nodes whose SSH host key was refused (changed,
	// unexpected, revoked): never taken for a host that is gone.
	HostKeys map[string]*remote.HostKeyError
	// Binaries is, per target, the version of the server binary kmsctl
	// would start there (its kms_binary_src run on this machine, or the
	// binary kept on the host run there; a binary copied from a peer is
	// the peer's).
	Binaries map[string]binaryVersion
	// Force (--force) lifts exactly one check: "service stopped or host
	// unreachable", for a node whose process is wedged (its service
	// active, its API silent) while the survivors see it down.
	Force bool
	// Leases are the leases of the cluster held on a node (by another
	// run, or a file that is not a lease); LeaseNotChecked the nodes
	// whose lease could not be read. The command refuses on the first
	// (exit 5) and names the second in the plan.
	Leases          []lease.NodeLease
	LeaseNotChecked []string
}

// binaryVersion is what `BINARY --version` said.
type binaryVersion struct {
	Version string // in the API's format; "" when unknown (Err says why)
	Where   string // which binary, where it ran ("kms_binary_src /x on this machine")
	Err     string
}

// recoverTarget is one dead node as the plan has it.
type recoverTarget struct {
	Host        string `json:"host"`
	Endpoint    string `json:"endpoint"`
	ID          int    `json:"id"`        // its ID in the survivors' definition; -1 = not listed (already removed)
	Reachable   bool   `json:"reachable"` // its host answers SSH: fenced, wiped and rebuilt; else only its ID is removed
	StoragePath string `json:"storage_path"`
	// Forced says why the target is recovered only under --force ("" =
	// it is dead without it).
	Forced string `json:"forced,omitempty"`
	// Stale says that the target answers as a former member whose ID the
	// survivors no longer list ("" = it does not answer).
	Stale string        `json:"stale,omitempty"`
	Files []recoverFile `json:"files,omitempty"`
	// BinaryVersion is the version of the binary it will run ("" =
	// unknown); VersionChange says how it differs from the survivors'
	// ("" = it is theirs): kmsctl then asks, and --yes needs
	// --allow-version-change.
	BinaryVersion string `json:"binary_version,omitempty"`
	VersionChange string `json:"version_change,omitempty"`
}

// recoverPlan is what recover node will do.
type recoverPlan struct {
	Survivors []string        `json:"survivors"` // inventory hosts whose Key Manager answers
	Via       string          `json:"via"`       // the survivor the edits and additions go through
	Targets   []recoverTarget `json:"targets"`
	HSM       string          `json:"hsm_fingerprint"` // the fingerprint every survivor and the installed key share
	Versions  []string        `json:"versions"`        // the versions the survivors run (their API's)
	// LeaseNotChecked are the nodes whose lease of the cluster could not
	// be read (no SSH): they do not block the run.
	LeaseNotChecked []string `json:"lease_not_checked,omitempty"`
}

// refusal is why preflight refuses: the command exits 4 and changes
// nothing.
type refusal struct{ why, todo string }

func (r refusal) Error() string { return r.why + ". " + r.todo }

// planRecovery applies the preflight rules to what was gathered: a pure
// function. It returns the plan, or the first rule broken.
func planRecovery(in recoverInput) (recoverPlan, error) {
	byHost := map[string]nodeState{}
	for _, n := range in.Nodes {
		byHost[n.Host] = n
	}
	var p recoverPlan
	// A host that answers with a key kmsctl does not trust is not a dead
	// host: a replaced machine, or someone in the middle. Nothing is
	// decided on it until the user names the key.
	for _, n := range in.Nodes {
		hk, ok := in.HostKeys[n.Host]
		if !ok {
			continue
		}
		todo := fmt.Sprintf("If %s was replaced (a new machine, same name), verify its new key out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) "+
			"and run again with --expect-host-key %s=%s, or pin it in the inventory (kms_ssh_host_keys); otherwise find out who answers at its address", n.Host, n.Host, hk.Fingerprint)
		if hk.Kind == remote.Revoked {
			todo = fmt.Sprintf("%s's key is revoked: give the host a new key, then run again with --expect-host-key %s=SHA256:... (the new key's fingerprint)", n.Host, n.Host)
		}
		why := fmt.Sprintf("the SSH host key of %s is refused: it offers %s (%s)", n.Host, hk.Fingerprint, hk.Kind)
		if hk.Kind == remote.Unexpected {
			why = fmt.Sprintf("the SSH host key of %s is not the one --expect-host-key names: it offers %s, not %s", n.Host, hk.Fingerprint, strings.Join(hk.Expected, " or "))
		}
		return p, refusal{why, todo}
	}
	survivors, err := p.pickSurvivors(in, "Single-node recovery needs at least one healthy node; check with `kmsctl status`, or restore the cluster from a backup")
	if err != nil {
		return p, err
	}
	for _, s := range survivors {
		if s.Version != "" && !slices.Contains(p.Versions, s.Version) {
			p.Versions = append(p.Versions, s.Version)
		}
	}
	slices.Sort(p.Versions)
	// HSM keys: the survivors agree, and the key to install is theirs.
	for _, s := range survivors {
		switch {
		case s.HSMFingerprint == "":
			return p, refusal{fmt.Sprintf("the HSM key of survivor %s could not be read (%s)", s.Host, s.HSMError),
				"kmsctl compares the survivors' HSM keys before installing one; fix the access to its env file (kms_env_file) first"}
		case p.HSM == "":
			p.HSM = s.HSMFingerprint
		case p.HSM != s.HSMFingerprint:
			return p, refusal{fmt.Sprintf("the survivors' HSM keys differ: %s has %s, %s has %s", survivors[0].Host, p.HSM, s.Host, s.HSMFingerprint),
				"Find out which key the cluster's data is sealed with before recovering anything (`kmsctl status`)"}
		}
	}
	if in.OperatorFP == "" {
		return p, refusal{"the HSM key to install could not be read: " + in.OperatorErr,
			"Give it with MINIO_KMS_HSM_KEY, kms_hsm_key_file or kms_hsm_key_command"}
	}
	if in.OperatorFP != p.HSM {
		return p, refusal{fmt.Sprintf("the HSM key kmsctl would install (%s) is not the survivors' (%s)", in.OperatorFP, p.HSM),
			"A node with another HSM key cannot serve the cluster's data: give the cluster's key (MINIO_KMS_HSM_KEY, kms_hsm_key_file or kms_hsm_key_command)"}
	}
	for _, h := range in.Targets {
		t, err := deadTarget(h, byHost, survivors, in)
		if err != nil {
			return p, err
		}
		if err := checkPeerFiles(t, p.Via, in); err != nil {
			return p, err
		}
		checkVersion(&t, p, byHost, in)
		p.Targets = append(p.Targets, t)
	}
	return p, nil
}

// checkPeerFiles checks that the survivor via holds, at the same path,
// every file t copies from a peer (kms_*_from), and for the config the
// same kms_certs_dir, which the config names.
func checkPeerFiles(t recoverTarget, via string, in recoverInput) error {
	if !t.Reachable {
		return nil
	}
	for _, f := range t.Files {
		if f.From == "" {
			continue
		}
		todo := "Copy it from a peer only between nodes of the same layout, or name a local file with " + fileSourceVar(f.What)
		i := slices.IndexFunc(in.Files[via], func(g recoverFile) bool { return g.What == f.What })
		if i < 0 {
			return refusal{fmt.Sprintf("the %s of %s comes from a peer (%s), but whether %s holds it was not checked", f.What, t.Host, fileFromVar(f.What), via), todo}
		}
		g := in.Files[via][i]
		switch {
		case g.Path != f.Path:
			return refusal{fmt.Sprintf("the %s of %s comes from a peer (%s), but the peer %s keeps it at %s, not %s", f.What, t.Host, fileFromVar(f.What), via, g.Path, f.Path), todo}
		case f.What == "config" && in.Layout[via].CertsDir != in.Layout[t.Host].CertsDir:
			return refusal{fmt.Sprintf("the config of %s comes from a peer (%s), but it names the peer's certificates under %s and %s's are under %s", t.Host, fileFromVar(f.What), in.Layout[via].CertsDir, t.Host, in.Layout[t.Host].CertsDir), todo}
		case g.Err != "":
			return refusal{fmt.Sprintf("whether the peer %s holds the %s %s could not be checked (%s)", via, f.What, g.Path, g.Err), todo}
		case !g.Exists:
			return refusal{fmt.Sprintf("the %s of %s comes from a peer (%s), but the peer %s has no %s", f.What, t.Host, fileFromVar(f.What), via, g.Path), todo}
		}
	}
	return nil
}

// checkVersion sets what version t's binary is and how it differs from
// the survivors': a binary copied from the peer runs the peer's version.
func checkVersion(t *recoverTarget, p recoverPlan, byHost map[string]nodeState, in recoverInput) {
	if !t.Reachable {
		return
	}
	survivors := "the survivors run " + strings.Join(p.Versions, " and ")
	if len(p.Versions) == 0 {
		survivors = "no survivor said which version it runs"
	}
	for _, f := range t.Files {
		if f.What == "binary" && f.From != "" {
			t.BinaryVersion = byHost[p.Via].Version
			if t.BinaryVersion == "" {
				t.VersionChange = fmt.Sprintf("the version of the binary copied from %s is unknown: %s does not say which it runs", p.Via, p.Via)
			}
			return
		}
	}
	bv, ok := in.Binaries[t.Host]
	switch {
	case !ok:
		t.VersionChange = "the version of the binary to install was not checked; " + survivors
	case bv.Version == "":
		t.VersionChange = fmt.Sprintf("the version of the binary to install (%s) is unknown: %s; %s", bv.Where, bv.Err, survivors)
	case !slices.Contains(p.Versions, bv.Version):
		t.BinaryVersion = bv.Version
		t.VersionChange = fmt.Sprintf("the binary to install (%s) is version %s; %s", bv.Where, bv.Version, survivors)
	default:
		t.BinaryVersion = bv.Version
	}
}

// fileFromVar is the inventory variable that copies a file from a peer.
func fileFromVar(what string) string {
	switch what {
	case "binary":
		return inventory.VarBinaryFrom
	case "config":
		return inventory.VarConfigFrom
	}
	return inventory.VarCAFrom
}

// deadTarget applies the proof-of-death rule and the layout rules to host.
func deadTarget(host string, byHost map[string]nodeState, survivors []nodeState, in recoverInput) (recoverTarget, error) {
	n, ok := byHost[host]
	if !ok {
		return recoverTarget{}, refusal{host + " is not a node of the cluster's inventory group", "Name a host of the group (--cluster GROUP)"}
	}
	t := recoverTarget{Host: host, Endpoint: n.Endpoint, ID: -1, Reachable: n.SSH, StoragePath: in.Layout[host].StoragePath, Files: in.Files[host]}
	var seenDown, seenUp []string
	for _, s := range survivors {
		id, listed := s.View.memberID(n.Endpoint)
		switch {
		case !listed:
			seenDown = append(seenDown, s.Host)
		case slices.Contains(s.View.Down, id):
			seenDown = append(seenDown, s.Host)
			t.ID = id
		default:
			seenUp = append(seenUp, s.Host)
			t.ID = id
		}
	}
	if len(seenUp) > 0 {
		return t, refusal{fmt.Sprintf("%s is not dead: node %d is up as seen by %s; recovering it would wipe a healthy member", host, t.ID, joinAnd(seenUp)),
			"Recover only a node the survivors see down: `kmsctl status` shows which"}
	}
	// A node that answers is dead only as a stale former member: no
	// survivor lists it any more (its ID was removed, by an earlier run
	// that found its host unreachable say) and it still counts a survivor
	// among its members. Fence stops it and wipe clears its old state.
	if n.View != nil {
		switch {
		case t.ID >= 0:
			return t, refusal{fmt.Sprintf("%s is not dead: its Key Manager answers as node %d", host, n.View.ID),
				"Stop its service first if it must be rebuilt"}
		case !slices.ContainsFunc(survivors, func(s nodeState) bool { _, ok := n.View.memberID(s.Endpoint); return ok }):
			return t, refusal{fmt.Sprintf("%s answers as node %d of another cluster: no survivor lists it, and it lists no survivor", host, n.View.ID),
				"Check the inventory: recover node wipes only a node of this cluster"}
		}
		t.Stale = fmt.Sprintf("%s answers as node %d of this cluster's old definition, but no survivor lists it any more", host, n.View.ID)
		return t, checkLayout(t, n)
	}
	// The one check --force lifts: the service stopped (or the host
	// unreachable). The survivors' view above is never lifted.
	switch {
	case n.SSH && n.ServiceState == "active" && in.Force:
		t.Forced = fmt.Sprintf("%s is active on %s although its API does not answer and %s see it down", n.Service, host, joinAnd(seenDown))
	case n.SSH && n.ServiceState == "active":
		return t, refusal{fmt.Sprintf("%s is not dead: %s is active on it although its API does not answer", host, n.Service),
			"Find out why (journalctl -u " + n.Service + "); if its process is wedged, stop the service, or let kmsctl fence it with --force"}
	case n.SSH && n.ServiceState == "" && in.Force:
		t.Forced = fmt.Sprintf("the state of %s on %s is unknown (%s) and %s see it down", n.Service, host, n.ServiceError, joinAnd(seenDown))
	case n.SSH && n.ServiceState == "":
		return t, refusal{fmt.Sprintf("the state of %s on %s is unknown (%s)", n.Service, host, n.ServiceError),
			"kmsctl fences a node before wiping it: it must be able to read and stop its service (--force tries to stop it anyway)"}
	}
	return t, checkLayout(t, n)
}

// checkLayout applies the storage-path and file rules to t.
func checkLayout(t recoverTarget, n nodeState) error {
	if t.StoragePath == "" {
		return refusal{"kms_storage_path is not set for " + t.Host + ": recover node wipes it",
			"Name the node's data directory in the inventory (kms_storage_path: /mnt/minio-kms)"}
	}
	if !n.SSH {
		return nil
	}
	for _, f := range t.Files {
		if f.Source == "" && f.From == "" && f.Err != "" {
			return refusal{fmt.Sprintf("whether the %s %s is on %s could not be checked (%s)", f.What, f.Path, t.Host, f.Err),
				"kmsctl keeps a file that has no source only when it is there: fix the access (become root), or name it with " + fileSourceVar(f.What)}
		}
		if f.Source == "" && f.From == "" && !f.Exists && f.Template == "" {
			return refusal{fmt.Sprintf("the %s %s is missing on %s and the inventory names no source for it", f.What, f.Path, t.Host),
				"Name it with " + fileSourceVar(f.What) + " in the inventory" + peerHint(f.What)}
		}
	}
	return nil
}

// peerHint says how to copy a file from a peer, for the files that may be.
func peerHint(what string) string {
	if what == "certificate" || what == "private key" {
		return " (the node's own; it is never copied from a peer)"
	}
	return ", or copy it from a healthy member with " + fileFromVar(what) + ": peer"
}

// fileSourceVar is the inventory variable naming a file's source.
func fileSourceVar(what string) string {
	switch what {
	case "binary":
		return inventory.VarBinarySrc
	case "config":
		return inventory.VarConfigSrc
	case "certificate":
		return inventory.VarTLSCertSrc
	case "private key":
		return inventory.VarTLSKeySrc
	}
	return inventory.VarCASrc
}

// memberID is the ID the view gives endpoint.
func (v *nodeView) memberID(endpoint string) (int, bool) {
	for _, m := range v.Members {
		if m.Endpoint == endpoint {
			return m.ID, true
		}
	}
	return 0, false
}

// configTemplate is the built-in template of the config (admin identity
// from the API key, TLS paths from the layout), written where the host has
// no config and the inventory names no source.
const configTemplate = "templates/minkms.config.j2"

// recoverFiles are the node's files recover node installs or keeps.
func recoverFiles(n inventory.KMSNode) []recoverFile {
	return []recoverFile{
		{What: "binary", Path: n.Binary, Source: n.BinarySrc, From: n.BinaryFrom},
		{What: "config", Path: n.ConfigFile, Source: n.ConfigSrc, From: n.ConfigFrom, Template: configTemplate},
		{What: "certificate", Path: n.CertsDir + "/public.crt", Source: n.TLSCertSrc},
		{What: "private key", Path: n.CertsDir + "/private.key", Source: n.TLSKeySrc},
		{What: "CA certificate", Path: n.CertsDir + "/ca.crt", Source: n.CASrc, From: n.CAFrom},
	}
}

// planText is the plan as printed: host by host, step by step, with when
// writes are blocked and when they come back.
func planText(p recoverPlan) string { return planTextDone(p, nil) }

// planTextDone is planText for kmsctl resume: the steps of the phases done
// (done reports them) say so.
func planTextDone(p recoverPlan, done func(host, phase string) bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "survivors: %s; edits and additions go through %s; HSM key %s\n", joinAnd(p.Survivors), p.Via, p.HSM)
	step := 0
	host := ""
	line := func(phase, what, writes string) {
		step++
		if done != nil && done(host, phase) {
			writes = "DONE (the journal records it; skipped)"
		}
		fmt.Fprintf(&b, "  %2d %-7s %-66s %s\n", step, phase, what, writes)
	}
	for _, t := range p.Targets {
		host = t.Host
		fmt.Fprintf(&b, "\nplan for %s (%s)\n", t.Host, nodeName(t))
		if t.Forced != "" {
			fmt.Fprintf(&b, "  --force: %s; fence stops it\n", t.Forced)
		}
		if t.Stale != "" {
			fmt.Fprintf(&b, "  %s: fence stops it, wipe clears its old state\n", t.Stale)
		}
		if t.Reachable {
			line("fence", "stop and disable the service on "+t.Host, "blocked (since the node went down)")
			line("wipe", "delete everything in "+t.StoragePath+" (only that)", "blocked")
		}
		if t.ID >= 0 {
			line("remove", fmt.Sprintf("CLUSTER:EDIT on %s: remove node %d; every survivor confirms", p.Via, t.ID), "back after this step, once no dead ID is left")
		} else {
			line("remove", "nothing: no survivor lists "+t.Endpoint, "-")
		}
	}
	for _, t := range p.Targets {
		host = t.Host
		if !t.Reachable {
			fmt.Fprintf(&b, "\n%s does not answer SSH: only its ID is removed; kmsctl then stops (exit 3)\n", t.Host)
			continue
		}
		fmt.Fprintf(&b, "\nrebuild %s\n", t.Host)
		var push, keep []string
		for _, f := range t.Files {
			switch {
			case f.Source != "":
				push = append(push, fmt.Sprintf("%s from %s", f.What, f.Source))
			case f.From != "":
				push = append(push, fmt.Sprintf("%s copied from %s (%s, sha256-verified)", f.What, p.Via, f.Path))
			case !f.Exists && f.Template != "":
				push = append(push, fmt.Sprintf("%s rendered from the built-in %s (%s has none)", f.What, f.Template, t.Host))
			default:
				keep = append(keep, fmt.Sprintf("%s %s", f.What, f.Path))
			}
		}
		line("push", "env file (0600, the HSM key) and unit from the built-in templates", "available")
		if t.VersionChange != "" {
			fmt.Fprintf(&b, "            VERSION CHANGE: %s\n", t.VersionChange)
		} else if t.BinaryVersion != "" {
			fmt.Fprintf(&b, "            binary version %s, the survivors'\n", t.BinaryVersion)
		}
		if len(push) > 0 {
			fmt.Fprintf(&b, "            installs: %s\n", strings.Join(push, "; "))
		}
		if len(keep) > 0 {
			fmt.Fprintf(&b, "            keeps what %s already has (no kms_*_src or kms_*_from names a replacement): %s\n", t.Host, strings.Join(keep, "; "))
		}
		line("start", "start the service on "+t.Host+" (clean)", "available")
		line("add", fmt.Sprintf("CLUSTER:ADDNODE %s through %s", t.Endpoint, p.Via), "blocked while it joins")
		line("wait", t.Host+" listed by every member, caught up", "available")
		line("prove", "a throw-away key written and read back through "+t.Host, "available")
	}
	return b.String()
}

func nodeName(t recoverTarget) string {
	if t.ID < 0 {
		return t.Endpoint + ", not listed"
	}
	return fmt.Sprintf("node %d, %s", t.ID, t.Endpoint)
}

// pickSurvivors sets p's survivors, the nodes of in that are not targets
// and give their cluster status, and the one the edits go through: a
// survivor that is ready for writes when one is, else (the others dead
// too) the first that answers. It returns them; none is a refusal, todo
// saying what to do.
func (p *recoverPlan) pickSurvivors(in recoverInput, todo string) ([]nodeState, error) {
	var survivors []nodeState
	for _, n := range in.Nodes {
		if !slices.Contains(in.Targets, n.Host) && n.View != nil {
			survivors = append(survivors, n)
			p.Survivors = append(p.Survivors, n.Host)
		}
	}
	if len(survivors) == 0 {
		return nil, refusal{"no survivor answers: no node outside " + strings.Join(in.Targets, ", ") + " gives its cluster status", todo}
	}
	p.Via = survivors[0].Host
	for _, s := range survivors {
		if s.ReadyWrite {
			p.Via = s.Host
			break
		}
	}
	return survivors, nil
}
