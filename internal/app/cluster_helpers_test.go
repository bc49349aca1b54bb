package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomcast/internal/auth"
	"roomcast/internal/redistest"
)

// clusterArgs are the flags every node of a test cluster shares. The tests
// check that every message reaches every reader, so a reader that a busy
// machine starves for a few seconds must not be reset by --staleness (a
// feature with its own test).
func clusterArgs(redis, prefix, db string) []string {
	return []string{"--rtmp", "", "--redis", redis, "--redis-prefix", prefix, "--db", db, "--secret", testSecret,
		"--admin-key", testAdminKey, "--render-budget", "0", "--rate-limit", "0", "--tick", "20ms", "--log-level", "warn",
		"--staleness", "-1s"}
}

// startNodes starts n roomcast processes with args (each its own data dir)
// and returns them with a client for each.
func startNodes(t *testing.T, n int, args []string) ([]*redistest.Node, []*server) {
	t.Helper()
	bin := redistest.Binary(t)
	nodes := make([]*redistest.Node, n)
	clients := make([]*server, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func(i int) { // start together: they race on the schema, as real nodes would
			defer wg.Done()
			nodes[i] = redistest.StartNode(t, bin, append([]string{"--data", t.TempDir()}, args...)...)
		}(i)
	}
	wg.Wait()
	for i, nd := range nodes {
		if nd == nil {
			t.FailNow()
		}
		clients[i] = remote(t, nd.URL)
	}
	return nodes, clients
}

// remote is a test client of a node running in another process.
func remote(t *testing.T, url string) *server {
	signer, err := auth.NewSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(c.CloseIdleConnections)
	return &server{t: t, url: url, signer: signer, client: c}
}

// request is a non-fatal HTTP call (usable from any goroutine); it returns
// the status (0 on a transport error) and the body.
func (s *server) request(ctx context.Context, method, path, tok string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, rd)
	if err != nil {
		return 0, nil
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// metric reads one sample from the node's /metrics (0 when absent).
func (s *server) metric(t *testing.T, name string) float64 {
	t.Helper()
	code, raw := s.request(context.Background(), "GET", "/metrics", "", nil)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`)
	m := re.FindSubmatch(raw)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// metricSum adds every series of a metric family whose labels match filter.
func (s *server) metricSum(t *testing.T, name string, filter func(labels string) bool) float64 {
	t.Helper()
	_, raw := s.request(context.Background(), "GET", "/metrics", "", nil)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{([^}]*)\} ([0-9.e+-]+)$`)
	var sum float64
	for _, m := range re.FindAllSubmatch(raw, -1) {
		if filter == nil || filter(string(m[1])) {
			v, _ := strconv.ParseFloat(string(m[2]), 64)
			sum += v
		}
	}
	return sum
}

// seen is what one reader received of a room: message ids by seq, which
// must come gap-free from 1.
type seen struct {
	name string
	mu   sync.Mutex
	ids  []string // ids[i] is seq i+1
	// texts counts the chat texts received (fault tests send each
	// client_msg_id as the text, so a count above 1 is a duplicate).
	texts map[string]int
	err   error
	// dials counts WebSocket connections opened (1 = never reconnected).
	dials atomic.Int32
}

func (r *seen) last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint64(len(r.ids))
}

func (r *seen) add(m msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil || m.Seq == 0 {
		return
	}
	if m.Seq != uint64(len(r.ids))+1 {
		r.err = fmt.Errorf("%s: seq %d after %d", r.name, m.Seq, len(r.ids))
		return
	}
	r.ids = append(r.ids, m.ID)
	if m.Kind == "chat" {
		if r.texts == nil {
			r.texts = map[string]int{}
		}
		r.texts[m.Text]++
	}
}

func (r *seen) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = fmt.Errorf("%s: %w", r.name, err)
	}
	r.mu.Unlock()
}

// readWS follows room over a WebSocket on nodes[0], resuming by cursor on
// the next node whenever the connection is lost, until done says so.
func readWS(ctx context.Context, r *seen, room string, nodes []*server, done func(uint64) bool) {
	i := 0
	for !done(r.last()) && ctx.Err() == nil {
		s := nodes[i%len(nodes)]
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws?room="+room+"&cursor="+strconv.FormatUint(r.last(), 10), nil)
		cancel()
		if err != nil {
			i++
			time.Sleep(50 * time.Millisecond)
			continue
		}
		r.dials.Add(1)
		c.SetReadLimit(16 << 20)
		stop := make(chan struct{})
		go func() { // closes the connection once the reader is done, which ends Read
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if done(r.last()) {
						c.CloseNow()
						return
					}
				}
			}
		}()
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				break
			}
			var f frame
			if err := json.Unmarshal(data, &f); err != nil {
				r.fail(err)
				break
			}
			if f.Type == "batch" && f.Room == room {
				if f.Reset {
					r.fail(fmt.Errorf("reset at cursor %d", r.last()))
				}
				for _, m := range f.Messages {
					if m.Scope != "user" {
						r.add(m)
					}
				}
			}
		}
		close(stop)
		c.Close(websocket.StatusNormalClosure, "")
		if done(r.last()) {
			return
		}
		i++ // lost the node: resume on the next one
	}
}

// readPoll follows room by polling nodes[0] with a cursor, moving to the
// next node on a transport error, until done says so.
func readPoll(ctx context.Context, r *seen, room string, nodes []*server, done func(uint64) bool) {
	i := 0
	for !done(r.last()) && ctx.Err() == nil {
		s := nodes[i%len(nodes)]
		code, raw := s.request(ctx, "GET", fmt.Sprintf("/api/rooms/%s/messages?cursor=%d&limit=100&sid=%s", room, r.last(), r.name), "", nil)
		if code != 200 {
			if code == 0 {
				i++
			}
			time.Sleep(30 * time.Millisecond)
			continue
		}
		var a pollAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			r.fail(err)
			return
		}
		if a.Reset {
			r.fail(fmt.Errorf("reset at cursor %d", r.last()))
			return
		}
		for _, m := range a.Messages {
			r.add(m)
		}
		if len(a.Messages) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// acks records what writers were told: seq → id of every acknowledged send.
type acks struct {
	mu   sync.Mutex
	ids  map[uint64]string
	max  atomic.Uint64
	n503 atomic.Int64
}

func newAcks() *acks { return &acks{ids: map[uint64]string{}} }

func (a *acks) record(seq uint64, id string) {
	a.mu.Lock()
	a.ids[seq] = id
	a.mu.Unlock()
	for {
		m := a.max.Load()
		if seq <= m || a.max.CompareAndSwap(m, seq) {
			return
		}
	}
}

// write sends count chat messages into room through s as user, recording
// acks; 503s are counted and retried with another message.
func write(ctx context.Context, s *server, tok, room string, count int, a *acks, pause time.Duration, errc chan<- error) {
	for i := 0; i < count && ctx.Err() == nil; {
		code, raw := s.request(ctx, "POST", "/api/rooms/"+room+"/messages", tok, map[string]string{"kind": "chat", "text": fmt.Sprint("m", i)})
		switch code {
		case 201:
			var ans sendAnswer
			if err := json.Unmarshal(raw, &ans); err != nil || ans.Seq == 0 {
				errc <- fmt.Errorf("bad ack %s", raw)
				return
			}
			a.record(ans.Seq, ans.ID)
			i++
		case 503:
			var ans sendAnswer
			if json.Unmarshal(raw, &ans); ans.Error == nil || ans.Error.Code != "unavailable" {
				errc <- fmt.Errorf("503 without code unavailable: %s", raw)
				return
			}
			a.n503.Add(1)
			time.Sleep(20 * time.Millisecond)
		case 0:
			time.Sleep(20 * time.Millisecond) // node gone
		default:
			errc <- fmt.Errorf("send: %d %s", code, raw)
			return
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

// checkReaders verifies every reader saw seq 1..upTo gap-free, each seq
// with the same id as the first reader, and every acknowledged message.
func checkReaders(t *testing.T, readers []*seen, a *acks, upTo uint64) {
	t.Helper()
	ref := readers[0]
	for _, r := range readers {
		r.mu.Lock()
		if r.err != nil {
			t.Errorf("%v", r.err)
		} else if uint64(len(r.ids)) < upTo {
			t.Errorf("%s saw %d of %d messages", r.name, len(r.ids), upTo)
		}
		r.mu.Unlock()
	}
	if t.Failed() {
		return
	}
	for _, r := range readers[1:] {
		for i := uint64(0); i < upTo; i++ {
			if r.ids[i] != ref.ids[i] {
				t.Fatalf("%s and %s disagree at seq %d: %s vs %s", r.name, ref.name, i+1, r.ids[i], ref.ids[i])
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for seq, id := range a.ids {
		if seq > upTo || ref.ids[seq-1] != id {
			t.Fatalf("acknowledged message %s (seq %d) was not delivered as such", id, seq)
		}
	}
}
