package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/lock"
	"github.com/kmsctl/kmsctl/tasks"
)

// fleetCluster is one cluster of a fleet: an inventory group named by its
// hosts' kms_cluster, with its hosts and nodes.
type fleetCluster struct {
	Group string
	hosts []tasks.Host
	nodes []inventory.KMSNode
}

// fleet is every cluster of an inventory, and the hosts in none.
type fleet struct {
	Clusters []fleetCluster
	// Unclustered are the hosts whose kms_cluster names no inventory
	// group: they belong to no cluster of the fleet.
	Unclustered []string
	named       []string // every kms_cluster the hosts name, sorted
}

// fleetClusters is inventoryClusters for status --all: an inventory in
// which no group is named by a kms_cluster is a usage error.
func fleetClusters(inv *inventory.Inventory, o options) (fleet, error) {
	f, err := inventoryClusters(inv, o)
	if err == nil && len(f.Clusters) == 0 {
		return fleet{}, exit.Usagef("--all: no inventory group is named by a host's kms_cluster (%s), so the inventory has no cluster; "+
			"give each cluster's group `kms_cluster: GROUP` in its vars", strings.Join(f.named, ", "))
	}
	return f, err
}

// inventoryClusters finds the clusters of inv: each inventory group that
// some host's kms_cluster names, with the group's hosts (as --cluster
// GROUP takes them). A host in two such groups is a usage error.
func inventoryClusters(inv *inventory.Inventory, o options) (fleet, error) {
	named := map[string][]string{} // kms_cluster → hosts that name it
	var errs []error
	for _, h := range inv.Hosts() {
		n, err := inv.Node(h, o.ExtraVars)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve host %s: %w", h, err))
			continue
		}
		named[n.Cluster] = append(named[n.Cluster], h)
	}
	if err := errors.Join(errs...); err != nil {
		return fleet{}, exit.With(exit.Usage, err)
	}
	var f fleet
	groups := inv.Groups()
	inCluster := map[string]string{} // host → its cluster group
	for _, g := range groups {
		if _, ok := named[g]; !ok {
			continue
		}
		hosts, nodes, err := statusHosts(inv, o, g)
		if err != nil {
			return fleet{}, err
		}
		for _, h := range hosts {
			if other, ok := inCluster[h.Name]; ok {
				return fleet{}, exit.Usagef("host %s is in two clusters, groups %s and %s (each group named by a kms_cluster is a cluster): a node belongs to one cluster", h.Name, other, g)
			}
			inCluster[h.Name] = g
		}
		f.Clusters = append(f.Clusters, fleetCluster{Group: g, hosts: hosts, nodes: nodes})
	}
	for _, h := range inv.Hosts() {
		if _, ok := inCluster[h]; !ok {
			f.Unclustered = append(f.Unclustered, h)
		}
	}
	f.named = slices.Sorted(maps.Keys(named))
	return f, nil
}

// fleetReport is one cluster's part of the fleet's status.
type fleetReport struct {
	Cluster        string       `json:"cluster"`
	Verdict        string       `json:"verdict"`
	Reasons        []reason     `json:"reasons"`
	Nodes          []nodeState  `json:"nodes"`
	HSMFingerprint string       `json:"hsm_fingerprint"`
	Locks          []lock.State `json:"locks"`
	// Leases are the cluster's leases held on its nodes (a run going on,
	// maybe from another bastion, or a file there that is not a lease),
	// as status shows them.
	Leases []lease.NodeLease `json:"leases"`
	Next   string            `json:"next,omitempty"`
	// setupErr is why the cluster was not judged: this machine's admin
	// API key or kms_ca_file is not the cluster's (localSetupError).
	setupErr error
}

// statusFleet is `kmsctl status --all`: status's play on every node of
// every cluster at once, each cluster judged as status judges one, shown
// in one table (one row per cluster, then the reasons and the next
// command of each that is not healthy) or one fleet event. It returns nil
// when every cluster is healthy, exit 1 when a cluster refused the admin
// API key or its kms_ca_file does not sign the nodes' certificates, exit 3
// when no node of any cluster answered, else exit 7 when
// one is degraded or unreachable.
func statusFleet(ctx context.Context, e env, o options) error {
	if o.Limit != "" {
		return exit.Usagef("status --all: --limit is not supported (the fleet is every node of every cluster; name one cluster with --cluster GROUP)")
	}
	inv, err := loadInventory(o, false)
	if err != nil {
		return err
	}
	f, err := fleetClusters(inv, o)
	if err != nil {
		return err
	}
	var hosts []tasks.Host
	var nodes []inventory.KMSNode
	for _, c := range f.Clusters {
		hosts = append(hosts, c.hosts...)
		nodes = append(nodes, c.nodes...)
	}
	if err := checkAPIKeys(e, o, nodes); err != nil {
		return err
	}
	g := newGathered()
	reg, err := g.registry(newRegistry(e, o))
	if err != nil {
		return err
	}
	r, err := newReadRunner(e, o, "status --all", inv, reg, g, len(hosts))
	if err != nil {
		return err
	}
	r.s.rerun = "status only reads: run it again"
	// The play reads each node's lease too, as status does: who holds
	// each cluster.
	play := statusPlay(hosts)
	play.Tasks = append(play.Tasks, leaseTask())
	return r.runWith(ctx, []tasks.Play{play}, func(ctx context.Context, recap tasks.Recap, err error) error {
		if err != nil && ctx.Err() != nil {
			return exitError(ctx, recap, err)
		}
		now := time.Now()
		var reports []fleetReport
		for _, fc := range f.Clusters {
			rep, err := judgeCluster(e, g, fc, now)
			if err != nil {
				return err
			}
			reports = append(reports, rep)
		}
		if err := printFleet(e, o, f, reports); err != nil {
			return err
		}
		return fleetExit(reports)
	})
}

// judgeCluster judges one cluster of the fleet from what was gathered, as
// status does.
func judgeCluster(e env, g *gathered, fc fleetCluster, now time.Time) (fleetReport, error) {
	c := cluster{Group: fc.Group, Nodes: g.states(fc.nodes), Now: now}
	for i := range c.Nodes {
		if n := &c.Nodes[i]; n.CertNotAfter != nil {
			d := certDays(*n.CertNotAfter, c.Now)
			n.CertDays = &d
		}
	}
	rep := fleetReport{Cluster: fc.Group, Nodes: c.Nodes, Reasons: []reason{}}
	locks, err := heldLocks(e.stateDir, fc.nodes)
	if err != nil {
		return rep, err
	}
	rep.Locks = locks
	rep.Leases = g.heldLeases(fc.nodes, now)
	if kerr := keyRefused(c.Nodes); kerr != nil {
		rep.Verdict, rep.setupErr = "key_refused", kerr
		rep.Reasons = []reason{{Kind: "key_refused", Nodes: []string{}, Text: kerr.Error()}}
		return rep, nil
	}
	if cerr := caUnknown(c.Nodes); cerr != nil {
		rep.Verdict, rep.setupErr = "ca_unknown", cerr
		rep.Reasons = []reason{{Kind: "ca_unknown", Nodes: []string{}, Text: cerr.Error()}}
		return rep, nil
	}
	reasons := verdict(c)
	rep.Verdict = "healthy"
	switch {
	case len(reasons) > 0 && reasons[0].Kind == reasonNoAnswer:
		rep.Verdict = "unreachable"
	case len(reasons) > 0:
		rep.Verdict = "degraded"
	}
	if reasons != nil {
		rep.Reasons = reasons
	}
	rep.HSMFingerprint = commonFingerprint(c.Nodes)
	rep.Next = nextCommand(c, reasons)
	return rep, nil
}

// fleetExit is the fleet's exit code: 1 when a cluster refused the admin
// API key or its kms_ca_file does not sign the nodes' certificates (it
// could not be judged), 3 when no node of any cluster
// answered, 7 when a cluster is degraded or unreachable, else 0.
func fleetExit(reports []fleetReport) error {
	var refused []error
	unhealthy, answered := false, false
	for _, r := range reports {
		if r.setupErr != nil {
			refused = append(refused, fmt.Errorf("cluster %s: %w", r.Cluster, r.setupErr))
		}
		unhealthy = unhealthy || r.Verdict != "healthy"
		answered = answered || r.Verdict != "unreachable"
	}
	switch {
	case len(refused) > 0:
		return exit.With(exit.Usage, errors.Join(refused...))
	case !answered:
		return exit.Silent{Code: exit.Unreachable}
	case unhealthy:
		return exit.Silent{Code: exit.VerifyFailed}
	}
	return nil
}

// printFleet writes the fleet's table, or with --output json one fleet
// event: the clusters (each as status's event has it, and the next
// command), the hosts in no cluster, and the fleet's verdict (the worst).
func printFleet(e env, o options, f fleet, reports []fleetReport) error {
	unclustered := f.Unclustered
	if unclustered == nil {
		unclustered = []string{}
	}
	counts := map[string]int{}
	for _, r := range reports {
		counts[r.Verdict]++
	}
	word := "healthy"
	if len(reports) > counts["healthy"] {
		word = "degraded"
	}
	if o.Output == "json" {
		jsonLine(e.stdout, "fleet").Strs("inventory", o.Inventories).Str("verdict", word).
			Interface("counts", counts).Interface("clusters", reports).Strs("unclustered", unclustered).Send()
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fleet of %d clusters (inventory %s): %d healthy", len(reports), strings.Join(o.Inventories, ", "), counts["healthy"])
	for _, v := range []string{"degraded", "unreachable", "key_refused", "ca_unknown"} {
		if counts[v] > 0 {
			fmt.Fprintf(&b, ", %d %s", counts[v], strings.ReplaceAll(v, "_", " "))
		}
	}
	b.WriteString("\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tVERDICT\tNODES\tUP\tLEADER\tCOMMIT\tVERSION\tHSM KEY\tCERT\tLOCKED\tLEASED")
	for _, r := range reports {
		fmt.Fprintln(tw, strings.Join(fleetRow(r), "\t"))
	}
	tw.Flush()
	for _, r := range reports {
		if r.Verdict == "healthy" {
			continue
		}
		fmt.Fprintf(&b, "\n%s %s: %s.\n", strings.ToUpper(strings.ReplaceAll(r.Verdict, "_", " ")), r.Cluster, strings.TrimSuffix(r.Reasons[0].Text, "."))
		for _, x := range r.Reasons[1:] {
			fmt.Fprintf(&b, "  also: %s.\n", x.Text)
		}
		if r.Next != "" {
			fmt.Fprintf(&b, "  Next: %s\n", r.Next)
		}
	}
	for _, r := range reports {
		for _, st := range r.Locks {
			fmt.Fprintln(&b, lockedLine(st))
		}
		for _, nl := range r.Leases {
			fmt.Fprintln(&b, leasedLine(nl))
		}
	}
	if len(f.Unclustered) > 0 {
		fmt.Fprintf(&b, "\nIn no cluster (their kms_cluster names no inventory group): %s\n", strings.Join(f.Unclustered, ", "))
	}
	_, err := io.WriteString(e.stdout, b.String())
	return err
}

// fleetRow is one cluster's row: its verdict, nodes, how many answer
// ready, the leader and commit (as the first node with a view sees them),
// versions, the common HSM-key fingerprint, the fewest days left on a
// certificate, whether a run holds its lock, and who holds its lease on
// the nodes (leaseHolders); "-" is not known.
func fleetRow(r fleetReport) []string {
	ready, leader, commit := 0, "-", "-"
	var versions []string
	certDays := (*int)(nil)
	for _, n := range r.Nodes {
		if n.Ready {
			ready++
		}
		if n.Version != "" && !slices.Contains(versions, n.Version) {
			versions = append(versions, n.Version)
		}
		if n.CertDays != nil && (certDays == nil || *n.CertDays < *certDays) {
			certDays = n.CertDays
		}
		if v := n.View; v != nil && leader == "-" {
			leader, commit = "none", fmt.Sprint(v.Commit)
			if v.Leader >= 0 {
				leader = fmt.Sprint(v.Leader)
				for _, l := range r.Nodes {
					if l.View != nil && l.View.ID == v.Leader {
						leader = fmt.Sprintf("%s (%d)", l.Host, v.Leader)
					}
				}
			}
		}
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	cert := "-"
	if certDays != nil {
		cert = fmt.Sprintf("%dd", *certDays)
	}
	locked := "no"
	if len(r.Locks) > 0 {
		locked = "yes"
	}
	return []string{r.Cluster, strings.ReplaceAll(r.Verdict, "_", " "), fmt.Sprint(len(r.Nodes)), fmt.Sprintf("%d/%d", ready, len(r.Nodes)),
		leader, commit, dash(strings.Join(versions, ",")), dash(r.HSMFingerprint), cert, locked, leaseHolders(r.Leases)}
}

// leaseHolders names, for the fleet's table, who holds a cluster's lease
// on its nodes: each holder once (user, command, since when), a file that
// is not a lease as such; "no" when none is held.
func leaseHolders(leases []lease.NodeLease) string {
	var holders []string
	for _, nl := range leases {
		h := "not a lease on " + nl.Node
		if nl.Garbage == "" && nl.Lease != nil {
			h = fmt.Sprintf("%s `%s` since %s UTC", nl.Lease.User, nl.Lease.Command, nl.Lease.Since.UTC().Format("2006-01-02 15:04"))
		}
		if !slices.Contains(holders, h) {
			holders = append(holders, h)
		}
	}
	if len(holders) == 0 {
		return "no"
	}
	return strings.Join(holders, "; ")
}
