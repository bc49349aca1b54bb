package wire

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "roomcast/proto/roomcast/v1"
)

// Framing errors. After ErrTruncatedLength, ErrLengthPastMessage or
// ErrFrameTooBig the rest of the WebSocket message cannot be trusted and is
// dropped; after an ErrUnparsable frame decoding goes on with the next one
// (its length was sound).
var (
	ErrTruncatedLength   = errors.New("truncated length varint")
	ErrLengthPastMessage = errors.New("frame length past the end of the message")
	ErrFrameTooBig       = errors.New("frame over the size limit")
	ErrUnparsable        = errors.New("frame does not parse")
)

// AppendFrame appends f to b, prefixed by its length as a varint.
func AppendFrame(b []byte, f *pb.Frame) ([]byte, error) {
	n := proto.Size(f)
	b = protowire.AppendVarint(b, uint64(n))
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, f)
	if err != nil {
		return b, fmt.Errorf("wire: marshal frame: %w", err)
	}
	return out, nil
}

// Decoder reads the Frames of one WebSocket binary message in order.
type Decoder struct {
	data []byte
	max  int
	done bool
}

// NewDecoder returns a decoder over data; frames longer than max bytes are
// refused (ErrFrameTooBig; max ≤ 0 means no limit besides the message).
func NewDecoder(data []byte, max int) *Decoder { return &Decoder{data: data, max: max} }

// Next decodes the next frame into f. It returns false when the message is
// exhausted or after a framing error, which it returns (wrapping one of the
// Err values); an ErrUnparsable error leaves the decoder usable, and Next
// may be called again.
func (d *Decoder) Next(f *pb.Frame) (bool, error) {
	if d.done || len(d.data) == 0 {
		return false, nil
	}
	n, k := protowire.ConsumeVarint(d.data)
	if k < 0 {
		d.done = true
		return false, ErrTruncatedLength
	}
	switch {
	case d.max > 0 && n > uint64(d.max):
		d.done = true
		return false, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooBig, n, d.max)
	case n > uint64(len(d.data)-k):
		d.done = true
		return false, fmt.Errorf("%w: %d bytes, %d left", ErrLengthPastMessage, n, len(d.data)-k)
	}
	body := d.data[k : k+int(n)]
	d.data = d.data[k+int(n):]
	f.Reset()
	if err := proto.Unmarshal(body, f); err != nil {
		return true, fmt.Errorf("%w: %v", ErrUnparsable, err)
	}
	return true, nil
}

// Recoverable reports whether decoding may continue after err (a frame that
// did not parse, whose length was sound).
func Recoverable(err error) bool { return errors.Is(err, ErrUnparsable) }
