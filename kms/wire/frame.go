package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/proto"
)

// HeaderSize is the size of a frame header: a big-endian uint16 command id
// followed by a big-endian uint32 payload length.
const HeaderSize = 6

// DefaultMaxFrameSize is the payload size limit a Decoder uses when given 0.
const DefaultMaxFrameSize = 1 << 20

// Frame decoding errors. Decoder errors wrap one of them.
var (
	// ErrTruncatedFrame: the body ends inside a frame header or payload.
	ErrTruncatedFrame = errors.New("truncated frame")
	// ErrFrameTooLarge: a frame's payload length exceeds the size limit.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrTrailingData: bytes follow the last expected frame.
	ErrTrailingData = errors.New("trailing data after last frame")
	// ErrMissingFrame: the body ends before an expected frame.
	ErrMissingFrame = errors.New("missing frame")
	// ErrUnexpectedCommand: a frame carries another command id than expected.
	ErrUnexpectedCommand = errors.New("unexpected command id")
	// ErrInvalidMessage: a frame's payload is not a valid protobuf message.
	ErrInvalidMessage = errors.New("invalid protobuf message")
)

// marshal is the protobuf encoding used for frames: deterministic, so that
// equal messages (with maps) encode to equal bytes.
var marshal = proto.MarshalOptions{Deterministic: true}

// AppendFrame appends the frame [id][len][protobuf(msg)] to b. A nil msg
// gives an empty payload.
func AppendFrame(b []byte, id Command, msg proto.Message) ([]byte, error) {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, uint16(id))
	b = append(b, 0, 0, 0, 0)
	if msg != nil {
		var err error
		if b, err = marshal.MarshalAppend(b, msg); err != nil {
			return nil, fmt.Errorf("encode %s frame: %w", id, err)
		}
	}
	n := len(b) - start - HeaderSize
	if uint64(n) > math.MaxUint32 {
		return nil, fmt.Errorf("encode %s frame: %w (%d bytes)", id, ErrFrameTooLarge, n)
	}
	binary.BigEndian.PutUint32(b[start+2:], uint32(n))
	return b, nil
}

// Encode writes one frame for id and msg to w in a single Write.
func Encode(w io.Writer, id Command, msg proto.Message) error {
	b, err := AppendFrame(nil, id, msg)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write %s frame: %w", id, err)
	}
	return nil
}

// Frame is one decoded frame: a command id and its raw protobuf payload.
type Frame struct {
	Command Command
	Payload []byte
}

// Decoder reads frames from a body. It never allocates more than its size
// limit for one frame.
type Decoder struct {
	r   io.Reader
	max uint32
	n   int // frames read
}

// NewDecoder returns a Decoder reading from r that refuses payloads larger
// than maxFrameSize bytes (DefaultMaxFrameSize if maxFrameSize <= 0).
func NewDecoder(r io.Reader, maxFrameSize int) *Decoder {
	limit := uint32(DefaultMaxFrameSize)
	if maxFrameSize > 0 && uint64(maxFrameSize) <= math.MaxUint32 {
		limit = uint32(maxFrameSize)
	}
	return &Decoder{r: r, max: limit}
}

// Next reads the next frame. It returns io.EOF (unwrapped) when the body ends
// cleanly between frames, and an error wrapping ErrTruncatedFrame or
// ErrFrameTooLarge for a malformed body.
func (d *Decoder) Next() (Frame, error) {
	var hdr [HeaderSize]byte
	n, err := io.ReadFull(d.r, hdr[:])
	switch {
	case err == io.EOF:
		return Frame{}, io.EOF
	case err == io.ErrUnexpectedEOF:
		return Frame{}, fmt.Errorf("read frame %d: %w (header has %d of %d bytes)", d.n+1, ErrTruncatedFrame, n, HeaderSize)
	case err != nil:
		return Frame{}, fmt.Errorf("read frame %d: %w", d.n+1, err)
	}
	id := Command(binary.BigEndian.Uint16(hdr[0:2]))
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size > d.max {
		return Frame{}, fmt.Errorf("read frame %d (%s): %w (%d bytes, limit %d)", d.n+1, id, ErrFrameTooLarge, size, d.max)
	}
	payload := make([]byte, size)
	if n, err := io.ReadFull(d.r, payload); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Frame{}, fmt.Errorf("read frame %d (%s): %w (payload has %d of %d bytes)", d.n+1, id, ErrTruncatedFrame, n, size)
		}
		return Frame{}, fmt.Errorf("read frame %d (%s): %w", d.n+1, id, err)
	}
	d.n++
	return Frame{Command: id, Payload: payload}, nil
}

// Decode reads the next frame, checks that it carries the command id want
// and unmarshals its payload into msg (which may be nil to skip the payload).
func (d *Decoder) Decode(want Command, msg proto.Message) error {
	f, err := d.Next()
	if err == io.EOF {
		return fmt.Errorf("read %s frame: %w", want, ErrMissingFrame)
	}
	if err != nil {
		return err
	}
	if f.Command != want {
		return fmt.Errorf("read %s frame: %w: received %s", want, ErrUnexpectedCommand, f.Command)
	}
	if msg == nil {
		return nil
	}
	if err := proto.Unmarshal(f.Payload, msg); err != nil {
		return fmt.Errorf("decode %s frame: %w: %v", want, ErrInvalidMessage, err)
	}
	return nil
}

// End checks that the body has no bytes left; it returns an error wrapping
// ErrTrailingData if it has.
func (d *Decoder) End() error {
	var b [1]byte
	for range 100 {
		n, err := d.r.Read(b[:])
		if n > 0 {
			return fmt.Errorf("after %d frames: %w", d.n, ErrTrailingData)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("after %d frames: %w", d.n, err)
		}
	}
	return fmt.Errorf("after %d frames: %w", d.n, io.ErrNoProgress)
}
