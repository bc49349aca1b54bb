package fanout

import (
	"sort"
	"strconv"
	"sync"

	"roomcast/internal/message"
)

// Payload is one encoded server frame (JSON), shared by every connection it
// goes to. A transport may attach its own framing once per payload with
// Cached, so that work too happens once per room per tick.
type Payload struct {
	Data []byte

	once sync.Once
	enc  any
}

// Cached returns build(p.Data), computed once per payload.
func (p *Payload) Cached(build func([]byte) any) any {
	p.once.Do(func() { p.enc = build(p.Data) })
	return p.enc
}

// Sink is one viewer connection as the hub sees it. Send must not block: a
// connection that cannot keep up is the sink's to drop (it then reports
// ErrSlow-like errors and is detached by its owner).
type Sink interface {
	Send(p *Payload) error
	Close(code int, reason string)
}

// AppendBatch encodes {"type":"batch","room":R,"messages":[...],"cursor":C}
// (plus "reset":true when set) into b.
func AppendBatch(b []byte, room string, msgs []*message.Message, cursor uint64, reset bool) []byte {
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
	for _, m := range cand[:max(n, 0)] {
		keep[m] = true
	}
	kept = make([]*message.Message, 0, len(msgs)-droppable+n)
	for _, m := range msgs {
		if m.MustDeliver() || keep[m] {
			kept = append(kept, m)
		}
	}
	return kept, droppable - max(n, 0)
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
