package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kmsmodules"
)

// The phases of recover cluster, in order: the tags of the recover-cluster
// playbook's tasks.
var clusterPhases = []string{"fence", "wipe", "push", "start", "restore", "verify", "add", "wait", "prove"}

// clusterBackup is the backup recover cluster restores, as found on this
// machine before any host is asked.
type clusterBackup struct {
	// Snapshot is the snapshot's path (absolute).
	Snapshot string
	// Info is what its manifest says (Info.Manifest "" = it has none).
	Info kmsmodules.BackupInfo
	// Err is why it could not be checked (nil = it checked out, or has no
	// manifest when NoManifest).
	Err error
	// NoManifest: the snapshot has no manifest of kmsctl's and the user
	// said to restore it anyway (--no-manifest).
	NoManifest bool
	// OperatorFP is the fingerprint of the HSM key kmsctl installs; ""
	// when it could not be read (OperatorErr says why).
	OperatorFP, OperatorErr string
}

// checkClusterBackup applies the backup rules: a pure function, run
// before any host is asked. A snapshot without a manifest is taken only
// with --no-manifest; one that is not its manifest's, or whose HSM-key
// fingerprint is not that of the key kmsctl would install, is refused.
func checkClusterBackup(b clusterBackup) error {
	switch {
	case errors.Is(b.Err, kmsmodules.ErrNoManifest) && !b.NoManifest:
		return refusal{fmt.Sprintf("the backup %s has no manifest of kmsctl's beside it (%s): nothing says what it holds or which HSM key it needs", b.Snapshot, b.Snapshot+kmsmodules.ManifestSuffix),
			"Restore a backup taken by kmsctl backup, or pass --no-manifest to restore this one anyway; it is then verified only by what the restored node reports"}
	case errors.Is(b.Err, kmsmodules.ErrSnapshotMismatch):
		return refusal{"the backup does not check out: " + b.Err.Error(), "Restore another backup (kmsctl recover cluster --backup FILE); without --backup the newest good one of the cluster's backup directory is taken"}
	case b.Err != nil && !errors.Is(b.Err, kmsmodules.ErrNoManifest):
		return refusal{"the backup cannot be checked: " + b.Err.Error(), "Restore a backup whose manifest reads (kmsctl recover cluster --backup FILE)"}
	case b.OperatorFP == "":
		return refusal{"the HSM key to install could not be read: " + b.OperatorErr, "Give it with MINIO_KMS_HSM_KEY, kms_hsm_key_file or kms_hsm_key_command"}
	case b.Info.Manifest != "" && b.OperatorFP != b.Info.HSMFingerprint:
		return refusal{fmt.Sprintf("the HSM key kmsctl would install (%s) is not the one the backup was taken under (%s, in %s)", b.OperatorFP, b.Info.HSMFingerprint, b.Info.Manifest),
			"A backup is usable only with its own HSM key: give that key (MINIO_KMS_HSM_KEY, kms_hsm_key_file or kms_hsm_key_command)"}
	}
	return nil
}

// clusterInput is what recover cluster's preflight decides on, gathered
// by one read-only play: every node's state (as status sees it), layouts
// and files, with the seed and the nodes to discard the user named.
type clusterInput struct {
	Group   string
	Nodes   []nodeState // in the inventory's order
	Layout  map[string]inventory.KMSNode
	Files   map[string][]recoverFile // host → its files (when it answered SSH)
	Seed    string                   // --seed; "" = the group's first node
	Discard []string                 // --discard
	Backup  clusterBackup
}

// clusterNode is one node as recover cluster's plan has it.
type clusterNode struct {
	Host        string `json:"host"`
	Endpoint    string `json:"endpoint"`
	StoragePath string `json:"storage_path"`
	// Discard says what the node still serves that its wipe discards ("" =
	// it does not serve).
	Discard string        `json:"discard,omitempty"`
	Files   []recoverFile `json:"files,omitempty"`
}

// clusterPlan is what recover cluster will do: every node fenced and
// wiped, the seed (Nodes[0]) restored and verified, the others added one
// at a time in order.
type clusterPlan struct {
	Cluster  string        `json:"cluster"`
	Backup   string        `json:"backup"`
	Manifest string        `json:"manifest"` // "" = restored without one
	Seed     string        `json:"seed"`
	Nodes    []clusterNode `json:"nodes"`
	HSM      string        `json:"hsm_fingerprint"` // of the key installed
	// Info is what the manifest says (nil without one).
	Info     *kmsmodules.BackupInfo `json:"backup_info,omitempty"`
	Warnings []string               `json:"warnings,omitempty"`
}

// planClusterRecovery applies the preflight rules to what was gathered: a
// pure function. It returns the plan, or the first rule broken: a host
// that does not answer SSH (exit 3), a node that still serves and is not
// named with --discard, a service that is active (or whose state cannot be
// read) while its API is silent, no storage path, a missing file with no
// source (exit 4).
func planClusterRecovery(in clusterInput) (clusterPlan, error) {
	p := clusterPlan{Cluster: in.Group, Backup: in.Backup.Snapshot, Manifest: in.Backup.Info.Manifest, HSM: in.Backup.OperatorFP}
	if err := checkClusterBackup(in.Backup); err != nil {
		return p, err
	}
	if p.Manifest != "" {
		info := in.Backup.Info
		p.Info = &info
	} else {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s has no manifest: nothing could be checked before the restore (checksum, HSM key, what it holds); "+
			"the restored node is judged only by what it reports", in.Backup.Snapshot))
	}
	if len(in.Nodes) == 0 {
		return p, refusal{"the group " + in.Group + " has no node", "Name the cluster's inventory group with --cluster GROUP"}
	}
	p.Seed = in.Seed
	if p.Seed == "" {
		p.Seed = in.Nodes[0].Host
	}
	i := slices.IndexFunc(in.Nodes, func(n nodeState) bool { return n.Host == p.Seed })
	if i < 0 {
		return p, refusal{p.Seed + " is not a node of group " + in.Group, "Name a host of the group with --seed"}
	}
	// The seed first, the others in the inventory's order.
	ordered := append([]nodeState{in.Nodes[i]}, slices.Delete(slices.Clone(in.Nodes), i, i+1)...)
	for _, n := range ordered {
		cn, err := clusterTarget(n, in)
		if err != nil {
			return p, err
		}
		p.Nodes = append(p.Nodes, cn)
	}
	return p, nil
}

// clusterTarget applies the rules of one node: it answers SSH, does not
// serve (or is discarded), its service can be fenced, its layout is
// complete.
func clusterTarget(n nodeState, in clusterInput) (clusterNode, error) {
	l := in.Layout[n.Host]
	cn := clusterNode{Host: n.Host, Endpoint: n.Endpoint, StoragePath: l.StoragePath, Files: in.Files[n.Host]}
	discard := slices.Contains(in.Discard, n.Host)
	if !n.SSH {
		return cn, exitRefusal{refusal{fmt.Sprintf("%s does not answer SSH (%s): recover cluster wipes and rebuilds every node of the group", n.Host, n.SSHError),
			"Bring it back (or a replacement at the same address), or take it out of the inventory group, then run recover cluster again"}, 3}
	}
	serves := ""
	switch {
	case n.View != nil:
		serves = fmt.Sprintf("its Key Manager answers as node %d of a cluster of %d node(s), commit %d", n.View.ID, len(n.View.Members), n.View.Commit)
	case n.Live || n.APIKeyRefused:
		serves = "its Key Manager answers"
	case n.ServiceState == "active" || n.ServiceState == "activating" || n.ServiceState == "reloading":
		serves = fmt.Sprintf("%s is %s on it although its API does not answer", n.Service, n.ServiceState)
	case n.ServiceState == "":
		serves = fmt.Sprintf("the state of %s on it is unknown (%s)", n.Service, n.ServiceError)
	}
	if serves != "" && !discard {
		return cn, refusal{fmt.Sprintf("%s still serves: %s. This is not a total loss, and recover cluster wipes every node", n.Host, serves),
			"If other nodes survive, rebuild the dead ones from them with `kmsctl recover node HOST...` (`kmsctl status` shows which); " +
				"to wipe " + n.Host + " anyway and restore the backup over it, name it with --discard " + n.Host}
	}
	cn.Discard = serves
	if cn.StoragePath == "" {
		return cn, refusal{"kms_storage_path is not set for " + n.Host + ": recover cluster wipes it",
			"Name the node's data directory in the inventory (kms_storage_path: /mnt/minio-kms)"}
	}
	for _, f := range cn.Files {
		if f.Source == "" && f.Err != "" {
			return cn, refusal{fmt.Sprintf("whether the %s %s is on %s could not be checked (%s)", f.What, f.Path, n.Host, f.Err),
				"kmsctl keeps a file that has no source only when it is there: fix the access (become root), or name it with " + fileSourceVar(f.What)}
		}
		if f.Source == "" && f.From != "" && !f.Exists && f.Template == "" {
			return cn, refusal{fmt.Sprintf("the %s %s is missing on %s, and the inventory copies it from a peer (%s: peer), which a total loss does not leave", f.What, f.Path, n.Host, fileFromVar(f.What)),
				"Name a local source with " + fileSourceVar(f.What) + " in the inventory"}
		}
		if f.Source == "" && !f.Exists && f.Template == "" {
			return cn, refusal{fmt.Sprintf("the %s %s is missing on %s and the inventory names no source for it", f.What, f.Path, n.Host),
				"Name it with " + fileSourceVar(f.What) + " in the inventory"}
		}
	}
	return cn, nil
}

// exitRefusal is a refusal that exits with another code than 4 (a host
// that does not answer: 3); nothing was changed either.
type exitRefusal struct {
	refusal
	code int
}

// clusterPlanText is the plan as printed: the backup, then step by step
// with the node each step acts on.
func clusterPlanText(p clusterPlan) string {
	var b strings.Builder
	if p.Info != nil {
		i := p.Info
		fmt.Fprintf(&b, "backup: %s, taken %s from %s (%s)\n  checked: sha256 as in its manifest; HSM key %s as in its manifest\n"+
			"  holds %d enclave(s), %d key(s), %d policies, %d identities%s\n",
			p.Backup, i.Created.UTC().Format("2006-01-02 15:04:05 UTC"), i.Endpoint, i.Version, p.HSM, i.Enclaves, i.Keys, i.Policies, i.Identities,
			map[bool]string{true: "; a canary to decrypt", false: "; no canary"}[i.Canary])
	} else {
		fmt.Fprintf(&b, "backup: %s, WITHOUT a manifest (--no-manifest): nothing checked before the restore\n  HSM key to install %s\n", p.Backup, p.HSM)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "  WARNING: %s\n", w)
	}
	var hosts []string
	for _, n := range p.Nodes {
		hosts = append(hosts, n.Host)
	}
	fmt.Fprintf(&b, "\nplan for cluster %s (%s; seed %s)\n", p.Cluster, joinAnd(hosts), p.Seed)
	for _, n := range p.Nodes {
		if n.Discard != "" {
			fmt.Fprintf(&b, "  --discard %s: %s; its state is wiped\n", n.Host, n.Discard)
		}
	}
	step := 0
	line := func(phase, what string) {
		step++
		fmt.Fprintf(&b, "  %2d %-7s %s\n", step, phase, what)
	}
	line("fence", "stop and disable the service on "+joinAnd(hosts))
	for _, n := range p.Nodes {
		line("wipe", "delete "+n.StoragePath+" on "+n.Host+" (only that)")
	}
	for i, n := range p.Nodes {
		var push, render []string
		for _, f := range n.Files {
			switch {
			case f.Source != "":
				push = append(push, f.What)
			case !f.Exists && f.Template != "":
				render = append(render, fmt.Sprintf("%s rendered from the built-in %s (%s has none)", f.What, f.Template, n.Host))
			}
		}
		what := "env file (0600, the HSM key) and unit"
		if len(push) > 0 {
			what += "; " + strings.Join(push, ", ") + " from the inventory's sources"
		}
		if len(render) > 0 {
			what += "; " + strings.Join(render, "; ")
		}
		line("push", n.Host+": "+what)
		line("start", "start the service on "+n.Host+" (clean)")
		if i == 0 {
			if p.Manifest != "" {
				line("restore", "PUT the snapshot onto "+n.Host+" (refused unless it is clean and runs the backup's HSM key)")
				line("verify", n.Host+" holds exactly what the manifest lists; the canary decrypts")
			} else {
				line("restore", "PUT the snapshot onto "+n.Host+" (refused unless it is clean); what it then holds is reported")
			}
			continue
		}
		line("add", fmt.Sprintf("CLUSTER:ADDNODE %s through %s", n.Endpoint, p.Seed))
		line("wait", n.Host+" listed by every member, caught up")
	}
	if p.Manifest != "" {
		line("prove", "every node holds what the manifest lists and decrypts the canary; a key written and read back through each")
	} else {
		line("prove", "a key written and read back through each node")
	}
	return b.String()
}
