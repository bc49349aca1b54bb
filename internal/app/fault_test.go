package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	bySeq   map[string]string     // "epoch/seq" → client_msg_id
	sent    atomic.Int64          // distinct messages sent
	retries atomic.Int64          // repeats of a send that got no answer
	errs    []error
}

func newLedger() *ledger {
	return &ledger{acked: map[string]sendAnswer{}, bySeq: map[string]string{}}
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
	at := fmt.Sprint(a.Epoch, "/", a.Seq)
	if other, ok := l.bySeq[at]; ok && other != cmid {
		l.errs = append(l.errs, fmt.Errorf("seq %s acknowledged for %s and %s", at, other, cmid))
	}
	l.acked[cmid], l.bySeq[at] = a, cmid
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
	for _, a := range l.acked {
		m = max(m, a.Seq)
	}
	return m
}

// sendUntil sends chat messages into room as user until stop is closed (or
// n messages, if n > 0), each with client_msg_id "user-i" as its text. A
// send that gets no answer (the node died, the connection broke) or a 503
// is repeated with the same client_msg_id on the next node, as a real
// client would, until it is acknowledged.
func sendUntil(ctx context.Context, nodes []*server, first int, tok, user, room string, n int, pace time.Duration, stop <-chan struct{}, l *ledger) {
	node := first
	for i := 0; n <= 0 || i < n; i++ {
		select {
		case <-stop:
			return
		case <-time.After(pace):
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

// faultRun is the traffic of a fault test: writers sending into a room
// through every node, and a WebSocket reader and a poller on every node.
type faultRun struct {
	l        *ledger
	readers  []*seen
	stop     chan struct{} // ends the writers
	finished chan struct{} // then the readers, once they have every ack
	ww, wg   sync.WaitGroup
}

// startRun attaches the readers, then starts writers (each pausing pace
// between messages).
func startRun(ctx context.Context, t *testing.T, nodes []*server, room string, writers int, pace time.Duration) *faultRun {
	r := &faultRun{l: newLedger(), stop: make(chan struct{}), finished: make(chan struct{})}
	done := func(last uint64) bool {
		select {
		case <-r.finished:
			return last >= r.l.maxSeq()
		default:
			return false
		}
	}
	r.readers = follow(ctx, &r.wg, nodes, room, done)
	attachedEverywhere(t, nodes[0], room, len(r.readers))
	for w := 0; w < writers; w++ {
		r.ww.Add(1)
		go func(w int) {
			defer r.ww.Done()
			user := fmt.Sprint(room, "w", w)
			sendUntil(ctx, nodes, w%len(nodes), nodes[0].token(user, auth.RoleViewer, 5), user, room, 0, pace, r.stop, r.l)
		}(w)
	}
	return r
}

// finish stops the writers, lets the readers catch up and verifies.
func (r *faultRun) finish(t *testing.T) {
	t.Helper()
	close(r.stop)
	r.ww.Wait()
	close(r.finished)
	r.wg.Wait()
	r.l.verify(t, r.readers)
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
	run := startRun(ctx, t, cl, "k", 16, 0)
	l := run.l
	testutil.WaitFor(t, "traffic before the kill", 30*time.Second, func() bool { return l.count() >= 100 })
	nodes[2].Kill()
	before := l.count()
	testutil.WaitFor(t, "traffic after the kill", 30*time.Second, func() bool { return l.count() >= before+200 })
	run.finish(t)
	for _, r := range run.readers[4:] { // the dead node's
		if strings.HasPrefix(r.name, "ws") && r.dials.Load() < 2 {
			t.Errorf("%s never reconnected", r.name)
		}
	}
}

// TestFaultDatabaseDown (issue 8): two roomcast processes whose PostgreSQL
// (reached through a proxy the test owns) goes away for 30 s. Live
// messaging and polling go on on both nodes, and a live stream published
// with ffmpeg plays (ffprobe over HTTP-FLV) for a viewer who comes then; what needs SQL — creating a
// room, resetting a stream key — answers 503 db_unavailable; when the
// database is back everything works again, and every message acknowledged
// before, during and after reached every reader exactly once, in order.
func TestFaultDatabaseDown(t *testing.T) {
	redistest.NeedServices(t)
	c := redistest.Client(t)
	db := redistest.Postgres(t)
	proxy := redistest.StartProxy(t, redistest.PostgresAddr)
	db = strings.Replace(db, redistest.PostgresAddr, proxy.Addr, 1)
	args := clusterArgs("redis://"+redistest.RedisAddr+"/0", redistest.Prefix(t, c), db)
	bin := redistest.Binary(t)
	rtmp := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	n0 := redistest.StartNode(t, bin, append(append([]string{"--data", t.TempDir()}, args...), "--rtmp", rtmp)...)
	n1 := redistest.StartNode(t, bin, append([]string{"--data", t.TempDir()}, args...)...)
	cl := []*server{remote(t, n0.URL), remote(t, n1.URL)}
	anchor := cl[0].createRoom("d")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// A live stream, published with ffmpeg to node 0 before the outage.
	var rm struct {
		StreamKey string `json:"stream_key"`
	}
	cl[0].do("GET", "/api/rooms/d", anchor, nil, &rm)
	pctx, stopPub := context.WithCancel(ctx)
	pub := publish(pctx, t, "rtmp://"+rtmp+"/live/"+rm.StreamKey)
	defer func() { stopPub(); _ = pub.Wait() }()
	testutil.WaitFor(t, "room live", 30*time.Second, func() bool {
		var v struct{ Live bool }
		cl[1].do("GET", "/api/rooms/d", "", nil, &v)
		return v.Live
	})
	run := startRun(ctx, t, cl, "d", 4, 50*time.Millisecond) // paced: the outage is long
	l := run.l
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
	// Playback: a new viewer plays the live stream while SQL is down.
	probe, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
		"-read_intervals", "%+2", n0.URL+"/live/d.flv").Output()
	if err != nil || !strings.Contains(string(probe), "h264") || !strings.Contains(string(probe), "aac") {
		t.Errorf("ffprobe of the live stream with the database down: %v %q", err, probe)
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
	run.finish(t)
	t.Logf("%d messages acknowledged while the database was down for 30 s", acceptedDuring)
}

// epochReader follows a room across epochs, as a client that sends its
// cursor's epoch back: it accepts a new epoch only with "reset":true (or
// from cursor 0) and checks that within an epoch seqs come gap-free.
type epochReader struct {
	name string
	mu   sync.Mutex
	// Guarded by mu.
	epoch  string
	last   uint64            // last seq received in epoch
	first  map[string]uint64 // first seq received in each epoch
	ids    map[string]string // "epoch/seq" → message id
	texts  map[string]int    // chat texts received, to catch duplicates
	resets int
	err    error
}

func newEpochReader(name string) *epochReader {
	return &epochReader{name: name, first: map[string]uint64{}, ids: map[string]string{}, texts: map[string]int{}}
}

// apply takes one batch or poll answer in.
func (r *epochReader) apply(epoch string, cursor uint64, reset bool, msgs []msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	switch {
	case reset:
		r.resets++
		r.epoch, r.last = epoch, cursor
		if len(msgs) > 0 {
			r.last = msgs[0].Seq - 1
		}
	case epoch != r.epoch && r.last > 0:
		r.err = fmt.Errorf("%s: epoch %q → %q at seq %d without a reset", r.name, r.epoch, epoch, r.last)
		return
	default:
		r.epoch = epoch
	}
	for _, m := range msgs {
		if m.Seq == 0 {
			continue
		}
		if m.Seq != r.last+1 {
			r.err = fmt.Errorf("%s: seq %d after %d in epoch %q (reset %v)", r.name, m.Seq, r.last, epoch, reset)
			return
		}
		r.last = m.Seq
		if _, ok := r.first[epoch]; !ok {
			r.first[epoch] = m.Seq
		}
		r.ids[fmt.Sprint(epoch, "/", m.Seq)] = m.ID
		if m.Kind == "chat" {
			r.texts[m.Text]++
		}
	}
}

func (r *epochReader) position() (string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch, r.last
}

// pollEpochs polls s with cursor and epoch until done.
func pollEpochs(ctx context.Context, s *server, room string, r *epochReader, done func(epoch string, last uint64) bool) {
	for ctx.Err() == nil {
		epoch, last := r.position()
		if done(epoch, last) {
			return
		}
		code, raw := s.request(ctx, "GET", fmt.Sprintf("/api/rooms/%s/messages?cursor=%d&epoch=%s&limit=100&sid=%s", room, last, epoch, r.name), "", nil)
		var a pollAnswer
		if code != 200 || json.Unmarshal(raw, &a) != nil {
			time.Sleep(30 * time.Millisecond)
			continue
		}
		r.apply(a.Epoch, a.Cursor, a.Reset, a.Messages)
		if len(a.Messages) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// wsEpochs follows room over one WebSocket on s (reconnecting with cursor
// and epoch if it drops) until done.
func wsEpochs(ctx context.Context, s *server, room string, r *epochReader, done func(epoch string, last uint64) bool) {
	for ctx.Err() == nil && !done(r.position()) {
		epoch, last := r.position()
		w, _, err := s.dial(ctx, fmt.Sprintf("room=%s&cursor=%d&epoch=%s", room, last, epoch))
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		stop := make(chan struct{})
		go func() { // ends the read once the reader is done
			for !done(r.position()) {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			w.conn.CloseNow()
		}()
		for {
			f, err := w.read(ctx)
			if err != nil {
				break
			}
			if f.Type == "batch" {
				r.apply(f.Epoch, f.Cursor, f.Reset, f.Messages)
			}
		}
		close(stop)
		w.close()
	}
}

// TestFaultRedisLost (issue 8): Redis (test-owned) is killed and comes back
// with its data gone — what a restart without persistence, or a failover
// that lost writes, does. The room's sequence starts over in a new epoch.
// Sends fail fast with 503 meanwhile (writers repeat them with the same
// client_msg_id). Every reader — WebSocket and poller on both nodes —
// learns of the new epoch through one "reset":true, never by a silent jump;
// within each epoch it gets every message gap-free, none twice; and every
// message acknowledged in the new epoch reaches every reader.
func TestFaultRedisLost(t *testing.T) {
	srv := redistest.StartServer(t)
	_, cl := startNodes(t, 2, clusterArgs(srv.URL(), "rl:", redistest.Postgres(t)))
	cl[0].createRoom("x")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := newLedger()
	var oldEpoch atomic.Value
	oldEpoch.Store("")
	newAcks := func() (n int, epoch string, last uint64) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, a := range l.acked {
			if a.Epoch != oldEpoch.Load().(string) {
				n, epoch, last = n+1, a.Epoch, max(last, a.Seq)
			}
		}
		return n, epoch, last
	}
	finished := make(chan struct{})
	done := func(epoch string, last uint64) bool {
		select {
		case <-finished:
			_, e, m := newAcks()
			return epoch == e && last >= m
		default:
			return false
		}
	}
	var readers []*epochReader
	var wg sync.WaitGroup
	for i, s := range cl {
		ws, pl := newEpochReader(fmt.Sprint("ws-n", i)), newEpochReader(fmt.Sprint("poll-n", i))
		readers = append(readers, ws, pl)
		wg.Add(2)
		go func(s *server) { defer wg.Done(); wsEpochs(ctx, s, "x", ws, done) }(s)
		go func(s *server) { defer wg.Done(); pollEpochs(ctx, s, "x", pl, done) }(s)
	}
	attachedEverywhere(t, cl[0], "x", len(readers))
	stop := make(chan struct{})
	var ww sync.WaitGroup
	for w := 0; w < 4; w++ {
		ww.Add(1)
		go func(w int) {
			defer ww.Done()
			user := fmt.Sprint("x", w)
			sendUntil(ctx, cl, w%2, cl[0].token(user, auth.RoleViewer, 5), user, "x", 0, 20*time.Millisecond, stop, l)
		}(w)
	}
	testutil.WaitFor(t, "traffic before the loss", 30*time.Second, func() bool { return l.count() >= 40 })
	srv.Kill()
	l.mu.Lock()
	for _, a := range l.acked {
		oldEpoch.Store(a.Epoch)
	}
	l.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(srv.Dir, "appendonlydir")); err != nil {
		t.Fatal(err)
	}
	code, raw := cl[1].request(ctx, "POST", "/api/rooms/x/messages", cl[1].token("probe", auth.RoleViewer, 1), map[string]string{"kind": "chat", "text": "probe"})
	if code != 503 {
		t.Errorf("send with Redis down: %d %s, want 503", code, raw)
	}
	srv.Start()
	testutil.WaitFor(t, "traffic in the new epoch", 30*time.Second, func() bool { n, _, _ := newAcks(); return n >= 60 })
	close(stop)
	ww.Wait()
	close(finished)
	wg.Wait()
	nNew, newEpoch, _ := newAcks()
	if newEpoch == "" || newEpoch == oldEpoch.Load().(string) {
		t.Fatalf("no new epoch: %q (old %q)", newEpoch, oldEpoch.Load())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		t.Error(err)
	}
	for _, r := range readers {
		r.mu.Lock()
		if r.err != nil {
			t.Error(r.err)
		} else if r.epoch != newEpoch || r.resets != 1 {
			t.Errorf("%s: ended in epoch %q after %d resets, want %q after 1", r.name, r.epoch, r.resets, newEpoch)
		}
		missed := 0
		for cmid, a := range l.acked {
			if a.Epoch != newEpoch {
				continue
			}
			if got := r.ids[fmt.Sprint(a.Epoch, "/", a.Seq)]; got != a.ID {
				if a.Seq >= r.first[newEpoch] {
					t.Errorf("%s: %s acknowledged as %s/%d (%s), received %q", r.name, cmid, a.Epoch, a.Seq, a.ID, got)
				}
				missed++ // before the reader's reset point: the reset said so
			}
		}
		for text, n := range r.texts {
			if n > 1 {
				t.Errorf("%s: %q delivered %d times", r.name, text, n)
			}
		}
		t.Logf("%s: reset once into the new epoch at seq %d (%d earlier new-epoch messages skipped by the reset)", r.name, r.first[newEpoch], missed)
		r.mu.Unlock()
	}
	t.Logf("sent %d messages (%d repeated after 503 or no answer), acknowledged %d (%d in the new epoch)", l.sent.Load(), l.retries.Load(), len(l.acked), nNew)
}
