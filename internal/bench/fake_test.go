package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"roomcast/internal/message"
)

// fakeServer is a tiny stand-in for roomcast's message service, speaking the
// protocol contract over real sockets: guest tokens, sending over HTTP and
// WebSocket, polling by cursor, and WebSocket batches every tick. Faults can
// be injected to check that the bench notices them.
type fakeServer struct {
	t    *testing.T
	srv  *httptest.Server
	room string
	tick time.Duration

	// Faults.
	gapOnce     bool // one reader (and one poll answer) skips a message once
	dupOnce     bool // one reader gets a message twice
	reorderOnce bool // one reader gets two messages swapped
	dropOnce    bool // one reader is closed with a close frame once
	every429    int  // every n-th POST is answered 429
	pollAfterMs int

	mu      sync.Mutex
	msgs    [][]byte // encoded messages; seq i+1 at index i
	conns   map[*fakeConn]bool
	faulted bool
	posts   int
	guests  int
	closed  bool

	wg   sync.WaitGroup
	stop chan struct{}
}

type fakeConn struct {
	c    net.Conn
	wmu  sync.Mutex
	next uint64 // next seq to deliver
	got  bool   // has had a batch
}

func newFakeServer(t *testing.T, configure func(*fakeServer)) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t, room: "r1", tick: 20 * time.Millisecond, conns: map[*fakeConn]bool{},
		stop: make(chan struct{}), pollAfterMs: 20}
	if configure != nil {
		configure(f)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/guest", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.guests++
		n := f.guests
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":"guest-%d"}`, n)
	})
	mux.HandleFunc("POST /api/rooms/{id}/messages", f.post)
	mux.HandleFunc("GET /api/rooms/{id}/messages", f.poll)
	mux.HandleFunc("GET /ws", f.ws)
	f.srv = httptest.NewServer(mux)
	f.wg.Add(1)
	go f.fanout()
	t.Cleanup(f.close)
	return f
}

func (f *fakeServer) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	for c := range f.conns {
		c.c.Close()
	}
	f.mu.Unlock()
	close(f.stop)
	f.srv.Close()
	f.wg.Wait()
}

// appendMsg stores a message and returns its seq. Caller holds f.mu.
func (f *fakeServer) appendMsg(user, text string) uint64 {
	seq := uint64(len(f.msgs) + 1)
	m := &message.Message{Seq: seq, ID: "m" + strconv.FormatUint(seq, 10), Room: f.room, Kind: message.KindChat,
		Scope: message.ScopeRoom, User: &message.User{ID: user, Name: user, Level: 3}, Text: text,
		Priority: 10, TS: time.Now().UnixMilli()}
	f.msgs = append(f.msgs, m.AppendJSON(nil))
	return seq
}

func (f *fakeServer) post(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" || r.PathValue("id") != f.room {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":{"code":"unauthorized","message":"token required"}}`)
		return
	}
	var body struct {
		Kind string `json:"kind"`
		Text string `json:"text"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Kind == "" {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":{"code":"bad_json","message":"bad body"}}`)
		return
	}
	f.mu.Lock()
	f.posts++
	if f.every429 > 0 && f.posts%f.every429 == 0 {
		f.mu.Unlock()
		w.WriteHeader(429)
		fmt.Fprint(w, `{"error":{"code":"rate_limited","message":"slow down"},"retry_after_ms":5}`)
		return
	}
	seq := f.appendMsg(tok, body.Text)
	f.mu.Unlock()
	w.WriteHeader(201)
	fmt.Fprintf(w, `{"seq":%d,"id":"m%d"}`, seq, seq)
}

func (f *fakeServer) poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 15
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 {
		limit = min(l, 100)
	}
	f.mu.Lock()
	head := uint64(len(f.msgs))
	from := head - min(head, 5) // warm start: the last few
	c := q.Get("cursor")
	if c != "" {
		from, _ = strconv.ParseUint(c, 10, 64)
		from = min(from, head)
	}
	to := min(head, from+uint64(limit))
	cursor := to
	if f.gapOnce && !f.faulted && to-from >= 2 && c != "" {
		f.faulted = true
		from++ // skip one message but advance the cursor past it
	}
	var b bytes.Buffer
	b.WriteString(`{"messages":[`)
	for i := from; i < to; i++ {
		if i > from {
			b.WriteByte(',')
		}
		b.Write(f.msgs[i])
	}
	f.mu.Unlock()
	fmt.Fprintf(&b, `],"cursor":%d,"poll_after_ms":%d,"reset":false,"online":3}`, cursor, f.pollAfterMs)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b.Bytes())
}

func (f *fakeServer) ws(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("room") != f.room {
		http.Error(w, `{"error":{"code":"not_found","message":"no room"}}`, 404)
		return
	}
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	fc := &fakeConn{c: conn}
	f.mu.Lock()
	// Warm start: the last few messages, as the real server sends recent
	// history; it also covers messages sent between the handshake and here.
	fc.next = uint64(len(f.msgs)) + 1 - min(uint64(len(f.msgs)), 5)
	if c, err := strconv.ParseUint(r.URL.Query().Get("cursor"), 10, 64); err == nil {
		fc.next = c + 1
	}
	tok := r.URL.Query().Get("token")
	if f.closed {
		f.mu.Unlock()
		conn.Close()
		return
	}
	f.conns[fc] = true
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		defer func() {
			f.mu.Lock()
			delete(f.conns, fc)
			f.mu.Unlock()
			conn.Close()
		}()
		var req struct {
			Type, ID, Kind, Text string
		}
		for {
			b, op, err := wsutil.ReadClientData(conn)
			if err != nil || op == ws.OpClose {
				return
			}
			req.Type, req.ID = "", ""
			if json.Unmarshal(b, &req) != nil {
				f.write(fc, []byte(`{"type":"error","error":{"code":"bad_json","message":"bad frame"}}`))
				continue
			}
			switch req.Type {
			case "ping":
				f.write(fc, []byte(`{"type":"pong"}`))
			case "send":
				if tok == "" {
					f.write(fc, fmt.Appendf(nil, `{"type":"error","id":%q,"error":{"code":"unauthorized","message":"no token"}}`, req.ID))
					continue
				}
				f.mu.Lock()
				seq := f.appendMsg(tok, req.Text)
				f.mu.Unlock()
				f.write(fc, fmt.Appendf(nil, `{"type":"ack","id":%q,"seq":%d}`, req.ID, seq))
			}
		}
	}()
}

func (f *fakeServer) write(fc *fakeConn, b []byte) error {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	fc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	return ws.WriteFrame(fc.c, ws.NewTextFrame(b))
}

// fanout sends every connection the messages it has not had, each tick.
func (f *fakeServer) fanout() {
	defer f.wg.Done()
	tick := time.NewTicker(f.tick)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		f.mu.Lock()
		head := uint64(len(f.msgs))
		type out struct {
			c     *fakeConn
			b     []byte
			close bool
		}
		var outs []out
		for c := range f.conns {
			if c.next > head {
				continue
			}
			var seqs []uint64
			for s := c.next; s <= head; s++ {
				seqs = append(seqs, s)
			}
			closeIt := false
			if !f.faulted && c.got {
				switch {
				case len(seqs) < 2 && !f.dropOnce:
				case f.gapOnce:
					seqs = seqs[1:]
					f.faulted = true
				case f.dupOnce:
					seqs = append(seqs[:1], seqs...)
					f.faulted = true
				case f.reorderOnce:
					seqs[0], seqs[1] = seqs[1], seqs[0]
					f.faulted = true
				case f.dropOnce:
					closeIt = true
					f.faulted = true
				}
			}
			if closeIt {
				outs = append(outs, out{c: c, close: true})
				continue
			}
			b := []byte(`{"type":"batch","room":"` + f.room + `","messages":[`)
			for i, s := range seqs {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, f.msgs[s-1]...)
			}
			b = fmt.Appendf(b, `],"cursor":%d}`, head)
			c.next = head + 1
			c.got = true
			outs = append(outs, out{c: c, b: b})
		}
		f.mu.Unlock()
		for _, o := range outs {
			if o.close {
				o.c.wmu.Lock()
				ws.WriteFrame(o.c.c, ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "slow reader")))
				o.c.wmu.Unlock()
				o.c.c.Close()
				continue
			}
			f.write(o.c, o.b)
		}
	}
}

// runBench runs the bench with args against f (adding --url, --room, --json
// and --progress=false) and decodes its JSON report.
func runBench(t *testing.T, f *fakeServer, args ...string) (*Report, error) {
	t.Helper()
	base := []string{"--json", "--progress=false"}
	if f != nil {
		base = append(base, "--url", f.srv.URL, "--room", f.room)
	}
	full := append([]string{args[0]}, append(base, args[1:]...)...)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := Run(ctx, full, &out, &errOut)
	if out.Len() == 0 {
		return nil, fmt.Errorf("no output; err %v; stderr %s", err, errOut.String())
	}
	var rep Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("bad JSON report: %v\n%s", jerr, out.String())
	}
	return &rep, err
}
