package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// ledger is what writers did: every message they sent (by client_msg_id,
// which is also its text) and the acknowledgement it finally got.
type ledger struct {
	mu      sync.Mutex
	acked   map[string]sendAnswer // client_msg_id → ack
	bySeq   map[uint64]string     // seq → client_msg_id
	sent    atomic.Int64          // distinct messages sent
	retries atomic.Int64          // repeats of a send that got no answer
	errs    []error
}

func newLedger() *ledger {
	return &ledger{acked: map[string]sendAnswer{}, bySeq: map[uint64]string{}}
}

func (l *ledger) fail(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *ledger) ack(cmid string, a sendAnswer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.acked[cmid]; ok && (prev.Seq != a.Seq || prev.ID != a.ID) {
		l.errs = append(l.errs, fmt.Errorf("%s acknowledged twice differently: %+v then %+v", cmid, prev, a))
	}
	if other, ok := l.bySeq[a.Seq]; ok && other != cmid {
		l.errs = append(l.errs, fmt.Errorf("seq %d acknowledged for %s and %s", a.Seq, other, cmid))
	}
	l.acked[cmid], l.bySeq[a.Seq] = a, cmid
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *ledger) maxSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m uint64
	for s := range l.bySeq {
		m = max(m, s)
	}
	return m
}

// sendUntil sends chat messages into room as user until stop is closed (or
// n messages, if n > 0), each with client_msg_id "user-i" as its text. A
// send that gets no answer (the node died, the connection broke) or a 503
// is repeated with the same client_msg_id on the next node, as a real
// client would, until it is acknowledged.
func sendUntil(ctx context.Context, nodes []*server, first int, tok, user, room string, n int, stop <-chan struct{}, l *ledger) {
	node := first
	for i := 0; n <= 0 || i < n; i++ {
		select {
		case <-stop:
			return
		default:
		}
		cmid := fmt.Sprintf("%s-%d", user, i)
		l.sent.Add(1)
		for attempt := 0; ; attempt++ {
			if ctx.Err() != nil {
				l.fail(fmt.Errorf("%s: no ack before the deadline", cmid))
				return
			}
			if attempt > 0 {
				l.retries.Add(1)
			}
			s := nodes[node%len(nodes)]
			code, raw := s.request(ctx, "POST", "/api/rooms/"+room+"/messages", tok, map[string]string{"kind": "chat", "text": cmid, "client_msg_id": cmid})
			if code == 201 {
				var a sendAnswer
				if err := json.Unmarshal(raw, &a); err != nil || a.Seq == 0 {
					l.fail(fmt.Errorf("%s: bad ack %s", cmid, raw))
					return
				}
				l.ack(cmid, a)
				break
			}
			if code != 0 && code != 503 {
				l.fail(fmt.Errorf("%s: %d %s", cmid, code, raw))
				return
			}
			node++ // no answer: the same message again, on the next node
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// verify checks what every reader received against the ledger: each
// reader's messages came gap-free from seq 1 (seen.add), every acknowledged
// message is there exactly once with the seq and id of its ack, no message
// appears twice, and all readers agree. It logs the counts.
func (l *ledger) verify(t *testing.T, readers []*seen) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		t.Error(err)
	}
	for _, r := range readers {
		r.mu.Lock()
		if r.err != nil {
			t.Errorf("%v", r.err)
		}
		for cmid, a := range l.acked {
			switch {
			case uint64(len(r.ids)) < a.Seq:
				t.Errorf("%s: acknowledged %s (seq %d) never arrived (reader at %d)", r.name, cmid, a.Seq, len(r.ids))
			case r.ids[a.Seq-1] != a.ID:
				t.Errorf("%s: seq %d is %s, but %s was acknowledged as %s", r.name, a.Seq, r.ids[a.Seq-1], cmid, a.ID)
			}
		}
		for text, n := range r.texts {
			if n > 1 {
				t.Errorf("%s: %q delivered %d times", r.name, text, n)
			}
		}
		r.mu.Unlock()
	}
	if len(readers) > 0 {
		t.Logf("sent %d messages (%d repeated sends after no answer), acknowledged %d; each of %d readers received %d messages, every acknowledged one exactly once, in seq order",
			l.sent.Load(), l.retries.Load(), len(l.acked), len(readers), readers[0].last())
	}
}

// follow starts a WebSocket reader and a poller of room on each node (each
// moving on to the next node when its own is gone) until done.
func follow(ctx context.Context, wg *sync.WaitGroup, nodes []*server, room string, done func(uint64) bool) []*seen {
	var readers []*seen
	for i := range nodes {
		order := append(append([]*server{}, nodes[i:]...), nodes[:i]...)
		ws, pl := &seen{name: fmt.Sprint("ws-n", i)}, &seen{name: fmt.Sprint("poll-n", i)}
		readers = append(readers, ws, pl)
		wg.Add(2)
		go func() { defer wg.Done(); readWS(ctx, ws, room, order, done) }()
		go func() { defer wg.Done(); readPoll(ctx, pl, room, order, done) }()
	}
	return readers
}

// attachedEverywhere waits until room counts one online viewer per reader
// (every reader is attached before the first message is sent).
func attachedEverywhere(t *testing.T, s *server, room string, n int) {
	testutil.WaitFor(t, "every reader attached", 30*time.Second, func() bool {
		var v struct{ Online int }
		s.do("GET", "/api/rooms/"+room, "", nil, &v)
		return v.Online >= n
	})
}

// TestFaultNodeKilled (issue 8): three roomcast processes on Redis and
// PostgreSQL, 16 writers sending into one room through all three, a
// WebSocket reader and a poller on every node. One node is killed with
// SIGKILL mid-run: its readers resume on the others by cursor, its writers'
// unanswered sends are repeated with the same client_msg_id elsewhere, and
// every reader ends with every acknowledged message exactly once, in one
// order.
func TestFaultNodeKilled(t *testing.T) {
	redistest.NeedServices(t)
	c := redistest.Client(t)
	nodes, cl := startNodes(t, 3, clusterArgs("redis://"+redistest.RedisAddr+"/0", redistest.Prefix(t, c), redistest.Postgres(t)))
	cl[0].createRoom("k")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := newLedger()
	finished := make(chan struct{})
	done := func(last uint64) bool {
		select {
		case <-finished:
			return last >= l.maxSeq()
		default:
			return false
		}
	}
	var wg sync.WaitGroup
	readers := follow(ctx, &wg, cl, "k", done)
	attachedEverywhere(t, cl[0], "k", len(readers))
	stop := make(chan struct{})
	var ww sync.WaitGroup
	for w := 0; w < 16; w++ {
		ww.Add(1)
		go func(w int) {
			defer ww.Done()
			user := fmt.Sprint("w", w)
			sendUntil(ctx, cl, w%3, cl[0].token(user, auth.RoleViewer, 5), user, "k", 0, stop, l)
		}(w)
	}
	testutil.WaitFor(t, "traffic before the kill", 30*time.Second, func() bool { return l.count() >= 100 })
	nodes[2].Kill()
	before := l.count()
	testutil.WaitFor(t, "traffic after the kill", 30*time.Second, func() bool { return l.count() >= before+200 })
	close(stop)
	ww.Wait()
	close(finished)
	wg.Wait()
	l.verify(t, readers)
	for _, r := range readers[4:] { // the dead node's
		if strings.HasPrefix(r.name, "ws") && r.dials.Load() < 2 {
			t.Errorf("%s never reconnected", r.name)
		}
	}
}

// TestFaultDatabaseDown (issue 8): two roomcast processes whose PostgreSQL
// (reached through a proxy the test owns) goes away for 30 s. Live
// messaging and polling go on on both nodes; what needs SQL — creating a
// room, resetting a stream key — answers 503 db_unavailable; when the
// database is back everything works again, and every message acknowledged
// before, during and after reached every reader exactly once, in order.
func TestFaultDatabaseDown(t *testing.T) {
	redistest.NeedServices(t)
	c := redistest.Client(t)
	db := redistest.Postgres(t)
	proxy := redistest.StartProxy(t, redistest.PostgresAddr)
	db = strings.Replace(db, redistest.PostgresAddr, proxy.Addr, 1)
	_, cl := startNodes(t, 2, clusterArgs("redis://"+redistest.RedisAddr+"/0", redistest.Prefix(t, c), db))
	anchor := cl[0].createRoom("d")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	l := newLedger()
	finished := make(chan struct{})
	done := func(last uint64) bool {
		select {
		case <-finished:
			return last >= l.maxSeq()
		default:
			return false
		}
	}
	var wg sync.WaitGroup
	readers := follow(ctx, &wg, cl, "d", done)
	attachedEverywhere(t, cl[0], "d", len(readers))
	stop := make(chan struct{})
	var ww sync.WaitGroup
	for w := 0; w < 4; w++ {
		ww.Add(1)
		go func(w int) {
			defer ww.Done()
			user := fmt.Sprint("d", w)
			tok := cl[0].token(user, auth.RoleViewer, 5)
			for i := 0; ; i++ { // paced: the outage is long
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				sendUntil(ctx, cl, w%2, tok, fmt.Sprintf("%s-%d", user, i), "d", 1, stop, l)
			}
		}(w)
	}
	testutil.WaitFor(t, "traffic before the outage", 30*time.Second, func() bool { return l.count() >= 20 })
	proxy.Cut()
	cut, during := time.Now(), l.count()
	newAnchor := cl[1].token("anchor-new", auth.RoleAnchor, 50)
	for time.Since(cut) < 30*time.Second {
		for i, s := range cl {
			code, raw := s.request(ctx, "POST", "/api/rooms", newAnchor, map[string]string{"title": "new", "id": "new"})
			if code != 503 || !strings.Contains(string(raw), `"db_unavailable"`) {
				t.Fatalf("node %d: create a room with the database down: %d %s", i, code, raw)
			}
			code, raw = s.request(ctx, "POST", "/api/rooms/d/key/reset", anchor, nil)
			if code != 503 || !strings.Contains(string(raw), `"db_unavailable"`) {
				t.Fatalf("node %d: reset a key with the database down: %d %s", i, code, raw)
			}
			if code, raw := s.request(ctx, "GET", "/api/rooms/d/messages?limit=1", "", nil); code != 200 {
				t.Fatalf("node %d: poll with the database down: %d %s", i, code, raw)
			}
		}
		time.Sleep(time.Second) // paces the probes over the outage
	}
	if got := l.count() - during; got < 100 {
		t.Fatalf("only %d messages acknowledged in 30 s with the database down", got)
	}
	acceptedDuring := l.count() - during
	proxy.Restore()
	testutil.WaitFor(t, "rooms can be created again", 30*time.Second, func() bool {
		code, _ := cl[1].request(ctx, "POST", "/api/rooms", newAnchor, map[string]string{"title": "new", "id": "new"})
		return code == 201
	})
	after := l.count()
	testutil.WaitFor(t, "traffic after the outage", 30*time.Second, func() bool { return l.count() >= after+20 })
	close(stop)
	ww.Wait()
	close(finished)
	wg.Wait()
	l.verify(t, readers)
	t.Logf("%d messages acknowledged while the database was down for 30 s", acceptedDuring)
}
