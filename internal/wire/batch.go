package wire

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"roomcast/internal/message"
	pb "roomcast/proto/roomcast/v1"
)

// Message converts m into the schema's Message: the same fields as its JSON
// envelope, typed (a function message's data stays its JSON object).
func Message(m *message.Message) *pb.Message {
	out := &pb.Message{Seq: int64(m.Seq), Id: valid(m.ID), Room: valid(m.Room), Kind: valid(string(m.Kind)),
		Scope: valid(string(m.Scope)), Text: valid(m.Text), Priority: float64(m.Priority), Ts: m.TS,
		To: valid(m.To), Ref: valid(m.Ref)}
	if m.User != nil {
		out.User = &pb.User{Id: valid(m.User.ID), Name: valid(m.User.Name), Level: int32(m.User.Level)}
	}
	if m.Gift != nil {
		out.Gift = &pb.Gift{Id: valid(m.Gift.ID), Count: int32(m.Gift.Count), ValueCents: m.Gift.ValueCents,
			Name: valid(m.Gift.Name)}
	}
	if m.VideoMS != nil {
		out.VideoMs = proto.Int64(*m.VideoMS)
	}
	if len(m.Data) > 0 && json.Valid(m.Data) { // as the JSON encoding does
		out.Data = m.Data
	}
	return out
}

// valid returns s with invalid UTF-8 replaced by U+FFFD, as the JSON
// encoding does (protobuf strings must be UTF-8, or marshalling fails).
func valid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// BatchContent is what a type 2 NOTIFY says.
type BatchContent struct {
	Room     string
	Messages []*message.Message
	Cursor   uint64
	Reset    bool
	// Online and Likes are set (≥ 0) on count updates; -1 leaves them out.
	Online, Likes int64
	// Move is the node a client of a placed room should reconnect to next
	// time (R14; first batches only).
	Move string
	// Epoch names the timeline the cursor belongs to (issue 8); "" for none.
	Epoch string
}

// AppendBatch appends the length-prefixed type 2 NOTIFY frame of c to b:
// Frame{type: 2, kind: NOTIFY, body: Batch}.
func AppendBatch(b []byte, c BatchContent) []byte {
	return appendLen(b, func(b []byte) []byte {
		b = append(b, 0x08, 0x04, 0x10, 0x02) // type 2 (sint32: zigzag 4), kind NOTIFY (2)
		return appendSub(b, 8, func(b []byte) []byte { return appendBatchBody(b, c) })
	})
}

// BatchMessage is c as the generated Batch (what AppendBatch encodes).
func BatchMessage(c BatchContent) *pb.Batch {
	batch := &pb.Batch{Room: valid(c.Room), Cursor: int64(c.Cursor), Reset_: c.Reset, Move: valid(c.Move),
		Epoch: valid(c.Epoch), Messages: make([]*pb.Message, len(c.Messages))}
	for i, m := range c.Messages {
		batch.Messages[i] = Message(m)
	}
	if c.Online >= 0 {
		batch.Online = proto.Int64(c.Online)
	}
	if c.Likes >= 0 {
		batch.Likes = proto.Int64(c.Likes)
	}
	return batch
}
