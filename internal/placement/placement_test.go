package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func nodes(n int, weight func(i int) float64) []Node {
	out := make([]Node, n)
	for i := range out {
		out[i] = Node{URL: fmt.Sprintf("http://10.0.0.%d:8080", i+1), Weight: weight(i)}
	}
	return out
}

func one(int) float64 { return 1 }

// rooms returns n hot rooms with loads between hot and ~4×hot (a skewed,
// seeded distribution).
func rooms(n, hot int, seed uint64) []Room {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]Room, n)
	for i := range out {
		out[i] = Room{ID: fmt.Sprintf("room-%d", i), Load: hot + int(float64(3*hot)*r.Float64()*r.Float64())}
	}
	return out
}

func loadsOf(rs []Room) map[string]int {
	m := make(map[string]int, len(rs))
	for _, r := range rs {
		m[r.ID] = r.Load
	}
	return m
}

// nodeLoads adds up each node's share of the hot load as Assign counts it.
func nodeLoads(p map[string][]string, rs []Room, ns []Node) map[string]float64 {
	w := map[string]float64{}
	var wsum float64
	for _, n := range ns {
		w[n.URL] = n.Weight
		wsum += n.Weight
	}
	wavg := wsum / float64(len(ns))
	out := map[string]float64{}
	for _, r := range rs {
		set := p[r.ID]
		for _, u := range set {
			out[u] += float64(r.Load) / float64(len(set)) * w[u] / wavg
		}
	}
	return out
}

func TestAssignDeterministic(t *testing.T) {
	cfg := Config{Hot: 5000}
	rs, ns := rooms(300, 5000, 1), nodes(8, func(i int) float64 { return float64(1 + i%3) })
	a := Assign(cfg, rs, ns)
	// The same input in another order gives the same table.
	rev := append([]Node(nil), ns...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	b := Assign(cfg, HotSet(cfg, loadsOf(rs), nil), rev)
	if !Equal(a, b) {
		t.Fatal("two computations of the same table differ")
	}
	if len(a) != len(rs) {
		t.Fatalf("placed %d of %d hot rooms", len(a), len(rs))
	}
}

func TestAssignRespectsBalance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ns      []Node
		balance float64
	}{
		{"equal weights", nodes(10, one), 1.25},
		{"mixed weights", nodes(9, func(i int) float64 { return []float64{1, 2, 4}[i%3] }), 1.25},
		{"tight bound", nodes(6, one), 1.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Hot: 5000, Balance: tc.balance}
			rs := rooms(400, 5000, 2)
			p := Assign(cfg, HotSet(cfg, loadsOf(rs), nil), tc.ns)
			total, wsum := 0.0, 0.0
			for _, r := range rs {
				total += float64(r.Load)
			}
			for _, n := range tc.ns {
				wsum += n.Weight
			}
			worst := 0.0
			for _, n := range tc.ns {
				fill := nodeLoads(p, rs, tc.ns)[n.URL] / (total / wsum * n.Weight)
				worst = max(worst, fill)
				if fill > tc.balance+1e-9 {
					t.Errorf("node %s (weight %g) carries %.3f× its share, bound %.2f", n.URL, n.Weight, fill, tc.balance)
				}
			}
			t.Logf("fullest node at %.3f× its weighted share (bound %.2f)", worst, tc.balance)
		})
	}
}

func TestAssignOneGiantRoomSpreadsOverEveryNode(t *testing.T) {
	cfg := Config{Hot: 5000}
	ns := nodes(5, one)
	p := Assign(cfg, []Room{{ID: "final", Load: 1_000_000}, {ID: "small", Load: 6000}}, ns)
	if len(p["final"]) != len(ns) {
		t.Fatalf("a 1M room is on %d of %d nodes", len(p["final"]), len(ns))
	}
	if len(p["small"]) < 1 {
		t.Fatal("small hot room unplaced")
	}
}

// movedShare is the share of b's (room, node) slots that a did not have.
func movedShare(a, b map[string][]string) float64 {
	moved, total := 0, 0
	for id, y := range b {
		total += len(y)
		for _, u := range y {
			if !slices.Contains(a[id], u) {
				moved++
			}
		}
	}
	return float64(moved) / float64(total)
}

func TestJoinAndLeaveMoveOnlyWhatTheyMust(t *testing.T) {
	cfg := Config{Hot: 5000}
	rs := rooms(1000, 5000, 3)
	hot := HotSet(cfg, loadsOf(rs), nil)
	ns := nodes(10, one)
	before := Assign(cfg, hot, ns)
	// A node joins: ideally it takes 1/11 of the slots, and no slot moves
	// between two old nodes.
	joined := Assign(cfg, hot, append(ns, Node{URL: "http://10.0.0.99:8080", Weight: 1}))
	share := movedShare(before, joined)
	ideal := 1.0 / 11
	t.Logf("join: %.1f%% of slots moved (ideal %.1f%%)", 100*share, 100*ideal)
	if share > 1.5*ideal {
		t.Errorf("a join moved %.1f%% of the rooms; the ideal is %.1f%%", 100*share, 100*ideal)
	}
	// A node leaves: its rooms must move; few others should.
	gone := ns[3].URL
	left := Assign(cfg, hot, append(append([]Node(nil), ns[:3]...), ns[4:]...))
	had, slots := 0, 0
	for _, set := range before {
		slots += len(set)
		if slices.Contains(set, gone) {
			had++
		}
	}
	share = movedShare(before, left)
	must := float64(had) / float64(slots)
	t.Logf("leave: %.1f%% of slots moved (%.1f%% were on the node that left)", 100*share, 100*must)
	if share > 1.5*must {
		t.Errorf("a leave moved %.1f%% of the slots; %.1f%% had to", 100*share, 100*must)
	}
	for id, set := range left {
		for _, u := range set {
			if u == gone {
				t.Fatalf("room %s still on the node that left", id)
			}
		}
	}
}

func TestHotSetHysteresis(t *testing.T) {
	cfg := Config{Hot: 1000}
	got := HotSet(cfg, map[string]int{"a": 1000, "b": 999, "c": 600, "d": 400}, map[string][]string{"c": {"x"}, "d": {"x"}})
	ids := map[string]bool{}
	for _, r := range got {
		ids[r.ID] = true
	}
	if !ids["a"] || ids["b"] || !ids["c"] || ids["d"] {
		t.Fatalf("hot set %v: want a (crossed), c (placed, above half); not b (never crossed), d (cooled)", got)
	}
	if HotSet(Config{}, map[string]int{"a": 1 << 30}, nil) != nil {
		t.Fatal("Hot 0 must place nothing")
	}
}

func TestStepIsGradualButDeadNodesMoveAtOnce(t *testing.T) {
	cur := map[string][]string{"a": {"n1"}, "b": {"n1"}, "c": {"n2"}, "d": {"n3"}}
	target := map[string][]string{"a": {"n2"}, "b": {"n2"}, "c": {"n1"}, "d": {"n1"}, "e": {"n2"}}
	alive := map[string]bool{"n1": true, "n2": true} // n3 left
	loads := map[string]int{"a": 10, "b": 30, "c": 20, "d": 5, "e": 1}
	next, moved := Step(cur, target, loads, alive, 1)
	if moved != 1 || next["b"][0] != "n2" || next["a"][0] != "n1" || next["c"][0] != "n2" {
		t.Fatalf("one move, the hottest (b): got %v (%d moved)", next, moved)
	}
	if next["d"][0] != "n1" || next["e"][0] != "n2" {
		t.Fatalf("the dead node's room and the new hot room take the target at once: %v", next)
	}
	for i := 0; i < 5 && !Equal(next, target); i++ {
		next, _ = Step(next, target, loads, alive, 1)
	}
	if !Equal(next, target) {
		t.Fatalf("steps never converge: %v", next)
	}
}

func TestTableForSpreadsClientsAndServes(t *testing.T) {
	tb := &Table{Nodes: nodes(3, one), Rooms: map[string][]string{"hot": {"http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"}}}
	first := map[string]int{}
	for i := range 3000 {
		first[tb.For("hot", fmt.Sprint("user", i))[0]]++
	}
	for u, n := range first {
		if n < 800 || n > 1200 {
			t.Errorf("node %s is first for %d of 3000 clients; want about 1000", u, n)
		}
	}
	if !tb.Serves("cold", "http://anything") || !tb.Serves("hot", "http://10.0.0.2:8080") || tb.Serves("hot", "http://10.0.0.9:8080") {
		t.Fatal("Serves: cold rooms everywhere, hot rooms on their nodes")
	}
	var nilTable *Table
	if nilTable.For("hot", "u") != nil || !nilTable.Serves("hot", "x") {
		t.Fatal("no table: nothing placed, every node serves")
	}
}
