package timeline

import (
	"context"
	"sync"
	"time"

	"roomcast/internal/message"
)

// Memory is the single-node Timeline: one ring of messages per room, each
// guarded by its own lock, so appends to different rooms never contend.
type Memory struct {
	ret    Retention
	notify Notify
	now    func() time.Time

	mu    sync.RWMutex
	rooms map[string]*memRoom // guarded by mu
}

var _ Timeline = (*Memory)(nil)

type memRoom struct {
	mu   sync.Mutex
	ring []*message.Message // ring buffer; guarded by mu
	// start indexes the oldest retained message in ring; n counts them.
	start, n int
	head     uint64 // last assigned seq; guarded by mu
	epoch    string // created with the room's counter; guarded by mu (Rotate)

	acks     map[string]memAck // by Dedupe key; guarded by mu
	ackOrder []string          // keys in the order remembered, for expiry; guarded by mu
}

// memAck is a remembered acknowledgement and when it is forgotten (Unix ms).
type memAck struct {
	ack     Ack
	expires int64
}

// NewMemory returns an in-memory timeline. notify (may be nil) is called for
// every appended message under the room's lock, so in seq order.
func NewMemory(ret Retention, notify Notify) *Memory {
	return &Memory{ret: ret.Defaults(), notify: notify, now: time.Now, rooms: map[string]*memRoom{}}
}

func (t *Memory) room(id string, create bool) *memRoom {
	t.mu.RLock()
	r := t.rooms[id]
	t.mu.RUnlock()
	if r != nil || !create {
		return r
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if r = t.rooms[id]; r == nil {
		r = &memRoom{epoch: newEpoch()}
		t.rooms[id] = r
	}
	return r
}

// Append implements Timeline.
func (t *Memory) Append(ctx context.Context, m *message.Message) (uint64, error) {
	r := t.room(m.Room, true)
	now := t.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireAcksLocked(now.UnixMilli())
	if m.Dedupe != "" {
		if a, ok := r.acks[m.Dedupe]; ok {
			m.Seq, m.ID, m.TS, m.Priority, m.Epoch = a.ack.Seq, a.ack.ID, a.ack.TS, a.ack.Priority, r.epoch
			return m.Seq, ErrDuplicate
		}
	}
	r.head++
	m.Seq, m.Epoch = r.head, r.epoch
	if m.TS == 0 {
		m.TS = now.UnixMilli()
	}
	m.Seal()
	if m.Dedupe != "" {
		if r.acks == nil {
			r.acks = map[string]memAck{}
		}
		r.acks[m.Dedupe] = memAck{ack: Ack{Seq: m.Seq, ID: m.ID, TS: m.TS, Priority: m.Priority}, expires: now.Add(DedupeTTL).UnixMilli()}
		r.ackOrder = append(r.ackOrder, m.Dedupe)
	}
	r.pruneAgeLocked(now.Add(-t.ret.MaxAge).UnixMilli(), 8)
	r.pushLocked(m, t.ret.MaxCount)
	if t.notify != nil {
		t.notify(m)
	}
	return m.Seq, nil
}

// expireAcksLocked forgets acknowledgements older than DedupeTTL.
func (r *memRoom) expireAcksLocked(now int64) {
	i := 0
	for ; i < len(r.ackOrder); i++ {
		k := r.ackOrder[i]
		if a, ok := r.acks[k]; ok && a.expires > now {
			break
		}
		delete(r.acks, k)
	}
	if i > 0 {
		r.ackOrder = append(r.ackOrder[:0], r.ackOrder[i:]...)
	}
}

// Rotate implements Timeline.
func (t *Memory) Rotate(ctx context.Context, room, from string) (string, error) {
	r := t.room(room, false)
	if r == nil {
		return "", nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.epoch == from {
		r.epoch = newEpoch()
		clear(r.acks) // acknowledgements name seqs of the old epoch
		r.ackOrder = r.ackOrder[:0]
	}
	return r.epoch, nil
}

// Recall implements Timeline.
func (t *Memory) Recall(ctx context.Context, room, key string) (Ack, bool, error) {
	r := t.room(room, false)
	if r == nil {
		return Ack{}, false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireAcksLocked(t.now().UnixMilli())
	a, ok := r.acks[key]
	if ok {
		a.ack.Epoch = r.epoch
	}
	return a.ack, ok, nil
}

// pushLocked appends m, overwriting the oldest message when the ring holds
// max messages. The ring grows by doubling up to max, so a quiet room costs
// little and a busy one never reallocates per insert.
func (r *memRoom) pushLocked(m *message.Message, limit int) {
	if r.n == len(r.ring) {
		if len(r.ring) < limit {
			grown := make([]*message.Message, min(limit, max(16, 2*len(r.ring))))
			for i := 0; i < r.n; i++ {
				grown[i] = r.ring[(r.start+i)%len(r.ring)]
			}
			r.ring, r.start = grown, 0
		} else { // full: drop the oldest
			r.ring[r.start] = nil
			r.start = (r.start + 1) % len(r.ring)
			r.n--
		}
	}
	r.ring[(r.start+r.n)%len(r.ring)] = m
	r.n++
}

// pruneAgeLocked drops at most budget messages older than cutoff (Unix ms),
// so age pruning is spread over appends instead of spiking on one.
func (r *memRoom) pruneAgeLocked(cutoff int64, budget int) {
	for ; budget > 0 && r.n > 0; budget-- {
		old := r.ring[r.start]
		if old.TS >= cutoff {
			return
		}
		r.ring[r.start] = nil
		r.start = (r.start + 1) % len(r.ring)
		r.n--
	}
}

// Range implements Timeline.
func (t *Memory) Range(ctx context.Context, room string, after uint64, limit int) (Page, error) {
	r := t.room(room, false)
	if r == nil {
		return Page{First: 1}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneAgeLocked(t.now().Add(-t.ret.MaxAge).UnixMilli(), r.n)
	p := Page{Head: r.head, First: r.head + 1 - uint64(r.n), Epoch: r.epoch}
	if limit <= 0 || after >= r.head {
		return p, nil
	}
	from := max(after+1, p.First)
	cnt := min(uint64(limit), r.head-from+1)
	p.Msgs = make([]*message.Message, 0, cnt)
	for s := from; s < from+cnt; s++ {
		p.Msgs = append(p.Msgs, r.ring[(r.start+int(s-p.First))%len(r.ring)])
	}
	return p, nil
}

// Head implements Timeline.
func (t *Memory) Head(ctx context.Context, room string) (Position, error) {
	r := t.room(room, false)
	if r == nil {
		return Position{}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return Position{Head: r.head, Epoch: r.epoch}, nil
}

// Close implements Timeline.
func (t *Memory) Close() error { return nil }
