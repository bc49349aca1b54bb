package quiz

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"roomcast/internal/errs"
	"roomcast/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stateFactories returns two States on the same data (for Redis: two nodes
// on one Redis; for memory: the same object twice).
var stateFactories = map[string]func(t *testing.T) (State, State){
	"memory": func(t *testing.T) (State, State) {
		m, err := NewMemory(context.Background(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m, m
	},
	"redis": func(t *testing.T) (State, State) {
		c := redistest.Client(t)
		p := redistest.Prefix(t, c)
		return NewRedis(c, RedisConfig{Prefix: p}), NewRedis(c, RedisConfig{Prefix: p})
	},
}

func codeOf(err error) string {
	if err == nil {
		return ""
	}
	return errs.From(err).Code
}

// testRules: 3 questions; the answers are 1, 0, 2.
func testRules(id string) Rules {
	return Rules{ID: id, Count: 3, Answers: []int{1, 0, 2}, Options: []int{2, 3, 4}, AnswerMS: 1000, DelayMS: 500, Revivals: 1, Prize: 100}
}

// TestStateContract runs the rules every State must follow on memory and Redis.
func TestStateContract(t *testing.T) {
	for name, mk := range stateFactories {
		t.Run(name, func(t *testing.T) {
			t.Run("whole activity", func(t *testing.T) { contractWhole(t, mk) })
			t.Run("concurrent answers", func(t *testing.T) { contractConcurrent(t, mk) })
			t.Run("operator order", func(t *testing.T) { contractOrder(t, mk) })
		})
	}
}

func mustAnswer(t *testing.T, s State, id, user string, n, opt int, now int64, want string) Result {
	t.Helper()
	r, err := s.Answer(context.Background(), id, Answer{User: user, N: n, Option: opt, Now: now})
	if codeOf(err) != want {
		t.Fatalf("%s answers %d with %d: got %q (%v), want %q", user, n, opt, codeOf(err), err, want)
	}
	return r
}

func contractWhole(t *testing.T, mk func(*testing.T) (State, State)) {
	ctx := context.Background()
	s, s2 := mk(t)
	id := "a1"
	if _, err := s.Live(ctx, id); err != ErrUnknown {
		t.Fatalf("live before init: %v", err)
	}
	if err := s.Init(ctx, testRules(id)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Init(ctx, testRules(id)); err != nil { // idempotent
		t.Fatal(err)
	}
	mustAnswer(t, s, id, "u1", 1, 1, 0, CodeNotRunning)
	if _, err := s.Enroll(ctx, id, []Player{{User: "u1"}}); codeOf(err) != CodeNotRunning {
		t.Fatalf("enroll before start: %v", err)
	}
	l, changed, err := s.Start(ctx, id)
	if err != nil || !changed || l.Status != StatusRunning {
		t.Fatalf("start: %+v %v %v", l, changed, err)
	}
	if _, changed, _ := s2.Start(ctx, id); changed {
		t.Fatal("second start changed")
	}
	now := int64(1_000_000)
	l, changed, err = s.Push(ctx, id, 1, now)
	if err != nil || !changed || l.Current != 1 || l.Deadline != now+1500 {
		t.Fatalf("push 1: %+v %v %v", l, changed, err)
	}
	if l2, changed, err := s2.Push(ctx, id, 1, now+5); err != nil || changed || l2.Deadline != l.Deadline {
		t.Fatalf("push 1 again: %+v %v %v", l2, changed, err)
	}
	// u1 right, u2 wrong with a card (revived), u3 wrong (out), u4 silent,
	// u5 right; "late" enrolls by answering (seen in the room at push).
	added, err := s.Enroll(ctx, id, []Player{{User: "u1"}, {User: "u2", Cards: 2}, {User: "u3"}, {User: "u4"}, {User: "u5"}, {User: "u1"}})
	if err != nil || added != 5 {
		t.Fatalf("enroll: %d %v", added, err)
	}
	if added, _ := s2.Enroll(ctx, id, []Player{{User: "u1"}}); added != 0 {
		t.Fatal("enrolled twice")
	}
	mustAnswer(t, s, id, "nobody", 1, 1, now, CodeNotAPlayer)
	if r, err := s2.Answer(ctx, id, Answer{User: "late", N: 1, Option: 1, Now: now, Enroll: &Player{User: "late", Cards: 1}}); err != nil || !r.Correct || r.CardsLeft != 1 {
		t.Fatalf("enroll by answer: %+v %v", r, err)
	}
	mustAnswer(t, s, id, "u1", 2, 0, now, CodeNotCurrent)
	mustAnswer(t, s, id, "u1", 1, 2, now, CodeInvalid)
	mustAnswer(t, s, id, "u1", 1, -1, now, CodeInvalid)
	if r := mustAnswer(t, s, id, "u1", 1, 1, now+100, ""); !r.Correct || !r.Alive || r.Revived || r.N != 1 {
		t.Fatalf("u1: %+v", r)
	}
	mustAnswer(t, s2, id, "u1", 1, 1, now+100, CodeAlreadyAnswered)
	if r := mustAnswer(t, s, id, "u2", 1, 0, now+1500, ""); r.Correct || !r.Alive || !r.Revived || r.CardsLeft != 1 {
		t.Fatalf("u2 revived: %+v", r)
	}
	if r := mustAnswer(t, s2, id, "u3", 1, 0, now, ""); r.Correct || r.Alive || r.Revived {
		t.Fatalf("u3 out: %+v", r)
	}
	mustAnswer(t, s, id, "u3", 1, 1, now, CodeEliminated)
	mustAnswer(t, s, id, "u5", 1, 1, now+1501, CodeTooLate)
	// u5 answered too late: out by not answering. Reveal before the deadline is refused.
	if _, _, _, err := s.Reveal(ctx, id, 1, now+1499); codeOf(err) != CodeTooEarly {
		t.Fatalf("early reveal: %v", err)
	}
	c, err := s2.Counts(ctx, id, 1)
	if err != nil || fmt.Sprint(c.Counts) != "[2 2]" || c.Answers != 4 {
		t.Fatalf("counts: %+v %v", c, err)
	}
	if _, _, err := s.Push(ctx, id, 2, now+1600); codeOf(err) != CodeOutOfOrder {
		t.Fatalf("push 2 before reveal 1: %v", err)
	}
	rv, l, changed, err := s.Reveal(ctx, id, 1, now+1500)
	// players u1..u5 + late = 6; in: u1, u2 (revived), late = 3.
	if err != nil || !changed || rv.Alive != 3 || rv.Eliminated != 3 || fmt.Sprint(rv.Counts) != "[2 2]" || l.Revealed != 1 || l.Alive != 3 {
		t.Fatalf("reveal 1: %+v %+v %v %v", rv, l, changed, err)
	}
	if rv2, _, changed, err := s2.Reveal(ctx, id, 1, now+1600); err != nil || changed || rv2.Alive != 3 {
		t.Fatalf("reveal again: %+v %v %v", rv2, changed, err)
	}
	if _, err := s.Enroll(ctx, id, []Player{{User: "u9"}}); codeOf(err) != CodeNotRunning {
		t.Fatalf("enroll after reveal 1: %v", err)
	}
	mustAnswer(t, s, id, "u1", 1, 1, now+1600, CodeNotCurrent)

	now += 10_000
	if _, _, err := s.Push(ctx, id, 2, now); err != nil {
		t.Fatal(err)
	}
	mustAnswer(t, s, id, "u5", 2, 0, now, CodeOutOfSequence)
	mustAnswer(t, s, id, "u4", 2, 0, now, CodeOutOfSequence)
	mustAnswer(t, s, id, "u1", 2, 0, now, "")
	// u2 used the one card this activity allows: a wrong answer is out.
	if r := mustAnswer(t, s, id, "u2", 2, 1, now, ""); r.Alive || r.Revived || r.CardsLeft != 1 {
		t.Fatalf("u2 second wrong: %+v", r)
	}
	if r := mustAnswer(t, s, id, "late", 2, 2, now, ""); !r.Revived || !r.Alive || r.CardsLeft != 0 {
		t.Fatalf("late revived: %+v", r)
	}
	if _, _, _, err := s.Reveal(ctx, id, 2, now+1500); err != nil {
		t.Fatal(err)
	}
	now += 10_000
	if _, _, err := s.Push(ctx, id, 3, now); err != nil {
		t.Fatal(err)
	}
	mustAnswer(t, s, id, "u1", 3, 2, now, "")
	if r := mustAnswer(t, s, id, "late", 3, 0, now, ""); r.Alive || r.Revived {
		t.Fatalf("late out: %+v", r)
	}
	if _, err := s.Settle(ctx, id); codeOf(err) != CodeNotEnded {
		t.Fatalf("settle before end: %v", err)
	}
	rv, l, _, err = s2.Reveal(ctx, id, 3, now+1500)
	if err != nil || l.Status != StatusEnded || rv.Alive != 1 || rv.Eliminated != 5 {
		t.Fatalf("last reveal: %+v %+v %v", rv, l, err)
	}
	mustAnswer(t, s, id, "u1", 3, 2, now, CodeNotRunning)
	if w, err := s2.Winners(ctx, id); err != nil || fmt.Sprint(w) != "[u1]" {
		t.Fatalf("winners %v %v", w, err)
	}
	if r, err := s.Revived(ctx, id); err != nil || fmt.Sprint(r) != "[late u2]" {
		t.Fatalf("revived %v %v", r, err)
	}
	if ch, err := s.Settle(ctx, id); err != nil || !ch {
		t.Fatalf("settle: %v %v", ch, err)
	}
	if ch, err := s2.Settle(ctx, id); err != nil || ch {
		t.Fatalf("settle twice: %v %v", ch, err)
	}
	if l, _ := s2.Live(ctx, id); l.Status != StatusSettled {
		t.Fatalf("status %q", l.Status)
	}
	if f, _ := s.Mark(ctx, id, "push:1"); !f {
		t.Fatal("first mark")
	}
	if f, _ := s2.Mark(ctx, id, "push:1"); f {
		t.Fatal("second mark")
	}
	if err := s2.Unmark(ctx, id, "push:1"); err != nil {
		t.Fatal(err)
	}
	if f, _ := s.Mark(ctx, id, "push:1"); !f {
		t.Fatal("mark after unmark")
	}
}

// contractConcurrent: the same player answering at once through two nodes
// gets one answer and one already_answered; counts stay exact.
func contractConcurrent(t *testing.T, mk func(*testing.T) (State, State)) {
	ctx := context.Background()
	s, s2 := mk(t)
	id := "a2"
	_ = s.Init(ctx, testRules(id))
	s.Start(ctx, id)
	s.Push(ctx, id, 1, 0)
	const players = 50
	var ps []Player
	for i := range players {
		ps = append(ps, Player{User: fmt.Sprint("p", i)})
	}
	if _, err := s2.Enroll(ctx, id, ps); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := range players {
		for _, st := range []State{s, s2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := st.Answer(ctx, id, Answer{User: fmt.Sprint("p", i), N: 1, Option: 1, Now: 1})
				mu.Lock()
				codes[codeOf(err)]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if codes[""] != players || codes[CodeAlreadyAnswered] != players {
		t.Fatalf("codes %v", codes)
	}
	if c, _ := s.Counts(ctx, id, 1); c.Answers != players || c.Counts[1] != players || c.Alive != players {
		t.Fatalf("counts %+v", c)
	}
}

// contractOrder: operator steps out of turn are refused with clear codes.
func contractOrder(t *testing.T, mk func(*testing.T) (State, State)) {
	ctx := context.Background()
	s, _ := mk(t)
	id := "a3"
	_ = s.Init(ctx, testRules(id))
	if _, _, err := s.Push(ctx, id, 1, 0); codeOf(err) != CodeNotRunning {
		t.Fatalf("push before start: %v", err)
	}
	if _, _, _, err := s.Reveal(ctx, id, 1, 0); codeOf(err) != CodeNotRunning {
		t.Fatalf("reveal before start: %v", err)
	}
	s.Start(ctx, id)
	if _, _, err := s.Push(ctx, id, 2, 0); codeOf(err) != CodeOutOfOrder {
		t.Fatalf("push 2 first: %v", err)
	}
	if _, _, err := s.Push(ctx, id, 4, 0); codeOf(err) != CodeOutOfOrder {
		t.Fatalf("push 4 of 3: %v", err)
	}
	if _, _, _, err := s.Reveal(ctx, id, 1, 0); codeOf(err) != CodeOutOfOrder {
		t.Fatalf("reveal unpushed: %v", err)
	}
	if _, err := s.Counts(ctx, id, 9); codeOf(err) != CodeNotCurrent {
		t.Fatalf("counts of 9: %v", err)
	}
}

// memSaver keeps snapshots in memory (the SQL store in the app).
type memSaver struct {
	mu    sync.Mutex
	snaps map[string][]byte
}

func (s *memSaver) LoadLive(context.Context) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range s.snaps {
		out[k] = v
	}
	return out, nil
}

func (s *memSaver) SaveLive(_ context.Context, id string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snaps[id] = append([]byte(nil), b...)
	return nil
}

func (s *memSaver) SavePackets(context.Context, string, int, []Packet) error { return nil }

// TestMemorySnapshots: a memory State closed and reopened on its snapshots
// decides exactly as before (players, cards, answers, tallies, marks).
func TestMemorySnapshots(t *testing.T) {
	ctx := context.Background()
	sv := &memSaver{snaps: map[string][]byte{}}
	m, err := NewMemory(ctx, sv, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := "snap"
	_ = m.Init(ctx, testRules(id))
	m.Start(ctx, id)
	m.Push(ctx, id, 1, 0)
	m.Enroll(ctx, id, []Player{{User: "a", Cards: 1}, {User: "b"}})
	mustAnswer(t, m, id, "a", 1, 0, 1, "") // revived
	m.Mark(ctx, id, "push:1")
	m.Close()
	m2, err := NewMemory(ctx, sv, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	mustAnswer(t, m2, id, "a", 1, 1, 1, CodeAlreadyAnswered)
	if r := mustAnswer(t, m2, id, "b", 1, 0, 1, ""); r.Alive {
		t.Fatal("b had no card")
	}
	if f, _ := m2.Mark(ctx, id, "push:1"); f {
		t.Fatal("mark lost")
	}
	if c, _ := m2.Counts(ctx, id, 1); fmt.Sprint(c.Counts) != "[2 0]" || c.Alive != 1 {
		t.Fatalf("counts %+v", c)
	}
	if r, _ := m2.Revived(ctx, id); fmt.Sprint(r) != "[a]" {
		t.Fatalf("revived %v", r)
	}
}
