package archive

import "sync"

// queue is the hand-off from the send path to the writer: senders append
// under a mutex held for one slice append (no channel operation, no
// goroutine wake-up per message); the writer is woken only when a batch
// begins (the first message after the queue was empty) and when it is full,
// and takes up to a batch at a time. At most max messages wait; the writer's
// batch in flight is not counted (as before, Buffer + Batch at most).
type queue struct {
	mu   sync.Mutex
	buf  []entry // waiting entries are buf[head:]; guarded by mu
	head int     // guarded by mu
	max  int
	full int           // the batch size: a queue this long wakes the writer
	wake chan struct{} // capacity 1: "a batch began" or "a batch is full"
}

func newQueue(max, full int) *queue {
	return &queue{max: max, full: full, wake: make(chan struct{}, 1)}
}

// push appends e unless max entries are waiting already.
func (q *queue) push(e entry) bool {
	q.mu.Lock()
	n := len(q.buf) - q.head
	if n >= q.max {
		q.mu.Unlock()
		return false
	}
	if len(q.buf) == cap(q.buf) && q.head > 0 { // reuse the taken front before growing
		k := copy(q.buf, q.buf[q.head:])
		clear(q.buf[k:])
		q.buf, q.head = q.buf[:k], 0
	}
	q.buf = append(q.buf, e)
	q.mu.Unlock()
	if n+1 == 1 || n+1 == q.full {
		select {
		case q.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return true
}

// len is the number of waiting entries.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf) - q.head
}

// take appends up to n waiting entries, oldest first, to dst.
func (q *queue) take(dst []entry, n int) []entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(n, len(q.buf)-q.head)
	dst = append(dst, q.buf[q.head:q.head+k]...)
	clear(q.buf[q.head : q.head+k]) // the writer's copy is the only reference
	q.head += k
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
		if cap(q.buf) > 4*q.full { // a backlog (SQL outage) is over: give its memory back
			q.buf = nil
		}
	}
	return dst
}

// drainWake consumes a pending wake-up, if any.
func (q *queue) drainWake() {
	select {
	case <-q.wake:
	default:
	}
}
