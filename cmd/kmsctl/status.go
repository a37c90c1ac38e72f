package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/output"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/lock"
	"github.com/kmsctl/kmsctl/playbooks"
	"github.com/kmsctl/kmsctl/tasks"
)

// defaultCluster is the inventory group status reads when --cluster is not
// given.
const defaultCluster = "kms"

// clusterFlag is --cluster GROUP of the commands that work on a cluster.
func clusterFlag() cli.Flag {
	return &cli.StringFlag{Name: "cluster", Usage: "the inventory `GROUP` whose hosts are the cluster's nodes", Value: defaultCluster}
}

// clusterOptions is the common start of the actions of status and backup,
// which take no arguments: it refuses any and reads the options.
func clusterOptions(c *cli.Context, opts optionsFunc, name string) (options, error) {
	if c.NArg() > 0 {
		return options{}, exit.Usagef("%s: no arguments expected (name the cluster with --cluster GROUP), got %q", name, c.Args().Slice())
	}
	return opts(c)
}

// newStatusCommand builds `kmsctl status`.
func newStatusCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show each node of a Key Manager cluster and whether the cluster is healthy (exit 7 when degraded)",
		Flags: []cli.Flag{
			clusterFlag(),
			&cli.BoolFlag{Name: "all", Usage: "every cluster of the inventory (each group named by a host's kms_cluster), in one table"},
		},
		Action: func(c *cli.Context) error {
			o, err := clusterOptions(c, opts, "status")
			if err != nil {
				return err
			}
			if c.Bool("all") {
				if c.IsSet("cluster") {
					return exit.Usagef("status: --all and --cluster %s: name one cluster or ask for all", c.String("cluster"))
				}
				return statusFleet(c.Context, e, o)
			}
			return status(c.Context, e, o, c.String("cluster"))
		},
	}
}

// status gathers, with one read-only play on every node of the group at
// once, each node's SSH reachability, service state, HSM-key fingerprint
// and its own Key Manager status; verdict judges the cluster from that.
// It prints one row per node and the verdict (--output json: one status
// event), and returns nil when healthy, exit 7 when degraded and exit 3
// when no node answered.
func status(ctx context.Context, e env, o options, group string) error {
	inv, hosts, nodes, err := loadCluster(e, o, group)
	if err != nil {
		return err
	}
	g := newGathered()
	reg, err := g.registry(newRegistry(e, o))
	if err != nil {
		return err
	}
	r, err := newReadRunner(e, o, "status --cluster "+group, inv, reg, g, len(hosts))
	if err != nil {
		return err
	}
	r.s.rerun = "status only reads: run it again"
	// The play reads each node's lease too: status takes no lock, but
	// shows who holds the cluster.
	play := statusPlay(hosts)
	play.Tasks = append(play.Tasks, leaseTask())
	return r.runWith(ctx, []tasks.Play{play}, func(ctx context.Context, recap tasks.Recap, err error) error {
		if err != nil && ctx.Err() != nil {
			return exitError(ctx, recap, err)
		}
		c := cluster{Group: group, Nodes: g.states(nodes), Now: time.Now()}
		if err := localSetupError(c.Nodes); err != nil {
			return err
		}
		reasons := verdict(c)
		locks, lerr := heldLocks(e.stateDir, nodes)
		if lerr != nil {
			return lerr
		}
		if perr := printStatus(e, o, c, reasons, locks, g.heldLeases(nodes, c.Now)); perr != nil {
			return perr
		}
		switch {
		case len(reasons) == 0:
			return nil
		case reasons[0].Kind == reasonNoAnswer:
			return exit.Silent{Code: exit.Unreachable}
		default:
			return exit.Silent{Code: exit.VerifyFailed}
		}
	})
}

// loadCluster is the common set-up of the commands that work on a cluster
// (status, backup, recover): it loads the inventory, resolves the group's
// hosts and nodes (statusHosts) and checks their API keys (checkAPIKeys),
// and says on stderr which runs on the cluster stopped unfinished, with
// the command that finishes each (noticeInterrupted).
func loadCluster(e env, o options, group string) (*inventory.Inventory, []tasks.Host, []inventory.KMSNode, error) {
	inv, err := loadInventory(o, false)
	if err != nil {
		return nil, nil, nil, err
	}
	hosts, nodes, err := statusHosts(inv, o, group)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkAPIKeys(e, o, nodes); err != nil {
		return nil, nil, nil, err
	}
	noticeInterrupted(e, nodes)
	return inv, hosts, nodes, nil
}

// statusHosts resolves the group's hosts (with --limit) and their nodes'
// names, as the cluster knows them.
func statusHosts(inv *inventory.Inventory, o options, group string) ([]tasks.Host, []inventory.KMSNode, error) {
	pattern := group
	if o.Limit != "" {
		pattern += ":&" + o.Limit
	}
	names, err := inv.Select(pattern)
	if err != nil {
		what := fmt.Sprintf("--cluster %q", group)
		if o.Limit != "" {
			what += fmt.Sprintf(" with --limit %q", o.Limit)
		}
		return nil, nil, exit.With(exit.Usage, fmt.Errorf("%s: %w", what, err))
	}
	if len(names) == 0 {
		return nil, nil, exit.Usagef("--cluster %q: no hosts in that inventory group (with --limit %q)", group, o.Limit)
	}
	var (
		hosts []tasks.Host
		nodes []inventory.KMSNode
		errs  []error
	)
	for _, n := range names {
		h, err := inv.Resolve(n, o.ExtraVars)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve host %s: %w", n, err))
			continue
		}
		th := playbooks.TaskHost(h)
		// The service's name for the play's service task: the inventory's
		// value, default included.
		th.Vars = maps.Clone(th.Vars)
		if th.Vars == nil {
			th.Vars = map[string]any{}
		}
		th.Vars[inventory.VarService] = h.KMS.Service
		hosts = append(hosts, th)
		nodes = append(nodes, h.KMS)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, exit.With(exit.Usage, err)
	}
	return hosts, nodes, nil
}

// checkAPIKeys reads and parses the admin API key of every node where the
// Key Manager modules will look for it, before any host is asked: a key
// file that is missing, empty, malformed or readable by others is a problem
// of this machine, not a node whose API is down (exit 1, or 4 for a file
// others may read). Each problem is named once, with the hosts it concerns.
func checkAPIKeys(e env, o options, nodes []inventory.KMSNode) error {
	ko := kmsmodules.Options{Getenv: e.getenv, APIKeyFile: o.APIKeyFile}
	var msgs []string
	var errs []error
	hostsOf := map[string][]string{}
	for _, n := range nodes {
		err := kmsmodules.CheckAPIKey(ko, n)
		if err == nil {
			continue
		}
		m := err.Error()
		if _, ok := hostsOf[m]; !ok {
			msgs = append(msgs, m)
			errs = append(errs, err)
		}
		hostsOf[m] = append(hostsOf[m], n.Host)
	}
	if len(errs) == 0 {
		return nil
	}
	for i, m := range msgs {
		errs[i] = fmt.Errorf("the admin API key of %s: %w", joinAnd(hostsOf[m]), errs[i])
	}
	return exit.With(exit.Usage, fmt.Errorf("%w (no node was asked)", errors.Join(errs...)))
}

// keyRefused is an error (exit 1) when every node whose API answered
// refused the admin API key and none gave its status: the key is not this
// cluster's admin key, which says nothing about the cluster's health. A
// key refused by some nodes only is judged by the verdict, as a node that
// gave no status.
func keyRefused(nodes []nodeState) error {
	var refused []string
	for _, n := range nodes {
		switch {
		case n.View != nil:
			return nil
		case n.APIKeyRefused:
			refused = append(refused, n.Host)
		case n.Live:
			return nil
		}
	}
	if len(refused) == 0 {
		return nil
	}
	return exit.Usagef("%s refused the admin API key (HTTP 403 access denied): it is not this cluster's admin API key; "+
		"check $%s, --api-key-file or the inventory's %s (the cluster was not judged)",
		joinAnd(refused), inventory.EnvAPIKey, inventory.VarAPIKeyFile)
}

// localSetupError is keyRefused's error, else caUnknown's: a problem of
// this machine's settings that every answering node shows alike, to be
// fixed here rather than judged as the cluster's health (exit 1).
func localSetupError(nodes []nodeState) error {
	if err := keyRefused(nodes); err != nil {
		return err
	}
	return caUnknown(nodes)
}

// caUnknown is an error (exit 1) when every node whose API answered
// presented a TLS certificate that kms_ca_file (or the system pool) does
// not sign: the CA file is wrong, which says nothing about the cluster's
// health. Nodes that do not answer at all are left out; one node failing
// verification while another passes is a certificate problem of that node,
// judged by the verdict.
func caUnknown(nodes []nodeState) error {
	var bad []nodeState
	for _, n := range nodes {
		switch {
		case n.View != nil || n.Live || n.APIKeyRefused:
			return nil
		case n.CertUnknownAuthority:
			bad = append(bad, n)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	// One sentence per CA file and issuer: usually one for the cluster.
	type key struct{ ca, issuer string }
	var order []key
	hosts := map[key][]string{}
	for _, n := range bad {
		k := key{n.CAFile, orUnknown(n.CertIssuer)}
		if _, ok := hosts[k]; !ok {
			order = append(order, k)
		}
		hosts[k] = append(hosts[k], n.Host)
	}
	var parts []string
	for _, k := range order {
		what := "the certificate of " + hosts[k][0]
		if len(hosts[k]) > 1 {
			what = "the certificates of " + joinAnd(hosts[k])
		}
		verb := "does not sign"
		if k.ca == "" {
			verb = "do not sign"
		}
		parts = append(parts, fmt.Sprintf("%s %s %s (issuer %s)", caName(k.ca), verb, what, k.issuer))
	}
	fix := "point kms_ca_file at the CA that issued the nodes' certificates"
	if len(order) == 1 && order[0].ca == "" {
		fix = "set kms_ca_file to the CA that issued the nodes' certificates"
	}
	return exit.Usagef("%s: %s (the cluster was not judged)", strings.Join(parts, "; "), fix)
}

// The tasks of the status play.
const (
	taskService = "service state"
	taskHSM     = "HSM key"
	taskAPI     = "Key Manager status"
)

// statusPlay is status's read-only play: the service's state (systemctl
// show), the HSM key's fingerprint in the env file (read as root), and
// the node's own status through its API. A task that fails does not stop
// the others (ignore_errors): each failure is an answer.
func statusPlay(hosts []tasks.Host) tasks.Play {
	yes, no := true, false
	return tasks.Play{
		Name:  "status",
		Hosts: hosts,
		Tasks: []tasks.Task{
			{Name: taskService, Module: "service", Args: map[string]any{"name": "{{ " + inventory.VarService + " }}"}, Become: &no, IgnoreErrors: true},
			{Name: taskHSM, Module: "kms_hsm_fingerprint", Args: map[string]any{}, Become: &yes, IgnoreErrors: true},
			{Name: taskAPI, Module: "kms_status", Args: map[string]any{}, Become: &no, IgnoreErrors: true},
		},
	}
}

// gathered records what the status play's modules returned on each host,
// and which hosts were unreachable.
type gathered struct {
	mu          sync.Mutex
	results     map[string]map[string]gatheredResult // host → task → result
	unreachable map[string]string                    // host → why
}

// newGathered returns a gathered with nothing recorded yet.
func newGathered() *gathered {
	return &gathered{results: map[string]map[string]gatheredResult{}, unreachable: map[string]string{}}
}

// newReadRunner is newRunner, quiet, for a play that only reads and whose
// results g gathers (reg's modules record into g): it runs on every one of
// its hosts at once whatever --forks, so that the answer takes as long as
// the slowest node whatever their number, and not in check mode (reading
// is what --check would do too), and g records the hosts its events find
// unreachable.
func newReadRunner(e env, o options, command string, inv *inventory.Inventory, reg *tasks.Registry, g *gathered, hosts int) (*runner, error) {
	r, err := newRunner(e, o, command, inv, reg, true)
	if err != nil {
		return nil, err
	}
	r.engine.Forks = max(o.Forks, hosts)
	r.engine.Check = false
	g.listen(r.engine)
	return r, nil
}

// listen makes eng record in g the hosts its events find unreachable; the
// events still go to eng's sink.
func (g *gathered) listen(eng *tasks.Engine) {
	sink := eng.Sink
	eng.Sink = tasks.SinkFunc(func(ev tasks.Event) {
		g.event(ev)
		sink.Event(ev)
	})
}

type gatheredResult struct {
	res tasks.Result
	err error
}

// registry returns reg's modules of the status play wrapped so that their
// results are recorded.
func (g *gathered) registry(reg *tasks.Registry) (*tasks.Registry, error) {
	out := tasks.NewRegistry()
	for task, module := range map[string]string{taskService: "service", taskHSM: "kms_hsm_fingerprint", taskAPI: "kms_status", taskLease: "kms_lease"} {
		m, ok := reg.Lookup(module)
		if !ok {
			return nil, fmt.Errorf("status: module %s is not registered", module)
		}
		out.Register(module, recorded{Module: m, g: g, task: task})
	}
	return out, nil
}

// event records a host found unreachable.
func (g *gathered) event(ev tasks.Event) {
	if ev.Type == tasks.EventHostResult && ev.Status == tasks.StatusUnreachable {
		g.mu.Lock()
		defer g.mu.Unlock()
		if _, ok := g.unreachable[ev.Host]; !ok {
			g.unreachable[ev.Host] = ev.Msg
		}
	}
}

func (g *gathered) put(host, task string, res tasks.Result, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.results[host] == nil {
		g.results[host] = map[string]gatheredResult{}
	}
	g.results[host][task] = gatheredResult{res, err}
}

// recorded is a module whose results g records.
type recorded struct {
	tasks.Module
	g    *gathered
	task string
}

func (r recorded) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	res, err := r.Module.Plan(ctx, env)
	r.g.put(env.Host.Name, r.task, res, err)
	return res, err
}

func (r recorded) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	res, err := r.Module.Apply(ctx, env)
	r.g.put(env.Host.Name, r.task, res, err)
	return res, err
}

// states turns what was gathered into one nodeState per node, in the
// inventory's order.
func (g *gathered) states(nodes []inventory.KMSNode) []nodeState {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]nodeState, len(nodes))
	for i, n := range nodes {
		s := nodeState{Host: n.Host, Endpoint: n.Endpoint, Service: n.Service, CAFile: n.CAFile}
		res := g.results[n.Host]
		if why, ok := g.unreachable[n.Host]; ok {
			s.SSHError = why
		} else {
			s.SSH = len(res) > 0
		}
		if r, ok := res[taskService]; ok {
			if st, _ := r.res.Data["active_state"].(string); st != "" && r.err == nil && !r.res.Failed {
				s.ServiceState = st
				if r.res.Data["load_state"] == "not-found" {
					s.ServiceState = "not-found" // not installed (a machine not provisioned yet)
				}
			} else {
				s.ServiceError = resultError(r)
			}
		}
		if r, ok := res[taskHSM]; ok {
			if fp, _ := r.res.Data["fingerprint"].(string); fp != "" && r.err == nil && !r.res.Failed {
				s.HSMFingerprint = fp
			} else {
				s.HSMError = resultError(r)
			}
		}
		if r, ok := res[taskAPI]; ok {
			apiState(&s, r)
		}
		out[i] = s
	}
	return out
}

// apiState fills s from kms_status's registered data.
func apiState(s *nodeState, r gatheredResult) {
	d := r.res.Data
	s.Live, _ = d["live"].(bool)
	s.Ready, _ = d["ready"].(bool)
	s.ReadyWrite, _ = d["ready_write"].(bool)
	s.Version, _ = d["version"].(string)
	if na, ok := d["cert_not_after"].(string); ok {
		if t, err := time.Parse(time.RFC3339, na); err == nil {
			s.CertNotAfter = &t
		}
	}
	if r.err != nil || r.res.Failed {
		s.APIError = resultError(r)
		s.APIKeyRefused, _ = d["key_refused"].(bool)
		s.CertUnknownAuthority, _ = d["cert_unknown_authority"].(bool)
		s.CertIssuer, _ = d["cert_issuer"].(string)
		return
	}
	v := &nodeView{}
	v.ID, _ = d["id"].(int)
	v.Role, _ = d["role"].(string)
	v.Leader, _ = d["leader"].(int)
	v.Commit, _ = d["commit"].(int)
	ms, _ := d["members"].([]any)
	for _, m := range ms {
		mm, _ := m.(map[string]any)
		id, _ := mm["id"].(int)
		ep, _ := mm["endpoint"].(string)
		v.Members = append(v.Members, member{ID: id, Endpoint: ep})
	}
	down, _ := d["down"].([]any)
	for _, id := range down {
		if i, ok := id.(int); ok {
			v.Down = append(v.Down, i)
		}
	}
	if v.Down == nil {
		v.Down = []int{}
	}
	s.View = v
}

// resultError is why a task gave no answer.
func resultError(r gatheredResult) string {
	if r.err != nil {
		return r.err.Error()
	}
	if r.res.Msg != "" {
		return r.res.Msg
	}
	return "no answer"
}

// printStatus writes the table and the verdict, or with --output json one
// status event holding the same.
func printStatus(e env, o options, c cluster, reasons []reason, locks []lock.State, leases []lease.NodeLease) error {
	for i := range c.Nodes {
		if n := &c.Nodes[i]; n.CertNotAfter != nil {
			d := certDays(*n.CertNotAfter, c.Now)
			n.CertDays = &d
		}
	}
	word := "healthy"
	switch {
	case len(reasons) > 0 && reasons[0].Kind == reasonNoAnswer:
		word = "unreachable"
	case len(reasons) > 0:
		word = "degraded"
	}
	if o.Output == "json" {
		if reasons == nil {
			reasons = []reason{}
		}
		jsonLine(e.stdout, "status").Str("cluster", c.Group).Strs("inventory", o.Inventories).
			Str("verdict", word).Interface("reasons", reasons).Interface("nodes", c.Nodes).
			Str("hsm_fingerprint", commonFingerprint(c.Nodes)).Interface("locks", locks).Interface("leases", leasesOrNone(leases)).Send()
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster %s (%s, inventory %s)\n\n", c.Group, output.Count(len(c.Nodes), "node"), strings.Join(o.Inventories, ", "))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tENDPOINT\tSSH\tSERVICE\tAPI\tID\tROLE\tLEADER\tCOMMIT\tSEES\tVERSION\tCERT")
	for _, n := range c.Nodes {
		fmt.Fprintln(tw, strings.Join(statusRow(n), "\t"))
	}
	tw.Flush()
	b.WriteString("\n")
	switch word {
	case "healthy":
		fmt.Fprintf(&b, "HEALTHY: %s\n", healthySummary(c))
	default:
		fmt.Fprintf(&b, "%s: %s.\n", strings.ToUpper(word), reasons[0].Text)
		for _, r := range reasons[1:] {
			fmt.Fprintf(&b, "  also: %s.\n", r.Text)
		}
		if fp := commonFingerprint(c.Nodes); fp != "" {
			fmt.Fprintf(&b, "  HSM key: same fingerprint on %s (%s).\n", joinAnd(fingerprinted(c.Nodes)), fp)
		}
		if next := nextCommand(c, reasons); next != "" {
			fmt.Fprintf(&b, "  Next: %s\n", next)
		}
	}
	for _, st := range locks {
		fmt.Fprintln(&b, lockedLine(st))
	}
	for _, nl := range leases {
		fmt.Fprintln(&b, leasedLine(nl))
	}
	_, err := io.WriteString(e.stdout, b.String())
	return err
}

// lockedLine is the line that says a run holds the lock of st's cluster.
func lockedLine(st lock.State) string {
	held := &lock.HeldError{Cluster: st.Cluster, Holder: st.Holder}
	return fmt.Sprintf("LOCKED: %s: a change of its membership is under way on this machine.", held)
}

// heldLocks returns the cluster locks held on this machine (a run that
// changes membership is going on) for the clusters of nodes.
func heldLocks(stateDir string, nodes []inventory.KMSNode) ([]lock.State, error) {
	clusters := map[string]bool{}
	for _, n := range nodes {
		clusters[n.Cluster] = true
	}
	held := []lock.State{}
	for _, c := range slices.Sorted(maps.Keys(clusters)) {
		st, err := lock.Status(locksDir(stateDir), c)
		if err != nil {
			return nil, err
		}
		if st.Held {
			held = append(held, st)
		}
	}
	return held, nil
}

// statusRow is one node's row of the table; "-" is not known.
func statusRow(n nodeState) []string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	ssh := "ok"
	if !n.SSH {
		ssh = "no"
	}
	service := n.ServiceState
	if service == "" && n.SSH {
		service = "unknown"
	}
	api := "down"
	switch {
	case n.ReadyWrite:
		api = "ready,rw"
	case n.Ready:
		api = "ready"
	case n.Live:
		api = "live"
	}
	row := []string{n.Host, n.Endpoint, ssh, dash(service), api, "-", "-", "-", "-", "-", dash(n.Version), "-"}
	if v := n.View; v != nil {
		row[5], row[6], row[8] = fmt.Sprint(v.ID), strings.ToLower(v.Role), fmt.Sprint(v.Commit)
		if v.Leader >= 0 {
			row[7] = fmt.Sprint(v.Leader)
		} else {
			row[7] = "none"
		}
		var sees []string
		for _, m := range v.Members {
			if slices.Contains(v.Down, m.ID) {
				sees = append(sees, fmt.Sprintf("-%d", m.ID))
			} else {
				sees = append(sees, fmt.Sprint(m.ID))
			}
		}
		row[9] = strings.Join(sees, " ")
	}
	if n.CertDays != nil {
		row[11] = fmt.Sprintf("%dd", *n.CertDays)
	}
	return row
}

// healthySummary is the line of a healthy cluster: its size, leader and
// commit, and the HSM key's fingerprint.
func healthySummary(c cluster) string {
	s := output.Count(len(c.Nodes), "node")
	for _, n := range c.Nodes {
		if v := n.View; v != nil {
			for _, l := range c.Nodes {
				if l.View != nil && l.View.ID == v.Leader {
					s += fmt.Sprintf(", leader %s (node %d)", l.Host, v.Leader)
					break
				}
			}
			s += fmt.Sprintf(", commit %d", v.Commit)
			break
		}
	}
	if fp := commonFingerprint(c.Nodes); fp != "" {
		s += fmt.Sprintf("; HSM key: same fingerprint on every node (%s)", fp)
	}
	return s
}

// commonFingerprint is the HSM-key fingerprint when every node whose key
// was read has the same ("" otherwise, or when none was read).
func commonFingerprint(nodes []nodeState) string {
	fp := ""
	for _, n := range nodes {
		switch {
		case n.HSMFingerprint == "":
		case fp == "":
			fp = n.HSMFingerprint
		case fp != n.HSMFingerprint:
			return ""
		}
	}
	return fp
}

func fingerprinted(nodes []nodeState) []string {
	var out []string
	for _, n := range nodes {
		if n.HSMFingerprint != "" {
			out = append(out, n.Host)
		}
	}
	return out
}

// nextCommand is the command that mends what reasons found, when one does:
// `kmsctl recover node` for the inventory hosts whose node is down or runs
// outside the cluster with its old state ("" otherwise). recover node
// refuses a node the survivors list as down whose Key Manager still
// answers, so such a node's service is to be stopped first, and the hint
// says so.
func nextCommand(c cluster, reasons []reason) string {
	var hosts, stale, stop []string
	for _, r := range reasons {
		if r.Kind != reasonDown && r.Kind != reasonNotMember {
			continue
		}
		for _, h := range r.Nodes {
			if r.Kind == reasonNotMember {
				stale = append(stale, h)
			}
			if n := byHost(c.Nodes, h); n.Host == h && !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	// A node the survivors still list (down) but whose API answers is
	// refused by recover node until its service is stopped; a stale
	// former member (no survivor lists it) is rebuilt as it is.
	for _, h := range hosts {
		if n := byHost(c.Nodes, h); n.View != nil && !slices.Contains(stale, h) {
			stop = append(stop, fmt.Sprintf("%s on %s", n.Service, h))
		}
	}
	if len(hosts) == 0 {
		return ""
	}
	cmd := "kmsctl recover node " + strings.Join(hosts, " ")
	if c.Group != defaultCluster {
		cmd += " --cluster " + c.Group
	}
	if len(stop) > 0 {
		cmd = "stop " + joinAnd(stop) + " first (recover node refuses a node whose Key Manager still answers), then " + cmd
	}
	return cmd
}
