package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"roomcast/internal/auth"
)

// tokens hands out sender tokens: the fixed --token, tokens minted with
// --secret (one user per sender), or guest tokens from POST /api/guest.
type tokens struct {
	fixed   string
	signer  *auth.Signer
	level   int
	ttl     time.Duration
	t       target
	timeout time.Duration
}

func newTokens(c *common, t target, ttl time.Duration) (*tokens, error) {
	tk := &tokens{fixed: c.token, level: c.level, ttl: ttl, t: t, timeout: c.timeout}
	if c.token == "" && c.secret != "" {
		s, err := auth.NewSigner(c.secret)
		if err != nil {
			return nil, fmt.Errorf("bench: --secret: %w", err)
		}
		tk.signer = s
	}
	if c.level < 0 || c.level > 100 {
		return nil, errors.New("bench: --level must be 0–100")
	}
	return tk, nil
}

// get returns a token for the user sub.
func (tk *tokens) get(ctx context.Context, sub string) (string, error) {
	switch {
	case tk.fixed != "":
		return tk.fixed, nil
	case tk.signer != nil:
		return tk.signer.Sign(auth.Claims{Sub: sub, Name: sub, Level: tk.level, Role: auth.RoleViewer}, tk.ttl)
	}
	hc := newRawHTTP(ctx, tk.t.addr, tk.t.base.Host, tk.timeout)
	defer hc.release()
	status, body, err := hc.Do("POST", []byte(tk.t.base.Path+"/api/guest"), "", []byte{})
	if err != nil {
		return "", fmt.Errorf("bench: guest token: %w", err)
	}
	var ans struct {
		Token string `json:"token"`
	}
	if status/100 != 2 || json.Unmarshal(body, &ans) != nil || ans.Token == "" {
		return "", fmt.Errorf("bench: guest token: status %d: %.200s (pass --token or --secret)", status, body)
	}
	return ans.Token, nil
}

// sendSpec says what the writers send and how fast.
type sendSpec struct {
	rate     float64 // total messages/s over all writers; 0 = as fast as possible
	writers  int
	via      string // "http" or "ws"
	kind     string
	gift     string
	textSize int
	honour   bool // sleep retry_after_ms on 429
	inflight int  // ws: sends awaiting an ack per connection
	msgID    bool // give each message a client_msg_id, as the JS client does
}

// appendMessage appends the JSON of one message sent at nano; wsID, if not
// empty, makes it a WebSocket "send" frame.
func (sp *sendSpec) appendMessage(b []byte, wsID []byte, nano int64) []byte {
	b = append(b, '{')
	if wsID != nil {
		b = append(b, `"type":"send","id":"`...)
		b = append(b, wsID...)
		b = append(b, `",`...)
	}
	b = append(b, `"kind":"`...)
	b = append(b, sp.kind...)
	b = append(b, '"')
	if sp.msgID { // unique per writer: a writer's sends have distinct times
		b = append(b, `,"client_msg_id":"b`...)
		b = strconv.AppendInt(b, nano, 36)
		b = append(b, '"')
	}
	if sp.kind == "gift" {
		b = append(b, `,"gift":{"id":"`...)
		b = append(b, sp.gift...)
		b = append(b, `","count":1}`...)
	} else {
		b = append(b, `,"text":"`+benchMark...)
		n := len(b)
		b = strconv.AppendInt(b, nano, 10)
		if pad := sp.textSize - (len(b) - n + len(benchMark)); pad > 0 {
			b = append(b, ' ')
			for ; pad > 1; pad-- {
				b = append(b, 'x')
			}
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// due returns when writer i sends its n-th message.
func (sp *sendSpec) due(start time.Time, i, n int) time.Time {
	if sp.rate <= 0 {
		return start
	}
	k := float64(n*sp.writers + i)
	return start.Add(time.Duration(k / sp.rate * float64(time.Second)))
}

// pace paces writer i of sp from start: wait(n) blocks until its n-th
// message is due.
type pace struct {
	sp    *sendSpec
	i     int
	start time.Time
	timer *time.Timer
}

func (sp *sendSpec) pace(i int, start time.Time) *pace {
	p := &pace{sp: sp, i: i, start: start, timer: time.NewTimer(time.Hour)}
	p.timer.Stop()
	return p
}

// wait blocks until message n is due; false when ctx ended first.
func (p *pace) wait(ctx context.Context, n int) bool {
	if d := time.Until(p.sp.due(p.start, p.i, n)); d > 0 {
		p.timer.Reset(d)
		select {
		case <-ctx.Done():
			p.timer.Stop()
			return false
		case <-p.timer.C:
		}
	}
	return ctx.Err() == nil
}

// sendStats gathers what the writers saw.
type sendStats struct {
	sent  atomic.Uint64
	acked atomic.Uint64
	errs  atomic.Uint64
	lat   Hist // send→ack
	top   atomic.Uint64

	mu     sync.Mutex
	errors errCounter
	seqs   []uint64
}

func (s *sendStats) ack(seq uint64, d time.Duration) {
	s.acked.Add(1)
	s.lat.Record(d)
	storeMax(&s.top, seq)
}

// storeMax raises a to v if v is higher.
func storeMax(a *atomic.Uint64, v uint64) {
	for {
		m := a.Load()
		if v <= m || a.CompareAndSwap(m, v) {
			return
		}
	}
}

func (s *sendStats) fail(label string) {
	s.errs.Add(1)
	s.mu.Lock()
	s.errors.add(label, 1)
	s.mu.Unlock()
}

func (s *sendStats) addSeqs(seqs []uint64) {
	s.mu.Lock()
	s.seqs = append(s.seqs, seqs...)
	s.mu.Unlock()
}

func statusLabel(status int, code []byte) string {
	if len(code) > 0 {
		return strconv.Itoa(status) + " " + string(code)
	}
	return strconv.Itoa(status)
}

// httpWriter posts messages until ctx ends: on schedule, or back to back when
// sp.rate is 0, as its users toks in turn. One request is in flight at a time
// per writer.
func (s *sendStats) httpWriter(ctx context.Context, hc *rawHTTP, sp *sendSpec, i int, path []byte, toks []string, start time.Time) {
	var (
		body []byte
		fi   frameInfo
		seqs []uint64
		pace = sp.pace(i, start)
	)
	defer func() { s.addSeqs(seqs) }()
	for n := 0; pace.wait(ctx, n); n++ {
		t0 := time.Now()
		body = sp.appendMessage(body[:0], nil, t0.UnixNano())
		s.sent.Add(1)
		status, resp, err := hc.Do("POST", path, toks[n%len(toks)], body)
		d := time.Since(t0)
		if err != nil {
			s.fail(errLabel(err))
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		serr := scanFrame(resp, &fi)
		if status == 201 || status == 200 {
			if serr != nil || !fi.hasSeq {
				s.fail(strconv.Itoa(status) + " without seq")
				continue
			}
			s.ack(fi.seq, d)
			seqs = append(seqs, fi.seq)
			continue
		}
		s.fail(statusLabel(status, fi.code))
		if status == 429 && sp.honour && fi.retryAfterMs > 0 {
			sleepCtx(ctx, time.Duration(fi.retryAfterMs)*time.Millisecond)
		}
	}
}

// SendReport describes what the writers sent and the server acknowledged.
type SendReport struct {
	Writers    int               `json:"writers"`
	Users      int               `json:"users,omitempty"` // distinct users the writers sent as
	Via        string            `json:"via"`
	TargetRate float64           `json:"target_rate"` // messages/s, 0 = as fast as possible
	Sent       uint64            `json:"sent"`
	Acked      uint64            `json:"acked"`
	AcksPerS   float64           `json:"acks_per_s"`
	Latency    Latency           `json:"latency"` // send→ack
	Errors     map[string]uint64 `json:"errors"`  // by status and code, or transport error
	DupSeqs    uint64            `json:"duplicate_seqs"`
	MinSeq     uint64            `json:"min_seq"`
	MaxSeq     uint64            `json:"max_seq"`
}

func (s *sendStats) report(sp *sendSpec, window time.Duration) *SendReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &SendReport{
		Writers: sp.writers, Via: sp.via, TargetRate: sp.rate,
		Sent: s.sent.Load(), Acked: s.acked.Load(), Latency: s.lat.Summary(),
		Errors: map[string]uint64{},
	}
	r.AcksPerS = round1(perUnit(float64(r.Acked), window.Seconds()))
	for k, v := range s.errors.m {
		r.Errors[k] = v
	}
	seqs := slices.Clone(s.seqs)
	slices.Sort(seqs)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] == seqs[i-1] {
			r.DupSeqs++
		}
	}
	if len(seqs) > 0 {
		r.MinSeq, r.MaxSeq = seqs[0], seqs[len(seqs)-1]
	}
	return r
}

// startWriters starts n writers for the window ending with winCtx: over
// HTTP (one keep-alive connection each, opened on runCtx) as the users
// toks[i], toks[i+n], … in turn, or over the WebSocket clients[i]. writers
// tracks them.
func (s *sendStats) startWriters(runCtx, winCtx context.Context, writers *sync.WaitGroup, t target, o *common, sp *sendSpec,
	n int, toks []string, clients []*wsClient, start time.Time) {
	path := []byte(t.base.Path + "/api/rooms/" + o.room + "/messages")
	for i := 0; i < n; i++ {
		writers.Add(1)
		if sp.via == "http" {
			hc := newRawHTTP(runCtx, t.addr, t.base.Host, o.timeout)
			var mine []string
			for j := i; j < len(toks); j += n {
				mine = append(mine, toks[j])
			}
			go func(i int) {
				defer writers.Done()
				defer hc.release()
				s.httpWriter(winCtx, hc, sp, i, path, mine, start)
			}(i)
			continue
		}
		go func(c *wsClient, i int) {
			defer writers.Done()
			c.wsWriter(winCtx, sp, i, start)
		}(clients[i], i)
	}
}
