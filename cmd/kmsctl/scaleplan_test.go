package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// scaleNode is a node of a scale test cluster: answering as id with the members given (by
// host name, IDs in order), commit, seeing down; id < 0 = its API silent.
func scaleNode(host string, id int, members []string, down []int, commit int) nodeState {
	n := nodeState{Host: host, Endpoint: host + ":7373", Service: "minkms.service", SSH: true, ServiceState: "inactive", HSMFingerprint: "sha256:a"}
	if id < 0 {
		return n
	}
	n.ServiceState, n.Live, n.Ready, n.ReadyWrite = "active", true, true, len(down) == 0
	v := &nodeView{ID: id, Role: "Follower", Leader: 0, Commit: commit, Down: append([]int{}, down...)}
	for i, m := range members {
		v.Members = append(v.Members, member{ID: i, Endpoint: m + ":7373"})
	}
	n.View = v
	return n
}

// TestPlanScale holds scale add's and scale remove's rules: what runs, and each refusal.
func TestPlanScale(t *testing.T) {
	three := []string{"kms1", "kms2", "kms3"}
	two := []string{"kms1", "kms2"}
	healthy2 := []nodeState{scaleNode("kms1", 0, two, nil, 9), scaleNode("kms2", 1, two, nil, 9)}
	with := func(nodes []nodeState, n nodeState) []nodeState { return append(slices.Clone(nodes), n) }
	silent := scaleNode("kms3", -1, nil, nil, 0)
	cases := []struct {
		name     string
		op       string
		nodes    []nodeState
		opFP     string
		phases   string // joined; "" with want: a refusal
		provided bool   // add: provision runs
		done     string
		want     string // refusal text
	}{
		{"add a stopped host", "add", with(healthy2, silent), "sha256:a", "start,add,wait,prove", true, "", ""},
		{"add a clean running node as it is", "add", with(healthy2, scaleNode("kms3", 0, []string{"kms3"}, nil, 0)), "sha256:a", "add,wait,prove", false, "", ""},
		{"add a member", "add", []nodeState{scaleNode("kms1", 0, three, nil, 9), scaleNode("kms2", 1, three, nil, 9), scaleNode("kms3", 2, three, nil, 9)}, "sha256:a", "", false, "kms3 is already a member (node 2", ""},
		{"add a member that is down", "add", []nodeState{scaleNode("kms1", 0, three, []int{2}, 9), scaleNode("kms2", 1, three, []int{2}, 9), silent}, "sha256:a", "", false, "", "kms3 is a member (node 2) that does not answer as such"},
		{"add a node holding state", "add", with(healthy2, scaleNode("kms3", 0, []string{"kms3"}, nil, 4)), "sha256:a", "", false, "", "kms3 runs a Key Manager holding state"},
		{"add a wedged node", "add", with(healthy2, func() nodeState { n := silent; n.ServiceState = "active"; return n }()), "sha256:a", "", false, "", "minkms.service is active on kms3 although its API does not answer"},
		{"add with another HSM key", "add", with(healthy2, silent), "sha256:b", "", false, "", "the HSM key kmsctl would install (sha256:b) is not the cluster's (sha256:a)"},
		{"add without the HSM key", "add", with(healthy2, silent), "", "", false, "", "the HSM key to install could not be read"},
		{"add when the members' keys differ", "add", with([]nodeState{healthy2[0], func() nodeState { n := healthy2[1]; n.HSMFingerprint = "sha256:c"; return n }()}, silent), "sha256:a", "", false, "", "the members' HSM keys differ"},
		{"add with a member down", "add", with([]nodeState{scaleNode("kms1", 0, two, []int{1}, 9), scaleNode("kms2", -1, nil, nil, 0)}, silent), "sha256:a", "", false, "", "no member is ready for writes with every member up"},
		{"add a stopped host with state in its storage path", "add", with(healthy2, silent), "sha256:a", "", false, "", "the storage path (kms_storage_path) of kms3 is not empty (it holds /mnt/minio-kms/db)"},
		{"add with no member", "add", []nodeState{scaleNode("kms1", -1, nil, nil, 0), silent}, "sha256:a", "", false, "", "no member of the cluster other than kms3 answers"},

		{"remove a healthy member", "remove", []nodeState{scaleNode("kms1", 0, three, nil, 9), scaleNode("kms2", 1, three, nil, 9), scaleNode("kms3", 2, three, nil, 9)}, "", "remove,confirm,stop,teardown,wait", false, "", ""},
		{"remove a node no longer a member", "remove", with(healthy2, silent), "", "teardown", false, "kms3 is not a member of the cluster", ""},
		{"remove a node back on its own, clean", "remove", with(healthy2, scaleNode("kms3", 0, []string{"kms3"}, nil, 0)), "", "stop,teardown", false, "kms3 is not a member", ""},
		{"remove a node of another cluster", "remove", with(healthy2, scaleNode("kms3", 0, []string{"kms3", "kms9"}, nil, 7)), "", "", false, "", "runs a Key Manager holding state"},
		{"remove a dead member", "remove", []nodeState{scaleNode("kms1", 0, three, []int{2}, 9), scaleNode("kms2", 1, three, []int{2}, 9), silent}, "", "", false, "", "kms3 (node 2) does not answer as that member"},
		{"remove while another member is down", "remove", []nodeState{scaleNode("kms1", 0, three, []int{1}, 9), scaleNode("kms2", -1, nil, nil, 0), scaleNode("kms3", 2, three, []int{1}, 9)}, "", "", false, "", "no member is ready for writes with every member up"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := scaleInput{Nodes: c.nodes, Target: "kms3", OperatorFP: c.opFP}
			if strings.Contains(c.name, "state in its storage path") {
				in.Storage = map[string]string{"kms3": "/mnt/minio-kms/db"}
			}
			if c.opFP == "" {
				in.OperatorErr = "no key"
			}
			plan, err := planScaleAdd(in)
			if c.op == "remove" {
				plan, err = planScaleRemove(in)
			}
			var ref refusal
			switch {
			case c.want != "":
				if !errors.As(err, &ref) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("err = %v, want a refusal saying %q", err, c.want)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if got := strings.Join(plan.Phases, ","); got != c.phases || plan.Provision != c.provided || !strings.Contains(plan.Done, c.done) {
					t.Errorf("plan %+v: phases %q, provision %v, done %q; want %q, %v, %q", plan, got, plan.Provision, plan.Done, c.phases, c.provided, c.done)
				}
				if plan.Via == "kms3" {
					t.Errorf("the change goes through the target: %+v", plan)
				}
				if slices.Contains(plan.Members, "kms3") {
					t.Errorf("members %v include the target", plan.Members)
				}
			}
		})
	}
	in := scaleInput{Nodes: with(healthy2, nodeState{Host: "kms3", Endpoint: "kms3:7373", SSHError: "connection refused"}), Target: "kms3", OperatorFP: "sha256:a"}
	for _, plan := range []func(scaleInput) (scalePlan, error){planScaleAdd, planScaleRemove} {
		var un unreachableTarget
		if _, err := plan(in); !errors.As(err, &un) {
			t.Errorf("a target without SSH: %v, want unreachable", err)
		}
	}
}
