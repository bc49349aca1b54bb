package quiz

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
)

// TestEncodeSnapshot: the hand-encoded snapshot is valid JSON and restores
// to the state it was taken from, for user ids that need escaping too.
func TestEncodeSnapshot(t *testing.T) {
	a := &memAct{memState: memState{
		R: memRules{Count: 2, Answers: []int{1, 0}, Options: []int{2, 3}, AnswerMS: 10000, Revivals: 1},
		L: Live{Status: StatusRunning, Current: 1, Players: 5, Alive: 5},
		Players: map[string]*memPlayer{
			"plain": {Alive: true, Cards: 2, Used: 1, Last: 1}, `quo"te`: {Alive: false}, `back\slash`: {Last: 1},
			"ünï<&>": {Alive: true, Cards: 1}, "ctl\x01\n": {Alive: true}, "": {},
		},
		Counts: [][]int64{{3, 1}, {0, 0, 0}}, Answers: []int64{4, 0}, OK: []int64{3, 0},
		Marks: map[string]bool{"push:1": true},
		Rains: map[string]*memRain{"0": {Amounts: []int64{5, 7}, Users: map[string]int{"x": 1}, Won: []Packet{}}},
	}}
	b, err := a.encodeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("not JSON: %s", b)
	}
	got, err := restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.memState, a.memState) {
		t.Fatalf("restored\n%+v\nwant\n%+v", got.memState, a.memState)
	}
}

// BenchmarkEncodeSnapshot: one snapshot of a 10,000-player activity (taken
// under its lock every second while answers arrive).
func BenchmarkEncodeSnapshot(b *testing.B) {
	m, _ := NewMemory(context.Background(), nil, nil)
	defer m.Close()
	ctx := context.Background()
	_ = m.Init(ctx, Rules{ID: "s", Count: 3, Answers: []int{1, 1, 1}, Options: []int{4, 4, 4}, AnswerMS: 1 << 40, Revivals: 1})
	m.Start(ctx, "s")
	ps := make([]Player, 10000)
	for i := range ps {
		ps[i] = Player{User: "bench-q" + strconv.Itoa(i)}
	}
	m.Push(ctx, "s", 1, 0)
	m.Enroll(ctx, "s", ps)
	a, _ := m.act("s")
	b.ReportAllocs()
	for b.Loop() {
		a.mu.Lock()
		_, _ = a.encodeSnapshot()
		a.mu.Unlock()
	}
}
