package wire

import (
	"encoding/json"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"roomcast/internal/message"
)

// The batch encoder below writes the same bytes as proto.Marshal of the
// generated types (Message and AppendBatchGenerated in the tests check it,
// byte for byte), without building them: batches are encoded on the hot
// path, once per room per tick and for every new viewer's first batch, as
// the JSON encoding is hand-written for the same reason. Fields are written
// in field-number order and omitted at their default, as proto3 does.

// appendSub appends field num as a length-delimited field whose content fn
// appends (a sub-message), placing the length varint in front afterwards.
func appendSub(b []byte, num protowire.Number, fn func([]byte) []byte) []byte {
	if num > 0 {
		b = protowire.AppendTag(b, num, protowire.BytesType)
	}
	return appendLen(b, fn)
}

// appendLen appends the varint length of what fn appends, then it.
func appendLen(b []byte, fn func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, 0) // room for a 1-byte length: the common case
	b = fn(b)
	n := len(b) - start - 1
	if n < 0x80 {
		b[start] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, k-1)...)
	copy(b[start+k:], b[start+1:start+1+n])
	protowire.AppendVarint(b[start:start], uint64(n)) // written in place
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, valid(s))
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

// appendMessage appends m's encoding as a roomcast.v1.Message.
func appendMessage(b []byte, m *message.Message) []byte {
	b = appendInt(b, 1, int64(m.Seq))
	b = appendString(b, 2, m.ID)
	b = appendString(b, 3, m.Room)
	b = appendString(b, 4, string(m.Kind))
	b = appendString(b, 5, string(m.Scope))
	if u := m.User; u != nil {
		b = appendSub(b, 6, func(b []byte) []byte {
			b = appendString(b, 1, u.ID)
			b = appendString(b, 2, u.Name)
			return appendInt(b, 3, int64(int32(u.Level)))
		})
	}
	b = appendString(b, 7, m.Text)
	if g := m.Gift; g != nil {
		b = appendSub(b, 8, func(b []byte) []byte {
			b = appendString(b, 1, g.ID)
			b = appendInt(b, 2, int64(int32(g.Count)))
			b = appendInt(b, 3, g.ValueCents)
			return appendString(b, 4, g.Name)
		})
	}
	if m.Priority != 0 {
		b = protowire.AppendTag(b, 9, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(float64(m.Priority)))
	}
	b = appendInt(b, 10, m.TS)
	if m.VideoMS != nil { // optional: present even when 0
		b = protowire.AppendTag(b, 11, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(*m.VideoMS))
	}
	if len(m.Data) > 0 && json.Valid(m.Data) { // as the JSON encoding does
		b = protowire.AppendTag(b, 12, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Data)
	}
	b = appendString(b, 13, m.To)
	return appendString(b, 14, m.Ref)
}

// appendBatchBody appends c as a roomcast.v1.Batch.
func appendBatchBody(b []byte, c BatchContent) []byte {
	for _, m := range c.Messages {
		b = appendSub(b, 1, func(b []byte) []byte { return appendMessage(b, m) })
	}
	b = appendInt(b, 2, int64(c.Cursor))
	if c.Reset {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	for _, f := range []struct {
		num protowire.Number
		v   int64
	}{{4, c.Online}, {5, c.Likes}} {
		if f.v >= 0 { // optional: present when set
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(f.v))
		}
	}
	b = appendString(b, 6, c.Epoch)
	b = appendString(b, 7, c.Room)
	return appendString(b, 8, c.Move)
}
