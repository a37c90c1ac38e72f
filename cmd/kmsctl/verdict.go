package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// certWarnDays is how close to its expiry a node's TLS certificate makes
// the cluster degraded.
const certWarnDays = 30

// nodeState is what `kmsctl status` learned about one inventory host of the
// cluster: over SSH (reachable, the service's state, the HSM key in its env
// file) and from its Key Manager API (health, its own view, version,
// certificate). Empty strings and nil pointers mean "not known".
type nodeState struct {
	Host     string `json:"host"`     // inventory host name
	Endpoint string `json:"endpoint"` // kms_endpoint, as the cluster knows the node
	Service  string `json:"service"`  // kms_service, the systemd unit

	SSH      bool   `json:"ssh"`                 // the host answered SSH
	SSHError string `json:"ssh_error,omitempty"` // why not

	ServiceState string `json:"service_state,omitempty"` // systemd's ActiveState
	ServiceError string `json:"service_error,omitempty"`

	Live       bool   `json:"live"`
	Ready      bool   `json:"ready"`
	ReadyWrite bool   `json:"ready_write"`
	APIError   string `json:"api_error,omitempty"` // the API did not answer its cluster status
	// APIKeyRefused: the API refused the admin API key (HTTP 403).
	APIKeyRefused bool `json:"api_key_refused,omitempty"`
	// CertUnknownAuthority: the certificate the node presented is not
	// signed by CAFile (kms_ca_file; the system pool when empty), whose
	// issuer is CertIssuer.
	CertUnknownAuthority bool      `json:"cert_unknown_authority,omitempty"`
	CertIssuer           string    `json:"cert_issuer,omitempty"`
	CAFile               string    `json:"-"`
	View                 *nodeView `json:"view,omitempty"` // its own view; nil when the API did not give it
	Version              string    `json:"version,omitempty"`

	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	CertDays     *int       `json:"cert_days,omitempty"` // whole days left (negative: expired)

	HSMFingerprint string `json:"hsm_fingerprint,omitempty"`
	HSMError       string `json:"hsm_error,omitempty"`
}

// nodeView is a node's own view of its cluster (kms_status).
type nodeView struct {
	ID      int      `json:"id"`
	Role    string   `json:"role"`
	Leader  int      `json:"leader"` // negative: it sees no leader
	Commit  int      `json:"commit"`
	Members []member `json:"members"` // its cluster definition, by ID
	Down    []int    `json:"down"`    // the member IDs it sees down
}

// member is one entry of a cluster definition.
type member struct {
	ID       int    `json:"id"`
	Endpoint string `json:"endpoint"`
}

// lists reports whether v's cluster definition holds endpoint, and under
// which ID.
func (v *nodeView) lists(endpoint string) (int, bool) {
	for _, m := range v.Members {
		if m.Endpoint == endpoint {
			return m.ID, true
		}
	}
	return 0, false
}

// answers reports whether the node answered at all (SSH or its API).
func (n nodeState) answers() bool { return n.SSH || n.Live || n.View != nil }

// cluster is what verdict analyses: the inventory group and what each of
// its hosts said, at a time (for the certificates).
type cluster struct {
	Group string
	Nodes []nodeState
	Now   time.Time
}

// reason is one way the cluster is degraded, in plain words: Nodes names
// the inventory hosts (or, for a member outside the inventory, its
// endpoint) the reason is about.
type reason struct {
	Kind  string   `json:"kind"`
	Nodes []string `json:"nodes"`
	Text  string   `json:"text"`
}

// The kinds of reasons.
const (
	reasonDown         = "node_down"        // a member seen down by others
	reasonUnreachable  = "ssh_unreachable"  // a host that does not answer SSH
	reasonAPI          = "api_unanswered"   // a host whose API does not answer
	reasonService      = "service"          // the service is not active, or its state unknown
	reasonNotMember    = "not_member"       // a node the others do not list
	reasonMembers      = "members_disagree" // members list different members
	reasonLeader       = "leader"           // no leader, or members disagree about it
	reasonNotInventory = "not_in_inventory" // a member no host of the group is
	reasonHSM          = "hsm_key"          // HSM-key fingerprints differ
	reasonHSMUnknown   = "hsm_key_unknown"  // a node's HSM key could not be read
	reasonVersions     = "versions"         // nodes run different server versions
	reasonCert         = "certificate"      // a certificate expires soon or has expired
	reasonNotReady     = "not_ready"        // a node that is not ready for reads or writes
	reasonNoAnswer     = "no_answer"        // no node answered at all
)

// verdict analyses what status gathered: no reason means healthy. It is
// pure: everything it needs is in c.
func verdict(c cluster) []reason {
	var rs []reason
	add := func(kind string, nodes []string, format string, args ...any) {
		rs = append(rs, reason{Kind: kind, Nodes: nodes, Text: fmt.Sprintf(format, args...)})
	}
	if len(c.Nodes) == 0 {
		return nil
	}
	if !slices.ContainsFunc(c.Nodes, nodeState.answers) {
		// Why each host does not answer SSH: a refused host key (a replaced
		// machine) says so here with the --expect-host-key form to accept it.
		var why []string
		for _, n := range c.Nodes {
			if n.SSHError != "" {
				why = append(why, n.Host+": "+n.SSHError)
			}
		}
		text := fmt.Sprintf("no node of group %s answers, over SSH or its Key Manager API", c.Group)
		if len(why) > 0 {
			text += " (" + strings.Join(why, "; ") + ")"
		}
		add(reasonNoAnswer, hostNames(c.Nodes), "%s", text)
		return rs
	}
	byEndpoint := map[string]*nodeState{}
	for i := range c.Nodes {
		byEndpoint[c.Nodes[i].Endpoint] = &c.Nodes[i]
	}
	explained := map[string]bool{} // hosts whose unreachability a reason already tells

	// Members are the nodes with a view that at least as many of the other
	// nodes with a view list as do not (the only one with a view is one); a
	// node most of them do not list is not a member, whatever it thinks.
	var viewers, members []*nodeState
	for i := range c.Nodes {
		if c.Nodes[i].View != nil {
			viewers = append(viewers, &c.Nodes[i])
		}
	}
	for _, n := range viewers {
		var listing, notListing []string
		for _, o := range viewers {
			if o == n {
				continue
			}
			if _, ok := o.View.lists(n.Endpoint); ok {
				listing = append(listing, o.Host)
			} else {
				notListing = append(notListing, o.Host)
			}
		}
		if len(listing) >= len(notListing) {
			members = append(members, n)
			continue
		}
		thinks := 0
		for _, h := range notListing {
			if _, ok := n.View.lists(byHost(c.Nodes, h).Endpoint); ok {
				thinks++
			}
		}
		if thinks > 0 {
			add(reasonNotMember, []string{n.Host}, "%s (node %d) is not a member in the view of %s but thinks it is: it was removed from the cluster and still runs with its old state",
				n.Host, n.View.ID, joinAnd(notListing))
		} else {
			add(reasonNotMember, []string{n.Host}, "%s (node %d) is not a member in the view of %s: it runs a cluster of its own (%s)",
				n.Host, n.View.ID, joinAnd(notListing), countNodes(len(n.View.Members)))
		}
	}

	// Down members, as the members see them.
	downBy := map[int][]string{}
	endpointOf := map[int]string{}
	for _, n := range members {
		for _, m := range n.View.Members {
			if _, ok := endpointOf[m.ID]; !ok {
				endpointOf[m.ID] = m.Endpoint
			}
		}
		for _, id := range n.View.Down {
			downBy[id] = append(downBy[id], n.Host)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(downBy)) {
		ep := endpointOf[id]
		name := ep
		text := fmt.Sprintf("node %d (%s) is down as seen by %s", id, ep, joinAnd(downBy[id]))
		if h, ok := byEndpoint[ep]; ok {
			name = h.Host
			explained[h.Host] = true
			text += "; " + hostCondition(*h)
		}
		add(reasonDown, []string{name}, "%s", text)
	}

	// Hosts that do not answer, when no member's view already said so.
	for _, n := range c.Nodes {
		if explained[n.Host] {
			continue
		}
		switch {
		case !n.SSH && n.View == nil:
			add(reasonUnreachable, []string{n.Host}, "%s does not answer SSH: %s (so its service, HSM key and API were not checked)", n.Host, n.SSHError)
		case !n.SSH:
			add(reasonUnreachable, []string{n.Host}, "%s does not answer SSH: %s", n.Host, n.SSHError)
		case n.View == nil && n.CertUnknownAuthority:
			// The others pass verification: a certificate problem of this
			// node, not a node down (a wrong kms_ca_file fails them all,
			// which status reports as a setup error before any verdict).
			add(reasonCert, []string{n.Host}, "the TLS certificate of %s (%s) is not signed by %s (its issuer: %s): a certificate problem, not a node down "+
				"(%s's certificate is not from the CA that signed the others', or its kms_ca_file is not theirs); %s", n.Host, n.Endpoint, caName(n.CAFile), orUnknown(n.CertIssuer), n.Host, serviceCondition(n))
			continue
		case n.View == nil:
			kind, text := reasonAPI, fmt.Sprintf("the Key Manager API of %s (%s) gave no status: %s; %s", n.Host, n.Endpoint, orUnknown(n.APIError), serviceCondition(n))
			if len(members) > 0 && !slices.ContainsFunc(members, func(m *nodeState) bool { _, ok := m.View.lists(n.Endpoint); return ok }) {
				// Its ID was removed (recover node stopped after the edit,
				// or by hand): not a member until rebuilt and added.
				kind = reasonNotMember
				text += fmt.Sprintf("; no member lists %s: its node ID was removed, so it is not in the cluster until it is rebuilt and added", n.Endpoint)
			}
			add(kind, []string{n.Host}, "%s", text)
			continue
		}
		if n.SSH && n.ServiceError != "" {
			add(reasonService, []string{n.Host}, "the state of %s on %s is unknown: %s", n.Service, n.Host, n.ServiceError)
		} else if n.SSH && n.ServiceState != "active" {
			add(reasonService, []string{n.Host}, "%s is %s on %s, although its API answers", n.Service, n.ServiceState, n.Host)
		}
	}

	// Members that disagree about the members or the leader.
	defs := map[string][]string{}
	leaders := map[int][]string{}
	for _, n := range members {
		defs[memberList(n.View.Members)] = append(defs[memberList(n.View.Members)], n.Host)
		leaders[n.View.Leader] = append(leaders[n.View.Leader], n.Host)
	}
	if len(defs) > 1 {
		var parts []string
		for _, d := range sortedByCount(defs) {
			parts = append(parts, fmt.Sprintf("%s %s %s", joinAnd(defs[d]), seeVerb(defs[d]), d))
		}
		add(reasonMembers, minority(defs), "members disagree about the cluster's members: %s", strings.Join(parts, "; "))
	}
	if hosts, ok := leaders[-1]; ok {
		add(reasonLeader, hosts, "%s %s no leader", joinAnd(hosts), seeVerb(hosts))
		delete(leaders, -1)
	}
	if len(leaders) > 1 {
		var parts []string
		byLeader := map[string][]string{}
		for _, l := range slices.Sorted(maps.Keys(leaders)) {
			parts = append(parts, fmt.Sprintf("%s %s node %d", joinAnd(leaders[l]), seeVerb(leaders[l]), l))
			byLeader[strconv.Itoa(l)] = leaders[l]
		}
		add(reasonLeader, minority(byLeader), "members disagree about the leader: %s", strings.Join(parts, ", "))
	}

	// Members no host of the group is.
	seenBy := map[string][]string{}
	ids := map[string]int{}
	for _, n := range members {
		for _, m := range n.View.Members {
			if _, ok := byEndpoint[m.Endpoint]; !ok {
				seenBy[m.Endpoint] = append(seenBy[m.Endpoint], n.Host)
				ids[m.Endpoint] = m.ID
			}
		}
	}
	for _, ep := range slices.Sorted(maps.Keys(seenBy)) {
		add(reasonNotInventory, []string{ep}, "node %d (%s) is a member as seen by %s, but no host of group %s has kms_endpoint %s",
			ids[ep], ep, joinAnd(seenBy[ep]), c.Group, ep)
	}

	// The HSM key of every node whose env file was read.
	fps := map[string][]string{}
	for _, n := range c.Nodes {
		switch {
		case n.HSMFingerprint != "":
			fps[n.HSMFingerprint] = append(fps[n.HSMFingerprint], n.Host)
		case n.SSH && n.HSMError != "":
			add(reasonHSMUnknown, []string{n.Host}, "the HSM key of %s could not be checked: %s", n.Host, n.HSMError)
		}
	}
	if len(fps) > 1 {
		var parts []string
		for _, fp := range sortedByCount(fps) {
			parts = append(parts, fmt.Sprintf("%s %s %s", joinAnd(fps[fp]), hasVerb(fps[fp]), fp))
		}
		add(reasonHSM, minority(fps), "HSM-key fingerprints differ: %s", strings.Join(parts, ", "))
	}

	// Server versions.
	versions := map[string][]string{}
	for _, n := range c.Nodes {
		if n.Version != "" {
			versions[n.Version] = append(versions[n.Version], n.Host)
		}
	}
	if len(versions) > 1 {
		var parts []string
		for _, v := range sortedByCount(versions) {
			verb := "runs"
			if len(versions[v]) > 1 {
				verb = "run"
			}
			parts = append(parts, fmt.Sprintf("%s %s %s", joinAnd(versions[v]), verb, v))
		}
		add(reasonVersions, minority(versions), "nodes run different server versions: %s", strings.Join(parts, ", "))
	}

	// Certificates.
	for _, n := range c.Nodes {
		if n.CertNotAfter == nil {
			continue
		}
		days := certDays(*n.CertNotAfter, c.Now)
		date := n.CertNotAfter.UTC().Format(time.DateOnly)
		switch {
		case !c.Now.Before(*n.CertNotAfter):
			add(reasonCert, []string{n.Host}, "the TLS certificate of %s expired on %s", n.Host, date)
		case days < certWarnDays:
			add(reasonCert, []string{n.Host}, "the TLS certificate of %s expires within %d days: in %s (%s)", n.Host, certWarnDays, countDays(days), date)
		}
	}

	// A node that is not ready, when nothing above says why.
	if len(rs) == 0 {
		for _, n := range members {
			switch {
			case !n.Ready:
				add(reasonNotReady, []string{n.Host}, "%s is not ready for reads", n.Host)
			case !n.ReadyWrite:
				add(reasonNotReady, []string{n.Host}, "%s is not ready for writes", n.Host)
			}
		}
	}
	return rs
}

// certDays is the whole days from now until notAfter (negative once expired).
func certDays(notAfter, now time.Time) int {
	d := notAfter.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days--
	}
	return days
}

// hostCondition says what SSH found on h, for a node seen down.
func hostCondition(h nodeState) string {
	if !h.SSH {
		return fmt.Sprintf("%s does not answer SSH either (%s)", h.Host, h.SSHError)
	}
	return serviceCondition(h)
}

// serviceCondition says the state of h's service.
func serviceCondition(h nodeState) string {
	if h.ServiceState == "" {
		return fmt.Sprintf("the state of %s is unknown (%s)", h.Service, orUnknown(h.ServiceError))
	}
	return fmt.Sprintf("%s is %s on %s", h.Service, h.ServiceState, h.Host)
}

// caName names the CA pool that verifies a node's certificate.
func caName(caFile string) string {
	if caFile == "" {
		return "the system's CA certificates (no kms_ca_file)"
	}
	return "kms_ca_file " + caFile
}

func orUnknown(s string) string {
	if s == "" {
		return "no error given"
	}
	return s
}

// byHost returns the node of host name.
func byHost(nodes []nodeState, name string) *nodeState {
	for i := range nodes {
		if nodes[i].Host == name {
			return &nodes[i]
		}
	}
	return &nodeState{}
}

func hostNames(nodes []nodeState) []string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Host
	}
	return names
}

// memberList is a cluster definition in words: "nodes 0 (a:7373), 1 (b:7373)".
func memberList(ms []member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%d (%s)", m.ID, m.Endpoint))
	}
	return "nodes " + strings.Join(parts, ", ")
}

// minority returns the hosts of the smaller groups of by (all of them on a
// tie): the odd ones out.
func minority(by map[string][]string) []string {
	most := 0
	for _, hs := range by {
		most = max(most, len(hs))
	}
	tie := 0
	for _, hs := range by {
		if len(hs) == most {
			tie++
		}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(by)) {
		if len(by[k]) < most || tie > 1 {
			out = append(out, by[k]...)
		}
	}
	slices.Sort(out)
	return out
}

// sortedByCount returns by's keys, the largest group first, then by the
// group's first host.
func sortedByCount(by map[string][]string) []string {
	keys := slices.Sorted(maps.Keys(by))
	slices.SortStableFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(by[b]), len(by[a])), cmp.Compare(slices.Min(by[a]), slices.Min(by[b])))
	})
	return keys
}

// joinAnd joins names as "a", "a and b", "a, b and c".
func joinAnd(names []string) string {
	switch len(names) {
	case 0:
		return "no node"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func seeVerb(names []string) string {
	if len(names) == 1 {
		return "sees"
	}
	return "see"
}

func hasVerb(names []string) string {
	if len(names) == 1 {
		return "has"
	}
	return "have"
}

func countNodes(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

func countDays(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}
