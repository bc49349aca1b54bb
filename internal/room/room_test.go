package room

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"

	"roomcast/internal/errs"
	"roomcast/internal/redistest"
	"roomcast/internal/store"
	"roomcast/internal/testutil"
)

// newRegistry returns a registry on a fresh SQLite store (the store is the
// registry's own persistence, not a collaborator to fake).
func newRegistry(t *testing.T) (*Registry, *store.Store) {
	t.Helper()
	st, err := store.OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(st, nil), st
}

func TestOneAnchorOneRoom(t *testing.T) {
	g, _ := newRegistry(t)
	ctx := context.Background()
	r, created, err := g.Create(ctx, "ann", "  Ann's room ", "ann-room")
	if err != nil || !created {
		t.Fatalf("create: %+v %v %v", r, created, err)
	}
	if r.ID != "ann-room" || r.Title != "Ann's room" || r.AnchorID != "ann" || r.Status != StatusIdle || r.Live ||
		!strings.HasPrefix(r.StreamKey, "rk_") {
		t.Fatalf("created room: %+v", r)
	}
	again, created, err := g.Create(ctx, "ann", "another", "")
	if err != nil || created || again.ID != r.ID || again.StreamKey != r.StreamKey {
		t.Fatalf("second create for the same anchor: %+v %v %v", again, created, err)
	}
	if _, _, err := g.Create(ctx, "bob", "Bob", "ann-room"); testutil.ErrCode(err) != errs.Conflict {
		t.Fatalf("taken id: %v", err)
	}
	gen, created, err := g.Create(ctx, "cy", "Cy", "")
	if err != nil || !created || !ValidID(gen.ID) {
		t.Fatalf("generated id: %+v %v", gen, err)
	}
	for _, c := range []struct{ title, id string }{{"", "x"}, {strings.Repeat("é", 101), "y"}, {"ok", "bad id!"}, {"ok", "-lead"}} {
		if _, _, err := g.Create(ctx, "dee-"+c.id, c.title, c.id); testutil.ErrCode(err) != errs.BadRequest {
			t.Errorf("create %q %q: %v", c.title, c.id, err)
		}
	}
}

func TestConcurrentCreatesGiveOneRoom(t *testing.T) {
	g, _ := newRegistry(t)
	ctx := context.Background()
	createsGiveOneRoom(t, 8, func(int) (Room, bool, error) { return g.Create(ctx, "ann", "Ann", "") })
}

// createsGiveOneRoom runs n creates at once and fails unless they all
// answer the same room.
func createsGiveOneRoom(t *testing.T, n int, create func(i int) (Room, bool, error)) {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, _, err := create(i)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = r.ID
		}(i)
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("one anchor got rooms %v", ids)
		}
	}
}

func TestLookupsAndKeys(t *testing.T) {
	g, _ := newRegistry(t)
	ctx := context.Background()
	r, _, err := g.Create(ctx, "ann", "Ann", "a1")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := g.Get(ctx, "a1", false); err != nil || v.StreamKey != "" || v.Title != "Ann" {
		t.Fatalf("get without key: %+v %v", v, err)
	}
	if v, err := g.Get(ctx, "a1", true); err != nil || v.StreamKey != r.StreamKey {
		t.Fatalf("get with key: %+v %v", v, err)
	}
	if _, err := g.Get(ctx, "missing", false); testutil.ErrCode(err) != errs.RoomNotFound {
		t.Fatalf("get missing: %v", err)
	}
	if ok, err := g.Exists(ctx, "a1"); !ok || err != nil {
		t.Fatalf("exists: %v %v", ok, err)
	}
	if ok, err := g.Exists(ctx, "not a valid id"); ok || err != nil {
		t.Fatalf("exists (invalid id): %v %v", ok, err)
	}
	if id, err := g.ByStreamKey(ctx, r.StreamKey); err != nil || id != "a1" {
		t.Fatalf("by key: %q %v", id, err)
	}
	key, err := g.ResetKey(ctx, "a1")
	if err != nil || key == r.StreamKey {
		t.Fatalf("reset key: %q %v", key, err)
	}
	if _, err := g.ByStreamKey(ctx, r.StreamKey); testutil.ErrCode(err) != errs.Forbidden {
		t.Fatalf("old key still publishes: %v", err)
	}
	if v, _ := g.Get(ctx, "a1", true); v.StreamKey != key {
		t.Fatalf("get after reset shows %q, want the new key", v.StreamKey)
	}
	if _, err := g.ResetKey(ctx, "missing"); testutil.ErrCode(err) != errs.RoomNotFound {
		t.Fatalf("reset missing: %v", err)
	}
	for _, k := range []string{"", strings.Repeat("k", 129)} {
		if _, err := g.ByStreamKey(ctx, k); testutil.ErrCode(err) != errs.Forbidden {
			t.Fatalf("bad key %q: %v", k, err)
		}
	}
}

func TestListIDsEnsureDelete(t *testing.T) {
	g, _ := newRegistry(t)
	ctx := context.Background()
	for _, a := range []string{"ann", "bob"} {
		if _, _, err := g.Create(ctx, a, a, a+"-room"); err != nil {
			t.Fatal(err)
		}
	}
	e, err := g.Ensure(ctx, "obs")
	if err != nil || e.AnchorID != "livego:obs" || e.StreamKey == "" {
		t.Fatalf("ensure: %+v %v", e, err)
	}
	if e2, err := g.Ensure(ctx, "obs"); err != nil || e2.StreamKey != e.StreamKey {
		t.Fatalf("ensure again: %+v %v", e2, err)
	}
	if _, err := g.Ensure(ctx, "bad name"); testutil.ErrCode(err) != errs.BadRequest {
		t.Fatalf("ensure bad name: %v", err)
	}
	list, err := g.List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %+v %v", list, err)
	}
	for _, r := range list {
		if r.StreamKey != "" {
			t.Fatalf("list shows a stream key: %+v", r)
		}
	}
	ids, err := g.IDs(ctx)
	if err != nil || len(ids) != 3 {
		t.Fatalf("ids: %v %v", ids, err)
	}
	if err := g.Delete(ctx, "ann-room"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := g.Exists(ctx, "ann-room"); ok {
		t.Fatal("deleted room still exists (stale cache)")
	}
	if err := g.Delete(ctx, "ann-room"); testutil.ErrCode(err) != errs.RoomNotFound {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestSetLiveRecordsTheLifecycle(t *testing.T) {
	g, _ := newRegistry(t)
	ctx := context.Background()
	if _, _, err := g.Create(ctx, "ann", "Ann", "a1"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Get(ctx, "a1", false); err != nil { // cached now
		t.Fatal(err)
	}
	if err := g.SetLive(ctx, "a1", true); err != nil {
		t.Fatal(err)
	}
	r, err := g.Get(ctx, "a1", false)
	if err != nil || !r.Live || r.Status != StatusLive || r.LiveStartedAt == nil {
		t.Fatalf("after live start (the cache must not hide it): %+v %v", r, err)
	}
	if err := g.SetLive(ctx, "a1", false); err != nil {
		t.Fatal(err)
	}
	r, _ = g.Get(ctx, "a1", false)
	if r.Live || r.Status != StatusEnded || r.LiveEndedAt == nil {
		t.Fatalf("after live end: %+v", r)
	}
	if err := g.SetLive(ctx, "missing", true); err == nil {
		t.Fatal("set live on a missing room succeeded")
	}
	if LiveEvent(true) != EventLiveStart || LiveEvent(false) != EventLiveEnd {
		t.Fatal("lifecycle event names")
	}
}

// TestCreatesOnTwoNodesGiveOneRoom: two nodes (two registries on one shared
// database) creating one anchor's room at the same moment get one room —
// the database's unique index on anchor_id decides, not a node's lock.
func TestCreatesOnTwoNodesGiveOneRoom(t *testing.T) {
	for name, dsn := range map[string]func(testing.TB) string{"postgres": redistest.Postgres, "mysql": redistest.MySQL} {
		t.Run(name, func(t *testing.T) {
			url := dsn(t)
			ctx := context.Background()
			regs := make([]*Registry, 2)
			for i := range regs {
				st, err := store.Open(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				if ok, a := st.AnchorsUnique(); !ok {
					t.Fatalf("fresh database reports anchor %q with two rooms", a)
				}
				regs[i] = New(st, nil)
			}
			for round := range 5 {
				anchor := "ann" + strings.Repeat("x", round)
				createsGiveOneRoom(t, 8, func(i int) (Room, bool, error) { return regs[i%2].Create(ctx, anchor, "Ann", "") })
			}
		})
	}
}

// ValidID accepts exactly what the documented pattern does.
func TestValidIDMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	ids := []string{"", "a", "A9", "_a", "-a", "a_", "a-b_c", "a b", "a/b", "a.b", "é", "a\x00", strings.Repeat("a", 64), strings.Repeat("a", 65), "9" + strings.Repeat("-", 63)}
	for c := 0; c < 256; c++ {
		ids = append(ids, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
	}
	for _, id := range ids {
		if got, want := ValidID(id), re.MatchString(id); got != want {
			t.Errorf("ValidID(%q) = %v, the pattern says %v", id, got, want)
		}
	}
}
