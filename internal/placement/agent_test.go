package placement

import (
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loads is a node's view of its rooms' online counts, changeable by the test.
type loads struct {
	mu sync.Mutex
	m  map[string]int
}

func (l *loads) set(room string, n int) { l.mu.Lock(); l.m[room] = n; l.mu.Unlock() }
func (l *loads) get() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.m))
	for k, v := range l.m {
		out[k] = v
	}
	return out
}

// TestAgentsAgreeOnATableInRedis runs three agents on the machine's Redis:
// a hot room is placed on nodes that declared themselves, a cold one is not;
// a node that stops declaring leaves the table, and its rooms move to live
// nodes (no room ever names only dead nodes for longer than the node TTL).
func TestAgentsAgreeOnATableInRedis(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	view := &loads{m: map[string]int{"final": 40000, "cold": 10}}
	urls := []string{"http://a:8080", "http://b:8080", "http://c:8080"}
	agents := make([]*Agent, len(urls))
	for i, u := range urls {
		agents[i] = NewAgent(c, "node-"+u, AgentConfig{Prefix: prefix, URL: u, Weight: 1, Placement: Config{Hot: 10000},
			Period: 50 * time.Millisecond, NodeTTL: 400 * time.Millisecond, Loads: view.get})
	}
	defer func() {
		for _, a := range agents {
			a.Close()
		}
	}()
	placed := func(a *Agent, room string) []string {
		if t := a.Table(); t != nil {
			return t.Rooms[room]
		}
		return nil
	}
	testutil.WaitFor(t, "the hot room placed on all three nodes, seen by every agent", 15*time.Second, func() bool {
		for _, a := range agents {
			if len(placed(a, "final")) != 3 || a.Table().Epoch == 0 {
				return false
			}
		}
		return true
	})
	for _, a := range agents {
		if _, ok := a.Table().Rooms["cold"]; ok {
			t.Fatal("a cold room was placed")
		}
	}
	// A fourth node without --advertise reports loads but carries nothing.
	view2 := &loads{m: map[string]int{"rising": 25000}}
	anon := NewAgent(c, "anon", AgentConfig{Prefix: prefix, Placement: Config{Hot: 10000}, Period: 50 * time.Millisecond,
		NodeTTL: 400 * time.Millisecond, Loads: view2.get})
	defer anon.Close()
	testutil.WaitFor(t, "a room seen only by the anonymous node placed on members", 15*time.Second, func() bool {
		set := placed(agents[0], "rising")
		return len(set) > 0 && !slices.Contains(set, "")
	})
	// Node c stops: after its TTL every room is on a and b only.
	agents[2].Close()
	testutil.WaitFor(t, "the silent node's rooms moved to live nodes", 15*time.Second, func() bool {
		tb := agents[0].Table()
		if len(tb.Nodes) != 2 {
			return false
		}
		for _, set := range tb.Rooms {
			if slices.Contains(set, urls[2]) {
				return false
			}
		}
		return len(tb.Rooms["final"]) == 2
	})
	// The room cools below half the threshold: it leaves the table.
	view.set("final", 4000)
	testutil.WaitFor(t, "a cooled room unplaced", 15*time.Second, func() bool {
		_, ok := agents[1].Table().Rooms["final"]
		return !ok
	})
}
