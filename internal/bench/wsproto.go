// wsproto.go: the protobuf encoding for `bench ws --format proto` (issue
// 11). Frames are decoded with the schema's generated types, as any client
// built from proto/roomcast/v1/roomcast.proto would, into the same
// frameInfo the JSON scanner fills, so every check and figure is the same
// for both encodings.

package bench

import (
	"errors"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "roomcast/proto/roomcast/v1"
)

// protoHeartbeat is the client heartbeat REQUEST (type -1), length-prefixed.
var protoHeartbeat = func() []byte {
	b, _ := proto.Marshal(&pb.Frame{Type: -1})
	return append(protowire.AppendVarint(nil, uint64(len(b))), b...)
}()

var errProtoFrame = errors.New("malformed protobuf frame")

// protoDecoder decodes server messages; its buffers are reused.
type protoDecoder struct {
	frame pb.Frame
	batch pb.Batch
}

// each calls fn with the frameInfo of every Frame of one binary message.
func (d *protoDecoder) each(p []byte, fi *frameInfo, fn func(*frameInfo)) error {
	for len(p) > 0 {
		n, k := protowire.ConsumeVarint(p)
		if k < 0 || n > uint64(len(p)-k) {
			return errProtoFrame
		}
		if err := proto.Unmarshal(p[k:k+int(n)], &d.frame); err != nil {
			return err
		}
		p = p[k+int(n):]
		if err := d.info(fi); err != nil {
			return err
		}
		fn(fi)
	}
	return nil
}

// info fills fi from d.frame.
func (d *protoDecoder) info(fi *frameInfo) error {
	fi.clear()
	f := &d.frame
	switch {
	case f.Kind == pb.Kind_NOTIFY && f.Type == 2:
		if err := proto.Unmarshal(f.Body, &d.batch); err != nil {
			return err
		}
		b := &d.batch
		if b.Online != nil || b.Likes != nil {
			fi.typ = frameOnline // a count update
			return nil
		}
		fi.typ, fi.cursor, fi.hasCursor, fi.reset = frameBatch, uint64(b.Cursor), true, b.Reset_
		for _, m := range b.Messages {
			mi := msgInfo{seq: uint64(m.Seq)}
			if t, ok := strings.CutPrefix(m.Text, benchMark); ok {
				if v, ok := parseUint(t); ok {
					mi.sent = int64(v)
				}
			}
			fi.msgs = append(fi.msgs, mi)
		}
	case f.Kind == pb.Kind_RESPONSE && f.Code != 0:
		fi.typ, fi.code = frameError, []byte(f.ErrorCode)
	case f.Kind == pb.Kind_RESPONSE && f.Type == -1:
		fi.typ = framePong
	default:
		fi.typ = frameOther
	}
	return nil
}
