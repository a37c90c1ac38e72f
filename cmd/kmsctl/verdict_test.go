package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)

// healthyNodes is a healthy three-node cluster kms1..kms3 (node IDs 0..2,
// leader 0) whose certificates expire in 84 days.
func healthyNodes() []nodeState {
	members := []member{{0, "kms1:7373"}, {1, "kms2:7373"}, {2, "kms3:7373"}}
	var out []nodeState
	for i, h := range []string{"kms1", "kms2", "kms3"} {
		role := "Follower"
		if i == 0 {
			role = "Leader"
		}
		na := testNow.Add(84*24*time.Hour + time.Hour)
		out = append(out, nodeState{
			Host: h, Endpoint: h + ":7373", Service: "minkms.service", SSH: true, ServiceState: "active",
			Live: true, Ready: true, ReadyWrite: true, Version: "2025-11-12T19-14-51Z", CertNotAfter: &na,
			HSMFingerprint: "sha256:3f9c",
			View:           &nodeView{ID: i, Role: role, Leader: 0, Commit: 1042, Members: slices.Clone(members), Down: []int{}},
		})
	}
	return out
}

// down makes host i down: no SSH, no API; the others see it down.
func down(nodes []nodeState, i int) []nodeState {
	id := nodes[i].View.ID
	nodes[i] = nodeState{Host: nodes[i].Host, Endpoint: nodes[i].Endpoint, Service: nodes[i].Service, SSHError: "dial tcp: connection refused"}
	for j := range nodes {
		if v := nodes[j].View; v != nil {
			v.Down = append(v.Down, id)
			nodes[j].ReadyWrite = false
		}
	}
	return nodes
}

func TestVerdict(t *testing.T) {
	cases := []struct {
		name   string
		change func([]nodeState) []nodeState
		// want is one substring per reason, in order, and the nodes each
		// names; none for a healthy cluster.
		want  []string
		nodes [][]string
		kinds []string
	}{
		{name: "healthy", change: func(n []nodeState) []nodeState { return n }},
		{
			name:   "a node down, no SSH",
			change: func(n []nodeState) []nodeState { return down(n, 2) },
			want:   []string{"node 2 (kms3:7373) is down as seen by kms1 and kms2; kms3 does not answer SSH either (dial tcp: connection refused)"},
			nodes:  [][]string{{"kms3"}}, kinds: []string{reasonDown},
		},
		{
			name: "a node down, service inactive",
			change: func(n []nodeState) []nodeState {
				n[2].View, n[2].Live, n[2].Ready, n[2].ReadyWrite, n[2].Version, n[2].CertNotAfter = nil, false, false, false, "", nil
				n[2].ServiceState, n[2].APIError = "inactive", "dial tcp 127.0.0.1:7373: connection refused"
				n[0].View.Down, n[1].View.Down = []int{2}, []int{2}
				return n
			},
			want:  []string{"node 2 (kms3:7373) is down as seen by kms1 and kms2; minkms.service is inactive on kms3"},
			nodes: [][]string{{"kms3"}}, kinds: []string{reasonDown},
		},
		{
			name: "seen down by one member only",
			change: func(n []nodeState) []nodeState {
				n[1].View.Down = []int{2}
				return n
			},
			want:  []string{"node 2 (kms3:7373) is down as seen by kms2; minkms.service is active on kms3"},
			nodes: [][]string{{"kms3"}},
		},
		{
			name: "SSH unreachable but the API answers",
			change: func(n []nodeState) []nodeState {
				n[1].SSH, n[1].SSHError, n[1].ServiceState, n[1].HSMFingerprint = false, "i/o timeout", "", ""
				return n
			},
			want:  []string{"kms2 does not answer SSH: i/o timeout"},
			nodes: [][]string{{"kms2"}}, kinds: []string{reasonUnreachable},
		},
		{
			name: "API not answering, nobody sees it down",
			change: func(n []nodeState) []nodeState {
				n[1].View, n[1].Live, n[1].Ready, n[1].ReadyWrite, n[1].Version, n[1].CertNotAfter = nil, false, false, false, "", nil
				n[1].APIError = "context deadline exceeded"
				return n
			},
			want:  []string{"the Key Manager API of kms2 (kms2:7373) gave no status: context deadline exceeded; minkms.service is active on kms2"},
			nodes: [][]string{{"kms2"}}, kinds: []string{reasonAPI},
		},
		{
			name: "a node whose ID was removed, service inactive",
			change: func(n []nodeState) []nodeState {
				n[2].View, n[2].Live, n[2].Ready, n[2].ReadyWrite, n[2].Version, n[2].CertNotAfter = nil, false, false, false, "", nil
				n[2].ServiceState, n[2].APIError = "inactive", "connection refused"
				for _, m := range n[:2] {
					m.View.Members = slices.DeleteFunc(slices.Clone(m.View.Members), func(mm member) bool { return mm.ID == 2 })
				}
				return n
			},
			want: []string{"the Key Manager API of kms3 (kms3:7373) gave no status: connection refused; minkms.service is inactive on kms3; " +
				"no member lists kms3:7373: its node ID was removed, so it is not in the cluster until it is rebuilt and added"},
			nodes: [][]string{{"kms3"}}, kinds: []string{reasonNotMember},
		},
		{
			name: "service failed although the API answers",
			change: func(n []nodeState) []nodeState {
				n[0].ServiceState = "failed"
				return n
			},
			want:  []string{"minkms.service is failed on kms1, although its API answers"},
			nodes: [][]string{{"kms1"}}, kinds: []string{reasonService},
		},
		{
			name: "service state unknown",
			change: func(n []nodeState) []nodeState {
				n[0].ServiceState, n[0].ServiceError = "", "service minkms.service: unit not found on kms1"
				return n
			},
			want:  []string{"the state of minkms.service on kms1 is unknown: service minkms.service: unit not found on kms1"},
			nodes: [][]string{{"kms1"}},
		},
		{
			name: "removed while down, restarted with its old state",
			change: func(n []nodeState) []nodeState {
				keep := []member{{0, "kms1:7373"}, {1, "kms2:7373"}}
				n[0].View.Members, n[1].View.Members = keep, slices.Clone(keep)
				n[0].View.Commit, n[1].View.Commit = 1050, 1050
				n[2].View.Leader, n[2].View.Role, n[2].View.Down = -1, "Candidate", []int{0, 1}
				n[2].ReadyWrite = false
				return n
			},
			want:  []string{"kms3 (node 2) is not a member in the view of kms1 and kms2 but thinks it is"},
			nodes: [][]string{{"kms3"}}, kinds: []string{reasonNotMember},
		},
		{
			name: "a node running a cluster of its own",
			change: func(n []nodeState) []nodeState {
				keep := []member{{0, "kms1:7373"}, {1, "kms2:7373"}}
				n[0].View.Members, n[1].View.Members = keep, slices.Clone(keep)
				n[2].View = &nodeView{ID: 0, Role: "Leader", Leader: 0, Commit: 1, Members: []member{{0, "kms3:7373"}}, Down: []int{}}
				return n
			},
			want:  []string{"kms3 (node 0) is not a member in the view of kms1 and kms2: it runs a cluster of its own (1 node)"},
			nodes: [][]string{{"kms3"}},
		},
		{
			name: "members disagree about the leader",
			change: func(n []nodeState) []nodeState {
				n[2].View.Leader = 1
				return n
			},
			want:  []string{"members disagree about the leader: kms1 and kms2 see node 0, kms3 sees node 1"},
			nodes: [][]string{{"kms3"}}, kinds: []string{reasonLeader},
		},
		{
			name: "no leader",
			change: func(n []nodeState) []nodeState {
				for i := range n {
					n[i].View.Leader, n[i].ReadyWrite = -1, false
				}
				return n
			},
			want:  []string{"kms1, kms2 and kms3 see no leader"},
			nodes: [][]string{{"kms1", "kms2", "kms3"}},
		},
		{
			name: "a member missing from the inventory",
			change: func(n []nodeState) []nodeState {
				for i := range n {
					n[i].View.Members = append(n[i].View.Members, member{3, "kms4:7373"})
				}
				return n
			},
			want:  []string{"node 3 (kms4:7373) is a member as seen by kms1, kms2 and kms3, but no host of group kms has kms_endpoint kms4:7373"},
			nodes: [][]string{{"kms4:7373"}}, kinds: []string{reasonNotInventory},
		},
		{
			name: "members disagree about the members",
			change: func(n []nodeState) []nodeState {
				n[0].View.Members = append(n[0].View.Members, member{3, "kms4:7373"})
				return n
			},
			want: []string{
				"members disagree about the cluster's members: kms2 and kms3 see nodes 0 (kms1:7373), 1 (kms2:7373), 2 (kms3:7373); kms1 sees nodes 0 (kms1:7373), 1 (kms2:7373), 2 (kms3:7373), 3 (kms4:7373)",
				"node 3 (kms4:7373) is a member as seen by kms1, but no host",
			},
			nodes: [][]string{{"kms1"}, {"kms4:7373"}}, kinds: []string{reasonMembers, reasonNotInventory},
		},
		{
			name: "HSM-key fingerprints differ",
			change: func(n []nodeState) []nodeState {
				n[1].HSMFingerprint = "sha256:0bad"
				return n
			},
			want:  []string{"HSM-key fingerprints differ: kms1 and kms3 have sha256:3f9c, kms2 has sha256:0bad"},
			nodes: [][]string{{"kms2"}}, kinds: []string{reasonHSM},
		},
		{
			name: "HSM key unreadable",
			change: func(n []nodeState) []nodeState {
				n[1].HSMFingerprint, n[1].HSMError = "", "read the HSM key from /etc/default/minkms: no MINIO_KMS_HSM_KEY in it"
				return n
			},
			want:  []string{"the HSM key of kms2 could not be checked: read the HSM key from /etc/default/minkms: no MINIO_KMS_HSM_KEY in it"},
			nodes: [][]string{{"kms2"}}, kinds: []string{reasonHSMUnknown},
		},
		{
			name: "different server versions",
			change: func(n []nodeState) []nodeState {
				n[0].Version = "2025-12-01T00-00-00Z"
				return n
			},
			want:  []string{"nodes run different server versions: kms2 and kms3 run 2025-11-12T19-14-51Z, kms1 runs 2025-12-01T00-00-00Z"},
			nodes: [][]string{{"kms1"}}, kinds: []string{reasonVersions},
		},
		{
			name: "a certificate expires within 30 days",
			change: func(n []nodeState) []nodeState {
				na := testNow.Add(12*24*time.Hour + time.Hour)
				n[1].CertNotAfter = &na
				return n
			},
			want:  []string{"the TLS certificate of kms2 expires within 30 days: in 12 days (2026-12-14)"},
			nodes: [][]string{{"kms2"}}, kinds: []string{reasonCert},
		},
		{
			name: "a certificate expires in 30 days: healthy",
			change: func(n []nodeState) []nodeState {
				na := testNow.Add(30*24*time.Hour + time.Minute)
				n[1].CertNotAfter = &na
				return n
			},
		},
		{
			name: "an expired certificate",
			change: func(n []nodeState) []nodeState {
				na := testNow.Add(-time.Hour)
				n[2].CertNotAfter = &na
				return n
			},
			want:  []string{"the TLS certificate of kms3 expired on 2026-12-02"},
			nodes: [][]string{{"kms3"}},
		},
		{
			name: "not ready for writes, nothing else wrong",
			change: func(n []nodeState) []nodeState {
				n[1].ReadyWrite = false
				return n
			},
			want:  []string{"kms2 is not ready for writes"},
			nodes: [][]string{{"kms2"}}, kinds: []string{reasonNotReady},
		},
		{
			name: "no node answers",
			change: func(n []nodeState) []nodeState {
				for i := range n {
					n[i] = nodeState{Host: n[i].Host, Endpoint: n[i].Endpoint, SSHError: "connection refused"}
				}
				return n
			},
			want:  []string{"no node of group kms answers, over SSH or its Key Manager API (kms1: connection refused; kms2: connection refused; kms3: connection refused)"},
			nodes: [][]string{{"kms1", "kms2", "kms3"}}, kinds: []string{reasonNoAnswer},
		},
		{
			name: "no node answers, host keys refused: each says why and how to accept the new key",
			change: func(n []nodeState) []nodeState {
				for i := range n {
					n[i] = nodeState{Host: n[i].Host, Endpoint: n[i].Endpoint}
				}
				n[0].SSHError = "host key for kms1 is SHA256:new, not the one known: run again with --expect-host-key kms1=SHA256:new"
				return n
			},
			want:  []string{"no node of group kms answers, over SSH or its Key Manager API (kms1: host key for kms1 is SHA256:new, not the one known: run again with --expect-host-key kms1=SHA256:new)"},
			nodes: [][]string{{"kms1", "kms2", "kms3"}}, kinds: []string{reasonNoAnswer},
		},
		{
			name: "two nodes down: each named, seen by the survivor",
			change: func(n []nodeState) []nodeState {
				return down(down(n, 1), 2)
			},
			want:  []string{"node 1 (kms2:7373) is down as seen by kms1", "node 2 (kms3:7373) is down as seen by kms1"},
			nodes: [][]string{{"kms2"}, {"kms3"}},
		},
		{
			name: "a down node outside the inventory",
			change: func(n []nodeState) []nodeState {
				for i := range n {
					n[i].View.Members = append(n[i].View.Members, member{3, "kms4:7373"})
					n[i].View.Down = []int{3}
				}
				return n
			},
			want:  []string{"node 3 (kms4:7373) is down as seen by kms1, kms2 and kms3", "node 3 (kms4:7373) is a member as seen by kms1, kms2 and kms3, but no host"},
			nodes: [][]string{{"kms4:7373"}, {"kms4:7373"}},
		},
		{
			name: "several things at once, in order",
			change: func(n []nodeState) []nodeState {
				n = down(n, 0)
				n[1].Version = "2025-12-01T00-00-00Z"
				n[2].HSMFingerprint = "sha256:0bad"
				return n
			},
			want:  []string{"node 0 (kms1:7373) is down as seen by kms2 and kms3", "HSM-key fingerprints differ: kms2 has sha256:3f9c, kms3 has sha256:0bad", "nodes run different server versions"},
			nodes: [][]string{{"kms1"}, {"kms2", "kms3"}, {"kms2", "kms3"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := verdict(cluster{Group: "kms", Nodes: c.change(healthyNodes()), Now: testNow})
			if len(got) != len(c.want) {
				t.Fatalf("verdict gave %d reasons, want %d:\n%s", len(got), len(c.want), reasonsText(got))
			}
			for i, r := range got {
				if !strings.Contains(r.Text, c.want[i]) {
					t.Errorf("reason %d = %q, want it to contain %q", i, r.Text, c.want[i])
				}
				if !slices.Equal(r.Nodes, c.nodes[i]) {
					t.Errorf("reason %d names %v, want %v", i, r.Nodes, c.nodes[i])
				}
				if i < len(c.kinds) && r.Kind != c.kinds[i] {
					t.Errorf("reason %d is of kind %s, want %s", i, r.Kind, c.kinds[i])
				}
			}
		})
	}
}

func reasonsText(rs []reason) string {
	b, _ := json.MarshalIndent(rs, "", "  ")
	return string(b)
}

func TestCertDays(t *testing.T) {
	for _, c := range []struct {
		left time.Duration
		want int
	}{
		{84*24*time.Hour + time.Hour, 84}, {23 * time.Hour, 0}, {-time.Hour, -1}, {-24 * time.Hour, -1}, {-25 * time.Hour, -2},
	} {
		if got := certDays(testNow.Add(c.left), testNow); got != c.want {
			t.Errorf("certDays(now%+v) = %d, want %d", c.left, got, c.want)
		}
	}
}

func TestStatusRow(t *testing.T) {
	n := down(healthyNodes(), 2)
	days := 84
	n[0].CertDays = &days
	if got := strings.Join(statusRow(n[0]), "|"); got != "kms1|kms1:7373|ok|active|ready|0|leader|0|1042|0 1 -2|2025-11-12T19-14-51Z|84d" {
		t.Errorf("row of a leader seeing node 2 down: %s", got)
	}
	if got := strings.Join(statusRow(n[2]), "|"); got != "kms3|kms3:7373|no|-|down|-|-|-|-|-|-|-" {
		t.Errorf("row of a node down: %s", got)
	}
}

// TestPrintStatus: the table and the verdict as a person reads them (the
// README's example).
func TestPrintStatus(t *testing.T) {
	n := down(healthyNodes(), 2)
	n[2].SSH, n[2].SSHError, n[2].ServiceState = true, "", "inactive"
	n[2].HSMFingerprint = "sha256:3f9c"
	c := cluster{Group: "kms", Nodes: n, Now: testNow}
	te := testEnv(t)
	o := options{Output: "text", Inventories: []string{"./inventory.yml"}}
	if err := printStatus(te.env, o, c, verdict(c), nil, nil); err != nil {
		t.Fatal(err)
	}
	want := `cluster kms (3 nodes, inventory ./inventory.yml)

NODE  ENDPOINT   SSH  SERVICE   API    ID  ROLE      LEADER  COMMIT  SEES    VERSION               CERT
kms1  kms1:7373  ok   active    ready  0   leader    0       1042    0 1 -2  2025-11-12T19-14-51Z  84d
kms2  kms2:7373  ok   active    ready  1   follower  0       1042    0 1 -2  2025-11-12T19-14-51Z  84d
kms3  kms3:7373  ok   inactive  down   -   -         -       -       -       -                     -

DEGRADED: node 2 (kms3:7373) is down as seen by kms1 and kms2; minkms.service is inactive on kms3.
  HSM key: same fingerprint on kms1, kms2 and kms3 (sha256:3f9c).
  Next: kmsctl recover node kms3
`
	if got := te.out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestNextCommand: recover node is proposed for nodes down or removed and
// running with their old state, in the inventory, the latter's service to
// be stopped first while its API answers; nothing for the others.
func TestNextCommand(t *testing.T) {
	n := down(healthyNodes(), 2) // kms3 answers neither SSH nor its API
	for _, c := range []struct {
		group   string
		reasons []reason
		want    string
	}{
		{"kms", []reason{{Kind: reasonDown, Nodes: []string{"kms3"}}}, "kmsctl recover node kms3"},
		{"eu", []reason{{Kind: reasonDown, Nodes: []string{"kms2"}}, {Kind: reasonNotMember, Nodes: []string{"kms3"}}, {Kind: reasonDown, Nodes: []string{"kms3"}}},
			"stop minkms.service on kms2 first (recover node refuses a node whose Key Manager still answers), then kmsctl recover node kms2 kms3 --cluster eu"},
		{"kms", []reason{{Kind: reasonDown, Nodes: []string{"kms4:7373"}}}, ""},
		{"kms", []reason{{Kind: reasonHSM, Nodes: []string{"kms2"}}, {Kind: reasonUnreachable, Nodes: []string{"kms1"}}}, ""},
	} {
		if got := nextCommand(cluster{Group: c.group, Nodes: n}, c.reasons); got != c.want {
			t.Errorf("nextCommand(%s, %+v) = %q, want %q", c.group, c.reasons, got, c.want)
		}
	}
	// A stale former member answers, and recover node rebuilds it as it is.
	stale := []reason{{Kind: reasonNotMember, Nodes: []string{"kms2"}}}
	if got, want := nextCommand(cluster{Group: "kms", Nodes: healthyNodes()}, stale), "kmsctl recover node kms2"; got != want {
		t.Errorf("nextCommand = %q, want %q", got, want)
	}
	// Nodes whose API does not answer: nothing to stop first.
	gone := down(down(healthyNodes(), 0), 2)
	reasons := []reason{{Kind: reasonDown, Nodes: []string{"kms1"}}, {Kind: reasonNotMember, Nodes: []string{"kms3"}}}
	if got, want := nextCommand(cluster{Group: "kms", Nodes: gone}, reasons), "kmsctl recover node kms1 kms3"; got != want {
		t.Errorf("nextCommand = %q, want %q", got, want)
	}
}
