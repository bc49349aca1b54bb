package fanout

import (
	"sort"
	"strconv"
	"sync"

	"roomcast/internal/message"
	"roomcast/internal/wire"
	"roomcast/internal/ws"
)

// Encoding is a wire encoding of server frames.
type Encoding uint8

// Encodings a connection may speak.
const (
	JSON  Encoding = iota // text messages: the default protocol (docs/protocol.md)
	Proto                 // binary messages of length-prefixed proto/roomcast/v1 Frames (internal/wire)
	numEncodings
)

// Payload is one server frame (a batch or a count update), shared by every
// connection it goes to. It keeps what the frame says and builds each
// encoding at most once, the first time a connection speaking it needs it,
// together with that encoding's WebSocket framing: so a room's batch is
// encoded once per tick per encoding in use, and every connection of an
// encoding is sent the same bytes. Safe for concurrent use.
type Payload struct {
	content wire.BatchContent // immutable after construction
	count   string            // "online" or "likes" for a count update; "" for a batch
	// before are count updates that go out ahead of this frame, as their own
	// WebSocket messages in the same write (set before the first encoding).
	before []*Payload

	enc [numEncodings]encoded
}

// encoded is one encoding of a payload, built once.
type encoded struct {
	once  sync.Once
	data  []byte
	frame *ws.Prepared
}

// newBatch is the payload of a batch (msgs must not change afterwards).
func newBatch(room string, msgs []*message.Message, cursor uint64, epoch string, reset bool) *Payload {
	return &Payload{content: wire.BatchContent{Room: room, Messages: msgs, Cursor: cursor, Epoch: epoch, Reset: reset, Online: -1, Likes: -1}}
}

// newCount is the payload of a count update: the JSON "online" or "likes"
// frame, in protobuf a batch without messages carrying the count (and the
// room's cursor and epoch, which the connection has already received).
func newCount(room, count string, v int64, cursor uint64, epoch string) *Payload {
	p := &Payload{content: wire.BatchContent{Room: room, Cursor: cursor, Epoch: epoch, Online: -1, Likes: -1}, count: count}
	if count == "online" {
		p.content.Online = v
	} else {
		p.content.Likes = v
	}
	return p
}

func (p *Payload) encoded(e Encoding) *encoded {
	x := &p.enc[e]
	x.once.Do(func() {
		if e == Proto {
			x.data = wire.AppendBatch(nil, p.content)
		} else {
			x.data = p.appendJSON()
		}
		if len(p.before) == 0 {
			x.frame = ws.NewPrepared(x.data, e == JSON)
			return
		}
		parts := make([][]byte, 0, len(p.before)+1)
		for _, b := range p.before {
			parts = append(parts, b.Bytes(e))
		}
		x.frame = ws.NewPreparedBatch(append(parts, x.data), e == JSON)
	})
	return x
}

func (p *Payload) appendJSON() []byte {
	c := p.content
	switch p.count {
	case "online":
		return appendCount(nil, "online", c.Room, "count", c.Online)
	case "likes":
		return appendCount(nil, "likes", c.Room, "total", c.Likes)
	}
	b := AppendBatch(make([]byte, 0, batchSize(c.Messages)+len(c.Move)+16), c.Room, c.Messages, c.Cursor, c.Epoch, c.Reset)
	if c.Move != "" { // {"type":"batch",…} → {"type":"batch",…,"move":URL}
		b = append(append(b[:len(b)-1], `,"move":`...), message.AppendString(nil, c.Move)...)
		b = append(b, '}')
	}
	return b
}

// Bytes returns the payload in encoding e (a JSON text, or length-prefixed
// protobuf Frames), encoding it the first time.
func (p *Payload) Bytes(e Encoding) []byte { return p.encoded(e).data }

// Frame returns the payload in encoding e framed as one WebSocket message
// (text for JSON, binary for protobuf), preceded by the count updates it
// carries (each its own message), built once for every connection.
func (p *Payload) Frame(e Encoding) *ws.Prepared { return p.encoded(e).frame }

// Sink is one viewer connection as the hub sees it. Send must not block: a
// connection that cannot keep up is the sink's to drop (it then reports
// ErrSlow-like errors and is detached by its owner).
type Sink interface {
	Send(p *Payload) error
	Close(code int, reason string)
}

// AppendBatch encodes
// {"type":"batch","room":R,"messages":[...],"cursor":C,"epoch":E} (plus
// "reset":true when set) into b. The cursor counts within the epoch.
func AppendBatch(b []byte, room string, msgs []*message.Message, cursor uint64, epoch string, reset bool) []byte {
	b = append(b, `{"type":"batch","room":`...)
	b = message.AppendString(b, room)
	b = append(b, `,"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Encoded()...)
	}
	b = append(b, `],"cursor":`...)
	b = strconv.AppendUint(b, cursor, 10)
	b = append(b, `,"epoch":`...)
	b = message.AppendString(b, epoch)
	if reset {
		b = append(b, `,"reset":true`...)
	}
	return append(b, '}')
}

// batchSize estimates the encoded size of a batch.
func batchSize(msgs []*message.Message) int {
	n := 64
	for _, m := range msgs {
		n += len(m.Encoded()) + 1
	}
	return n
}

// SelectTop applies a budget of n droppable messages to msgs (seq order):
// every must-deliver message is kept, plus the n droppable ones with the
// highest priority (ties: lower seq first). The result is in seq order and
// reuses msgs' backing array when nothing is dropped.
func SelectTop(msgs []*message.Message, n int) (kept []*message.Message, dropped int) {
	return selectTop(msgs, n, false)
}

// selectTop is SelectTop; newest breaks priority ties towards higher seqs
// (warm starts want the latest of equals, live batches the oldest).
func selectTop(msgs []*message.Message, n int, newest bool) (kept []*message.Message, dropped int) {
	n = max(n, 0) // a negative budget keeps no droppable message (and sizes nothing below zero)
	droppable := 0
	for _, m := range msgs {
		if !m.MustDeliver() {
			droppable++
		}
	}
	if droppable <= n {
		return msgs, 0
	}
	cand := make([]*message.Message, 0, droppable)
	for _, m := range msgs {
		if !m.MustDeliver() {
			cand = append(cand, m)
		}
	}
	sort.Slice(cand, func(i, j int) bool {
		if cand[i].Priority != cand[j].Priority {
			return cand[i].Priority > cand[j].Priority
		}
		return (cand[i].Seq < cand[j].Seq) != newest
	})
	keep := make(map[*message.Message]bool, n)
	for _, m := range cand[:n] {
		keep[m] = true
	}
	kept = make([]*message.Message, 0, len(msgs)-droppable+n)
	for _, m := range msgs {
		if m.MustDeliver() || keep[m] {
			kept = append(kept, m)
		}
	}
	return kept, droppable - n
}

// SelectForPoll picks at most limit messages of msgs (seq order, all newer
// than the client's cursor) by priority: must-deliver first, then priority,
// then seq. It returns them in seq order with the cursor the client should
// send next: past everything considered, except that a must-deliver message
// that did not fit keeps the cursor before it, so none is ever skipped.
func SelectForPoll(msgs []*message.Message, limit int) ([]*message.Message, uint64) {
	if len(msgs) == 0 {
		return nil, 0
	}
	if len(msgs) <= limit {
		return msgs, msgs[len(msgs)-1].Seq
	}
	must := 0
	for _, m := range msgs {
		if m.MustDeliver() {
			must++
		}
	}
	if must >= limit {
		out := make([]*message.Message, 0, limit)
		for _, m := range msgs {
			if m.MustDeliver() {
				out = append(out, m)
				if len(out) == limit {
					break
				}
			}
		}
		return out, out[len(out)-1].Seq
	}
	kept, _ := SelectTop(msgs, limit-must)
	return kept, msgs[len(msgs)-1].Seq
}
