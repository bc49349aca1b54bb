package room

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roomcast/internal/store"
)

// heldReads replaces g's clock and database read: the clock moves only when
// the test says so, and every read is counted and waits for release.
type heldReads struct {
	clock   atomic.Int64 // unix nanoseconds
	reads   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func holdReads(g *Registry, st *store.Store) *heldReads {
	h := &heldReads{entered: make(chan struct{}, 100), release: make(chan struct{})}
	h.clock.Store(time.Now().UnixNano())
	g.now = func() time.Time { return time.Unix(0, h.clock.Load()) }
	g.load = func(ctx context.Context, id string) (store.Room, error) {
		h.reads.Add(1)
		h.entered <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
			return store.Room{}, ctx.Err()
		}
		return st.Room(ctx, id)
	}
	return h
}

func (h *heldReads) advance(d time.Duration) { h.clock.Add(int64(d)) }

// lookups runs n concurrent lookups of id and returns the titles they saw.
func lookups(t *testing.T, g *Registry, id string, n int) []string {
	t.Helper()
	titles := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := g.get(context.Background(), id)
			if err != nil {
				t.Errorf("lookup %d: %v", i, err)
			}
			titles[i] = r.Title
		}()
	}
	wg.Wait()
	return titles
}

// A hot room's record going stale costs SQL one read: while it runs, every
// other lookup is answered at once with the record it had.
func TestStaleRecordIsReadOnce(t *testing.T) {
	g, st := newRegistry(t)
	ctx := context.Background()
	if _, _, err := g.Create(ctx, "ann", "Ann", "hot"); err != nil {
		t.Fatal(err)
	}
	h := holdReads(g, st)
	h.advance(cacheTTL + time.Second)

	leader := make(chan error, 1)
	go func() { _, err := g.get(ctx, "hot"); leader <- err }()
	<-h.entered // the refresh is in SQL and held there
	for i, title := range lookups(t, g, "hot", 200) {
		if title != "Ann" {
			t.Fatalf("lookup %d during the refresh saw %q", i, title)
		}
	}
	if n := h.reads.Load(); n != 1 {
		t.Fatalf("%d database reads for one stale record, want 1", n)
	}
	close(h.release)
	if err := <-leader; err != nil {
		t.Fatal(err)
	}
	lookups(t, g, "hot", 50)
	if n := h.reads.Load(); n != 1 {
		t.Fatalf("%d database reads after the refresh, want 1", n)
	}
}

// Lookups of a room not in the cache share one read, and all see its record.
func TestUnknownRoomIsReadOnce(t *testing.T) {
	g, st := newRegistry(t)
	ctx := context.Background()
	if err := st.CreateRoom(ctx, store.Room{ID: "cold", Title: "Cold", AnchorID: "cy", StreamKey: NewStreamKey(), CreatedAt: time.Now(), Status: StatusIdle}); err != nil {
		t.Fatal(err)
	}
	h := holdReads(g, st)
	go func() { <-h.entered; close(h.release) }()
	// Lookups that arrive while the read is held wait for it; those that
	// arrive after it find the record cached: either way, one read.
	for i, title := range lookups(t, g, "cold", 200) {
		if title != "Cold" {
			t.Fatalf("lookup %d saw %q", i, title)
		}
	}
	if n := h.reads.Load(); n != 1 {
		t.Fatalf("%d database reads for one unknown room, want 1", n)
	}
	if _, err := g.get(ctx, "nope"); err == nil {
		t.Fatal("a room that does not exist was found")
	}
}

// A lookup whose client leaves while it reads for others does not fail them:
// they read again.
func TestAbandonedReadIsRetried(t *testing.T) {
	g, st := newRegistry(t)
	ctx := context.Background()
	if err := st.CreateRoom(ctx, store.Room{ID: "cold", Title: "Cold", AnchorID: "cy", StreamKey: NewStreamKey(), CreatedAt: time.Now(), Status: StatusIdle}); err != nil {
		t.Fatal(err)
	}
	h := holdReads(g, st)
	lctx, leave := context.WithCancel(ctx)
	leader := make(chan error, 1)
	go func() { _, err := g.get(lctx, "cold"); leader <- err }()
	<-h.entered
	waiter := make(chan store.Room, 1)
	go func() {
		r, err := g.get(ctx, "cold")
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		waiter <- r
	}()
	leave()
	if err := <-leader; err == nil {
		t.Fatal("the leaving lookup succeeded")
	}
	close(h.release)
	if r := <-waiter; r.Title != "Cold" {
		t.Fatalf("waiter saw %+v", r)
	}
}
