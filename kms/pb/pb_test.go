package pb

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestLeaderIDZigzag(t *testing.T) {
	b, err := proto.Marshal(&ServerStatusResponse{LeaderID: -1})
	if err != nil {
		t.Fatal(err)
	}
	// Field 9, varint: tag 0x48, zigzag(-1) = 1.
	if want := []byte{0x48, 0x01}; !bytes.Equal(b, want) {
		t.Fatalf("LeaderID -1 = % x, want % x", b, want)
	}
}

func TestAbsentIDsAreZero(t *testing.T) {
	// A node-0 entry whose key and value are omitted: field 1, length 0.
	var m ClusterStatusResponse
	if err := proto.Unmarshal([]byte{0x0a, 0x00}, &m); err != nil {
		t.Fatal(err)
	}
	s, ok := m.NodesUp[0]
	if !ok || s == nil || s.ID != 0 || s.LeaderID != 0 {
		t.Fatalf("NodesUp = %v, want node 0 with zero status", m.NodesUp)
	}
}

func TestJSONNames(t *testing.T) {
	b, err := protojson.Marshal(&ServerStatusResponse{
		APIVersion: "v1", ID: 2, LeaderID: -1, UpTime: durationpb.New(time.Second),
		OS: "linux", HSMs: []string{"a"}, ConfiguredHSMs: []string{"b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"api_version", "node_id", "leader_id", "uptime", "sys_os", "hsm", "hsm_active"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON %s lacks key %q", b, k)
		}
	}
	v, err := protojson.Marshal(&VersionResponse{Version: "2024-03-26T17-52-38Z", Commit: "c", APIVersion: "v1", Host: "h", FIPS140: true})
	if err != nil {
		t.Fatal(err)
	}
	var vm map[string]any
	if err := json.Unmarshal(v, &vm); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "commit", "api_version", "host", "fips140"} {
		if _, ok := vm[k]; !ok {
			t.Errorf("VersionResponse JSON %s lacks key %q", v, k)
		}
	}
	if len(vm) != 5 {
		t.Errorf("VersionResponse JSON has %d keys, want 5", len(vm))
	}
}
