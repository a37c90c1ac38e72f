package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/kms/pb"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenFrames are the worked byte examples of docs/protocol.md §4.4.
var goldenFrames = []struct {
	name string
	id   Command
	msg  proto.Message
	hex  string
}{
	{"CLUSTER:STATUS", ClusterStatus, &pb.ClusterStatusRequest{}, "0003 00000000"},
	{"CLUSTER:EDIT remove 2", ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{2}}, "0004 00000003 120102"},
	{"CLUSTER:ADDNODE 10.1.2.3:7373", ClusterAddNode, &pb.AddClusterNodeRequest{Host: "10.1.2.3:7373"},
		"0001 0000000f 0a0d" + hex.EncodeToString([]byte("10.1.2.3:7373"))},
	{"ENCLAVE:LIST limit 100", EnclaveList, &pb.ListRequest{Limit: 100}, "0068 00000002 1864"},
}

func TestGoldenEncode(t *testing.T) {
	for _, g := range goldenFrames {
		t.Run(g.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Encode(&buf, g.id, g.msg); err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, g.hex); !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("Encode = % x, want % x", buf.Bytes(), want)
			}
		})
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, g := range goldenFrames {
		t.Run(g.name, func(t *testing.T) {
			d := NewDecoder(bytes.NewReader(unhex(t, g.hex)), 0)
			got := g.msg.ProtoReflect().New().Interface()
			if err := d.Decode(g.id, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, g.msg) {
				t.Fatalf("Decode = %v, want %v", got, g.msg)
			}
			if err := d.End(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeUnpackedRemoveIDs(t *testing.T) {
	// Field 2 as an unpacked varint (wire type 0): 0x10 0x02.
	d := NewDecoder(bytes.NewReader(unhex(t, "0004 00000002 1002")), 0)
	var m pb.EditClusterRequest
	if err := d.Decode(ClusterEdit, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.RemoveIDs) != 1 || m.RemoveIDs[0] != 2 {
		t.Fatalf("RemoveIDs = %v, want [2]", m.RemoveIDs)
	}
}

func TestDecoderErrors(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want error
	}{
		{"truncated header", "0003 0000", ErrTruncatedFrame},
		{"truncated payload", "0004 00000003 1201", ErrTruncatedFrame},
		{"too large", "0003 00100001", ErrFrameTooLarge},
		{"wrong command", "0004 00000000", ErrUnexpectedCommand},
		{"empty body", "", ErrMissingFrame},
		{"garbage protobuf", "0003 00000002 ffff", ErrInvalidMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(bytes.NewReader(unhex(t, tt.hex)), 1<<20)
			err := d.Decode(ClusterStatus, &pb.ClusterStatusResponse{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecoderTrailingData(t *testing.T) {
	d := NewDecoder(bytes.NewReader(unhex(t, "0003 00000000 00")), 0)
	if err := d.Decode(ClusterStatus, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.End(); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("End = %v, want ErrTrailingData", err)
	}
}

func TestDecoderNextEOF(t *testing.T) {
	body := unhex(t, "0003 00000000 00cc 00000001 aa")
	d := NewDecoder(bytes.NewReader(body), 0)
	f1, err := d.Next()
	if err != nil || f1.Command != ClusterStatus || len(f1.Payload) != 0 {
		t.Fatalf("Next = %v, %v", f1, err)
	}
	f2, err := d.Next()
	if err != nil || f2.Command != KeyStatus || !bytes.Equal(f2.Payload, []byte{0xaa}) {
		t.Fatalf("Next = %v, %v", f2, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("Next at end = %v, want io.EOF", err)
	}
}

func TestAppendFrameBatch(t *testing.T) {
	var b []byte
	var err error
	for _, name := range []string{"a", "b"} {
		if b, err = AppendFrame(b, KeyStatus, &pb.KeyStatusRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	want := unhex(t, "00cc 00000003 0a0161 00cc 00000003 0a0162")
	if !bytes.Equal(b, want) {
		t.Fatalf("AppendFrame = % x, want % x", b, want)
	}
}

// FuzzDecodeFrames checks that the decoder never panics or over-allocates and
// that every body it accepts re-encodes to exactly the same bytes.
func FuzzDecodeFrames(f *testing.F) {
	for _, g := range goldenFrames {
		f.Add(unhex(f, g.hex))
	}
	f.Add(unhex(f, "0003 0000"))
	f.Add(unhex(f, "0003 ffffffff"))
	f.Add(unhex(f, "0003 00000000 0004 00000003 120102"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 12
		d := NewDecoder(bytes.NewReader(data), limit)
		var out []byte
		for {
			fr, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrTruncatedFrame) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(fr.Payload) > limit {
				t.Fatalf("payload of %d bytes exceeds limit", len(fr.Payload))
			}
			out = append(out, byte(fr.Command>>8), byte(fr.Command), 0, 0, 0, 0)
			n := len(fr.Payload)
			out[len(out)-4], out[len(out)-3], out[len(out)-2], out[len(out)-1] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			out = append(out, fr.Payload...)
			// Decoding the payload as any message must not panic.
			_ = proto.Unmarshal(fr.Payload, &pb.ServerStatusResponse{})
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("re-encoded % x, input % x", out, data)
		}
	})
}
