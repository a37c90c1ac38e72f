package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/journal"
)

// resumeRecoverCluster is recover cluster's resume hook: the inventory
// must still name the run's nodes with the same endpoints and storage
// paths, the backup must still check out with the same HSM key, the same
// read-only preflight runs again and planClusterResume checks what the
// phases not done need; then the plan is shown (the phases done listed),
// confirmed, and run under the same ID.
func resumeRecoverCluster(ctx context.Context, e env, o options, run *journal.Run, f resumeFlags) error {
	yes := f.yes
	var rec clusterRecord
	if err := json.Unmarshal(run.Plan.Data, &rec); err != nil {
		return fmt.Errorf("resume: read run %s's plan: %w", run.ID, err)
	}
	if o.Limit != "" {
		return exit.Usagef("resume: --limit is not taken: the preflight asks every node of the cluster")
	}
	if !o.InventoryExplicit && len(run.Plan.Inventories) > 0 {
		o.Inventories, o.InventoryExplicit = slices.Clone(run.Plan.Inventories), true
	}
	group := rec.Options.Group
	inv, hosts, nodes, err := loadCluster(e, o, group)
	if err != nil {
		return err
	}
	asJSON := o.Output == "json"
	refuse := func(err error) error {
		var ref refusal
		code := exit.Refused
		var er exitRefusal
		switch {
		case errors.As(err, &er):
			ref, code = er.refusal, er.code
		case !errors.As(err, &ref):
			return err
		}
		if asJSON {
			jsonLine(e.stdout, "recover_refused").Str("run", run.ID).Str("why", ref.why).Str("todo", ref.todo).Send()
		} else {
			fmt.Fprintf(e.stdout, "resume %s\n  REFUSED  %s.\n  %s.\nnothing was changed\n", run.ID, ref.why, ref.todo)
		}
		return exit.With(code, fmt.Errorf("resume %s: refused: %w", run.ID, ref))
	}
	if err := clusterInventoryChanged(rec.Plan, nodes); err != nil {
		return refuse(err)
	}
	if err := lockFreeFor(e, o, nodes, run.ID); err != nil {
		return err
	}
	co := rec.Options
	co.Backup = rec.Plan.Backup
	b, err := findClusterBackup(ctx, e, o, co, nodes)
	if err != nil {
		return err
	}
	if err := checkClusterBackup(b); err != nil {
		return refuse(err)
	}
	if b.OperatorFP != rec.Plan.HSM {
		return refuse(refusal{fmt.Sprintf("the HSM key kmsctl would install (%s) is not the one run %s installed (%s)", b.OperatorFP, run.ID, rec.Plan.HSM),
			"Give the key the run began with (MINIO_KMS_HSM_KEY, kms_hsm_key_file or kms_hsm_key_command)"})
	}
	in, err := clusterPreflight(ctx, e, o, group, inv, hosts, nodes)
	if err != nil {
		return err
	}
	in.Seed, in.Discard, in.Backup = rec.Plan.Seed, rec.Options.Discard, b
	plan, err := planClusterResume(in, run.IsDone)
	if err != nil {
		return refuse(err)
	}
	rec.Plan = plan
	if ok, err := confirmResume(e, o, run, plan, clusterPlanText(plan), resumeAsk{yes: yes}); !ok {
		return err
	}
	o.Resume = run.ID
	return recoverClusterRun(ctx, e, o, inv, hosts, rec, run)
}

// clusterInventoryChanged refuses a resume when the group no longer holds
// exactly the run's nodes with the same kms_endpoint and kms_storage_path
// (what is added and what is wiped).
func clusterInventoryChanged(p clusterPlan, nodes []inventory.KMSNode) error {
	if len(nodes) != len(p.Nodes) {
		return refusal{fmt.Sprintf("the group %s has %d node(s) now, the run began with %d", p.Cluster, len(nodes), len(p.Nodes)),
			"Put the inventory back as the run began (see `kmsctl runs show`), or start a new `kmsctl recover cluster`"}
	}
	for _, pn := range p.Nodes {
		i := slices.IndexFunc(nodes, func(n inventory.KMSNode) bool { return n.Host == pn.Host })
		switch {
		case i < 0:
			return refusal{pn.Host + " is no longer a host of group " + p.Cluster, "Put the inventory back as the run began, or start a new `kmsctl recover cluster`"}
		case nodes[i].Endpoint != pn.Endpoint || nodes[i].StoragePath != pn.StoragePath:
			return refusal{fmt.Sprintf("%s's kms_endpoint or kms_storage_path changed since the run began (%s, %s; now %s, %s)",
				pn.Host, pn.Endpoint, pn.StoragePath, nodes[i].Endpoint, nodes[i].StoragePath),
				"Put the inventory back as the run began, or start a new `kmsctl recover cluster`"}
		}
	}
	return nil
}

// planClusterResume applies to what the preflight gathered the rules of
// the phases not done (done reports those the journal records): a pure
// function. Before the wipe is done, every rule of planClusterRecovery
// holds. Once it is, a node whose start is done serves by design (the
// restored seed, a node added); one whose start is still to come must not
// serve, being wiped and stopped; files are checked only where the push
// is still to come. Every node must answer SSH (the prove runs on each).
func planClusterResume(in clusterInput, done func(phase string) bool) (clusterPlan, error) {
	if !done("every node wipe") {
		return planClusterRecovery(in)
	}
	relaxed := in
	relaxed.Nodes = slices.Clone(in.Nodes)
	relaxed.Files = map[string][]recoverFile{}
	for i, n := range relaxed.Nodes {
		if !done(n.Host + " push") {
			relaxed.Files[n.Host] = in.Files[n.Host]
		}
		if done(n.Host+" start") && n.SSH {
			// It serves by design: judged as a node that does not.
			relaxed.Nodes[i].View, relaxed.Nodes[i].Live, relaxed.Nodes[i].APIKeyRefused = nil, false, false
			relaxed.Nodes[i].ServiceState, relaxed.Nodes[i].ServiceError = "inactive", ""
		}
	}
	relaxed.Discard = nil // wiped already: a node that serves now and was not started by the run is someone else's
	return planClusterRecovery(relaxed)
}
