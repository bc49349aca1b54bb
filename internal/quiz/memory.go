package quiz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Memory is the single-node State. Every decision is made under the
// activity's lock. With a Saver it survives restarts: each operator step is
// saved at once, answers within a second (and at Close), as one JSON
// snapshot per activity.
type Memory struct {
	saver Saver
	log   *slog.Logger

	mu   sync.Mutex
	acts map[string]*memAct // guarded by mu

	stop chan struct{}
	done chan struct{}
}

var _ State = (*Memory)(nil)

// Saver keeps the memory State's snapshots (the SQL store).
type Saver interface {
	LoadLive(ctx context.Context) (map[string][]byte, error)
	SaveLive(ctx context.Context, id string, snapshot []byte) error
	// SavePackets writes rain packets paid (idempotent by packet): a
	// packet won is in SQL before its winner is told.
	SavePackets(ctx context.Context, id string, k int, ps []Packet) error
}

// memAct is one activity; its fields are guarded by mu. They are exported
// for the JSON snapshot only.
type memAct struct {
	mu    sync.Mutex
	dirty bool
	seq   uint64 // guarded by mu: snapshots taken
	memState

	saveMu sync.Mutex
	saved  uint64 // guarded by saveMu: the newest snapshot written
}

// memState is what a snapshot keeps of an activity.
type memState struct {
	R       memRules
	L       Live
	Players map[string]*memPlayer
	Counts  [][]int64 // per question, per option
	Answers []int64   // per question
	OK      []int64   // per question: answered and still in
	Marks   map[string]bool
	Rains   map[string]*memRain // by rain number
}

type memRules struct {
	Count    int
	Answers  []int
	Options  []int
	AnswerMS int64
	DelayMS  int64
	Revivals int
}

type memPlayer struct {
	Alive bool `json:"a"`
	Cards int  `json:"c"`
	Used  int  `json:"u"`
	Last  int  `json:"l"`
}

// NewMemory returns a memory State; saver may be nil (nothing survives a
// restart). It loads the saved snapshots first.
func NewMemory(ctx context.Context, saver Saver, log *slog.Logger) (*Memory, error) {
	if log == nil {
		log = slog.Default()
	}
	m := &Memory{saver: saver, log: log, acts: map[string]*memAct{}, stop: make(chan struct{}), done: make(chan struct{})}
	if saver != nil {
		snaps, err := saver.LoadLive(ctx)
		if err != nil {
			return nil, err
		}
		for id, b := range snaps {
			a, err := restore(b)
			if err != nil {
				log.Warn("quiz: bad snapshot", "activity", id, "err", err)
				continue
			}
			m.acts[id] = a
		}
		go m.flusher()
	} else {
		close(m.done)
	}
	return m, nil
}

func (m *Memory) flusher() {
	defer close(m.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			m.flush()
			return
		case <-t.C:
			m.flush()
		}
	}
}

// flush saves every activity changed since its last save.
func (m *Memory) flush() {
	m.mu.Lock()
	ids := make([]string, 0, len(m.acts))
	for id := range m.acts {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	for _, id := range ids {
		m.mu.Lock()
		a := m.acts[id]
		m.mu.Unlock()
		a.mu.Lock()
		if a.dirty {
			m.saveUnlock(id, a)
		} else {
			a.mu.Unlock()
		}
	}
}

// snapPlayer is a player as a snapshot lists it (encodeSnapshot): the
// players are a list of {"id","a","c","u","l"} rather than a map.
type snapPlayer struct {
	U string `json:"id"`
	memPlayer
}

// encodeSnapshot is json.Marshal(snapshot of a), a.mu held. The players
// (all but a few hundred bytes of it) are encoded by hand, without
// reflection or a copy of the map: it runs under the activity's lock,
// every second while answers arrive, so it is kept short.
func (a *memAct) encodeSnapshot() ([]byte, error) {
	head := a.memState
	head.Players = nil
	b, err := json.Marshal(head)
	if err != nil {
		return nil, err
	}
	at := bytes.Index(b, []byte(`"Players":null`))
	if at < 0 {
		return nil, errors.New("quiz: snapshot: no players field")
	}
	out := make([]byte, 0, len(b)+len(a.Players)*(40+24))
	out = append(append(out, b[:at]...), `"Players":[`...)
	first := true
	for u, p := range a.Players {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, `{"id":`...)
		out = appendJSONString(out, u)
		out = append(out, `,"a":`...)
		out = strconv.AppendBool(out, p.Alive)
		out = append(out, `,"c":`...)
		out = strconv.AppendInt(out, int64(p.Cards), 10)
		out = append(out, `,"u":`...)
		out = strconv.AppendInt(out, int64(p.Used), 10)
		out = append(out, `,"l":`...)
		out = strconv.AppendInt(out, int64(p.Last), 10)
		out = append(out, '}')
	}
	out = append(out, ']')
	return append(out, b[at+len(`"Players":null`):]...), nil
}

// appendJSONString appends s as a JSON string, as encoding/json would
// accept it back (plain printable ASCII is copied, anything else is left to
// encoding/json).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}

// restore loads a snapshot written by encodeSnapshot (or, before, the plain memAct).
func restore(b []byte) (*memAct, error) {
	var s struct {
		memState
		Players json.RawMessage
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	a := &memAct{memState: s.memState}
	a.Players = map[string]*memPlayer{}
	if len(s.Players) > 0 && s.Players[0] == '[' {
		var ps []snapPlayer
		if err := json.Unmarshal(s.Players, &ps); err != nil {
			return nil, err
		}
		for _, p := range ps {
			a.Players[p.U] = &memPlayer{Alive: p.Alive, Cards: p.Cards, Used: p.Used, Last: p.Last}
		}
	} else if len(s.Players) > 0 {
		if err := json.Unmarshal(s.Players, &a.Players); err != nil {
			return nil, err
		}
	}
	if a.Marks == nil {
		a.Marks = map[string]bool{}
	}
	return a, nil
}

// saveUnlock snapshots a, whose lock is held, releases the lock and writes
// the snapshot: the write (a SQL statement) never holds up the decisions.
// Snapshots are written in the order they were taken; one overtaken by a
// newer snapshot's write is dropped. It returns when a's state as of the
// call is written (or the write failed: a stays dirty for the flusher).
func (m *Memory) saveUnlock(id string, a *memAct) {
	if m.saver == nil {
		a.mu.Unlock()
		return
	}
	b, err := a.encodeSnapshot()
	a.dirty = false
	a.seq++
	seq := a.seq
	a.mu.Unlock()
	if err == nil {
		a.saveMu.Lock()
		if seq > a.saved {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err = m.saver.SaveLive(ctx, id, b); err == nil {
				a.saved = seq
			}
			cancel()
		}
		a.saveMu.Unlock()
	}
	if err != nil {
		m.log.Warn("quiz: save live state", "activity", id, "err", err)
		a.mu.Lock()
		a.dirty = true
		a.mu.Unlock()
	}
}

// Close saves what changed and stops the flusher.
func (m *Memory) Close() error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
	return nil
}

func (m *Memory) act(id string) (*memAct, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.acts[id]
	if a == nil {
		return nil, ErrUnknown
	}
	return a, nil
}

// with runs fn under id's lock; save says to snapshot at once afterwards.
func (m *Memory) with(id string, save bool, fn func(a *memAct) error) error {
	a, err := m.act(id)
	if err != nil {
		return err
	}
	a.mu.Lock()
	locked := true
	defer func() {
		if locked { // fn panicked
			a.mu.Unlock()
		}
	}()
	err = fn(a)
	locked = false
	if save && a.dirty {
		m.saveUnlock(id, a)
	} else {
		a.mu.Unlock()
	}
	return err
}

// Init implements State.
func (m *Memory) Init(_ context.Context, r Rules) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.acts[r.ID] != nil {
		return nil
	}
	a := &memAct{dirty: true, memState: memState{R: memRules{Count: r.Count, Answers: r.Answers, Options: r.Options, AnswerMS: r.AnswerMS, DelayMS: r.DelayMS, Revivals: r.Revivals},
		L: Live{Status: StatusScheduled}, Players: map[string]*memPlayer{}, Counts: make([][]int64, r.Count),
		Answers: make([]int64, r.Count), OK: make([]int64, r.Count), Marks: map[string]bool{}}}
	for i, n := range r.Options {
		a.Counts[i] = make([]int64, n)
	}
	m.acts[r.ID] = a
	return nil
}

// Live implements State.
func (m *Memory) Live(_ context.Context, id string) (l Live, err error) {
	err = m.with(id, false, func(a *memAct) error { l = a.L; return nil })
	return l, err
}

// Start implements State.
func (m *Memory) Start(_ context.Context, id string) (l Live, changed bool, err error) {
	err = m.with(id, true, func(a *memAct) error {
		if a.L.Status == StatusScheduled {
			a.L.Status, changed, a.dirty = StatusRunning, true, true
		}
		l = a.L
		return nil
	})
	return l, changed, err
}

// Push implements State.
func (m *Memory) Push(_ context.Context, id string, n int, now int64) (l Live, changed bool, err error) {
	err = m.with(id, true, func(a *memAct) error {
		if err := pushCheck(a.L, a.R.Count, n); err != nil || a.L.Current >= n {
			l = a.L
			return err
		}
		a.L.Current, a.L.PushedAt, a.L.Deadline = n, now, now+a.R.AnswerMS+a.R.DelayMS
		changed, a.dirty, l = true, true, a.L
		return nil
	})
	return l, changed, err
}

// pushCheck is the rule for pushing question n; nil with Current ≥ n means
// the push already took effect.
func pushCheck(l Live, count, n int) error {
	switch {
	case l.Status != StatusRunning && !(l.Current >= n && n >= 1):
		return codeErr(CodeNotRunning)
	case n < 1 || n > count:
		return codeErr(CodeOutOfOrder)
	case l.Current >= n:
		return nil
	case n != l.Current+1 || l.Revealed != l.Current:
		return codeErr(CodeOutOfOrder)
	}
	return nil
}

// Enroll implements State.
func (m *Memory) Enroll(_ context.Context, id string, ps []Player) (added int, err error) {
	err = m.with(id, false, func(a *memAct) error {
		if a.L.Status != StatusRunning || a.L.Revealed > 0 {
			return codeErr(CodeNotRunning)
		}
		for _, p := range ps {
			if enrollLocked(a, p) {
				added++
			}
		}
		return nil
	})
	return added, err
}

func enrollLocked(a *memAct, p Player) bool {
	if p.User == "" || a.Players[p.User] != nil {
		return false
	}
	a.Players[p.User] = &memPlayer{Alive: true, Cards: max(0, p.Cards)}
	a.L.Players++
	if a.L.Revealed == 0 {
		a.L.Alive = a.L.Players
	}
	a.dirty = true
	return true
}

// Answer implements State.
func (m *Memory) Answer(_ context.Context, id string, in Answer) (res Result, err error) {
	err = m.with(id, false, func(a *memAct) error {
		l := a.L
		if l.Status != StatusRunning {
			return codeErr(CodeNotRunning)
		}
		p := a.Players[in.User]
		if p == nil && in.Enroll != nil && l.Current == 1 && l.Revealed == 0 {
			enrollLocked(a, Player{User: in.User, Cards: in.Enroll.Cards})
			p = a.Players[in.User]
		}
		switch {
		case p == nil:
			return codeErr(CodeNotAPlayer)
		case !p.Alive:
			return codeErr(CodeEliminated)
		case in.N != l.Current || l.Revealed >= in.N:
			return codeErr(CodeNotCurrent)
		case p.Last < in.N-1:
			return codeErr(CodeOutOfSequence)
		case in.Now > l.Deadline:
			return codeErr(CodeTooLate)
		case p.Last >= in.N:
			return codeErr(CodeAlreadyAnswered)
		case in.Option < 0 || in.Option >= a.R.Options[in.N-1]:
			return codeErr(CodeInvalid)
		}
		i := in.N - 1
		p.Last = in.N
		a.Counts[i][in.Option]++
		a.Answers[i]++
		res = Result{N: in.N, Correct: in.Option == a.R.Answers[i], Alive: true}
		if !res.Correct {
			if p.Cards-p.Used > 0 && p.Used < a.R.Revivals {
				p.Used++
				res.Revived = true
			} else {
				p.Alive, res.Alive = false, false
			}
		}
		if p.Alive {
			a.OK[i]++
		}
		res.CardsLeft = p.Cards - p.Used
		a.dirty = true
		return nil
	})
	return res, err
}

// Counts implements State.
func (m *Memory) Counts(_ context.Context, id string, n int) (r Reveal, err error) {
	err = m.with(id, false, func(a *memAct) error {
		if n < 1 || n > a.R.Count {
			return codeErr(CodeNotCurrent)
		}
		r = tallyLocked(a, n)
		return nil
	})
	return r, err
}

func tallyLocked(a *memAct, n int) Reveal {
	i := n - 1
	r := Reveal{Counts: append([]int64(nil), a.Counts[i]...), Answers: a.Answers[i], Alive: a.OK[i]}
	r.Eliminated = a.L.Players - r.Alive
	return r
}

// Reveal implements State.
func (m *Memory) Reveal(_ context.Context, id string, n int, now int64) (r Reveal, l Live, changed bool, err error) {
	err = m.with(id, true, func(a *memAct) error {
		if err := revealCheck(a.L, n, now); err != nil || a.L.Revealed >= n {
			l = a.L
			if err == nil {
				r = tallyLocked(a, n)
			}
			return err
		}
		r = tallyLocked(a, n)
		a.L.Revealed, a.L.Alive = n, r.Alive
		if n == a.R.Count {
			a.L.Status = StatusEnded
		}
		l, changed, a.dirty = a.L, true, true
		return nil
	})
	return r, l, changed, err
}

// revealCheck is the rule for revealing question n; nil with Revealed ≥ n
// means it already took effect.
func revealCheck(l Live, n int, now int64) error {
	switch {
	case n >= 1 && l.Revealed >= n:
		return nil
	case l.Status != StatusRunning:
		return codeErr(CodeNotRunning)
	case n != l.Current || n < 1:
		return codeErr(CodeOutOfOrder)
	case now < l.Deadline:
		return codeErr(CodeTooEarly)
	}
	return nil
}

// Winners implements State: players who answered the last question and are
// still in, in byte order.
func (m *Memory) Winners(_ context.Context, id string) (out []string, err error) {
	err = m.with(id, false, func(a *memAct) error {
		for u, p := range a.Players {
			if p.Alive && p.Last == a.R.Count {
				out = append(out, u)
			}
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Revived implements State.
func (m *Memory) Revived(_ context.Context, id string) (out []string, err error) {
	err = m.with(id, false, func(a *memAct) error {
		for u, p := range a.Players {
			if p.Used > 0 {
				out = append(out, u)
			}
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Settle implements State.
func (m *Memory) Settle(_ context.Context, id string) (changed bool, err error) {
	err = m.with(id, true, func(a *memAct) error {
		switch a.L.Status {
		case StatusSettled:
		case StatusEnded:
			a.L.Status, changed, a.dirty = StatusSettled, true, true
		default:
			return codeErr(CodeNotEnded)
		}
		return nil
	})
	return changed, err
}

// Mark implements State.
func (m *Memory) Mark(_ context.Context, id, step string) (first bool, err error) {
	err = m.with(id, true, func(a *memAct) error {
		if !a.Marks[step] {
			a.Marks[step], first, a.dirty = true, true, true
		}
		return nil
	})
	return first, err
}

// Unmark implements State.
func (m *Memory) Unmark(_ context.Context, id, step string) error {
	return m.with(id, true, func(a *memAct) error {
		delete(a.Marks, step)
		a.dirty = true
		return nil
	})
}
