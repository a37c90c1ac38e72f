package wire

import (
	"bytes"
	"testing"

	"github.com/kmsctl/kmsctl/kms/pb"
)

// BenchmarkStatusFrameRoundTrip encodes and decodes a five-node
// CLUSTER:STATUS response frame.
func BenchmarkStatusFrameRoundTrip(b *testing.B) {
	resp := &pb.ClusterStatusResponse{NodesUp: map[uint32]*pb.ServerStatusResponse{}}
	nodes := map[uint32]string{0: "km0:7373", 1: "km1:7373", 2: "km2:7373", 3: "km3:7373", 4: "km4:7373"}
	for id := range uint32(5) {
		resp.NodesUp[id] = &pb.ServerStatusResponse{ID: id, Role: "Follower", LeaderID: 0, Commit: 12345, Nodes: nodes, Version: "2026-01-01T00-00-00Z"}
	}
	frame, err := AppendFrame(nil, ClusterStatus, resp)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		buf, err := AppendFrame(nil, ClusterStatus, resp)
		if err != nil {
			b.Fatal(err)
		}
		d := NewDecoder(bytes.NewReader(buf), 0)
		var out pb.ClusterStatusResponse
		if err := d.Decode(ClusterStatus, &out); err != nil {
			b.Fatal(err)
		}
		if err := d.End(); err != nil {
			b.Fatal(err)
		}
	}
}
