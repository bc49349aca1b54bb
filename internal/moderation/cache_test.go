package moderation

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeRooms is a loader over one room's state as Redis would hold it; it
// counts loads and may hold a load until released.
type fakeRooms struct {
	mu    sync.Mutex
	st    roomState
	loads int
	gate  chan struct{} // non-nil: a load waits for it
	began chan struct{} // a load signals here once it has read the state
}

func (f *fakeRooms) load(ctx context.Context, room string) (*roomState, error) {
	f.mu.Lock()
	f.loads++
	st := newRoomState()
	st.ver = f.st.ver
	for u, v := range f.st.mutes {
		st.mutes[u] = v
	}
	gate, began := f.gate, f.began
	f.mu.Unlock()
	if began != nil {
		began <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	return st, nil
}

// mute changes the fake Redis state like the change script and returns
// the change.
func (f *fakeRooms) mute(user string, until int64) change {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st.mutes == nil {
		f.st.mutes = map[string]int64{}
	}
	ch := change{kind: kindMute, user: user, until: until, prev: f.st.ver, ver: f.st.ver + 1}
	f.st.apply(ch)
	return ch
}

func (f *fakeRooms) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loads
}

func muted(t *testing.T, c *roomCache, user string) bool {
	t.Helper()
	m, err := c.active(context.Background(), "r", kindMute, user)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCacheMissedChangeReloads(t *testing.T) {
	f := &fakeRooms{}
	c := newRoomCache(CacheConfig{}, f.load)
	later := time.Now().Add(time.Hour).UnixMilli()
	if muted(t, c, "u") || f.count() != 1 {
		t.Fatal("first check: want not muted after one load")
	}
	c.apply("r", f.mute("u", later))
	if !muted(t, c, "u") || f.count() != 1 {
		t.Fatal("a following change is applied without a load")
	}
	f.mute("v", later) // its event is lost
	c.apply("r", f.mute("u", 0))
	if !muted(t, c, "v") || muted(t, c, "u") || f.count() != 2 {
		t.Fatalf("a change after a lost one reloads the room (loads %d)", f.count())
	}
	old := change{kind: kindMute, user: "u", until: later, prev: 0, ver: 1}
	c.apply("r", old) // the first mute's event, late
	if muted(t, c, "u") {
		t.Fatal("a late old mute hides the unmute")
	}
}

func TestCacheChangesDuringLoad(t *testing.T) {
	f := &fakeRooms{gate: make(chan struct{}), began: make(chan struct{}, 1)}
	c := newRoomCache(CacheConfig{}, f.load)
	later := time.Now().Add(time.Hour).UnixMilli()
	done := make(chan bool)
	go func() { done <- muted(t, c, "u") }()
	<-f.began // the load read version 0
	c.apply("r", f.mute("u", later))
	close(f.gate)
	if !<-done {
		t.Fatal("a change that arrived during the load was lost")
	}
	if !muted(t, c, "u") || f.count() != 1 {
		t.Fatalf("the loaded copy is kept (loads %d)", f.count())
	}
}

func TestCacheResetDuringLoad(t *testing.T) {
	f := &fakeRooms{gate: make(chan struct{}), began: make(chan struct{}, 1)}
	c := newRoomCache(CacheConfig{}, f.load)
	done := make(chan bool)
	go func() { done <- muted(t, c, "u") }()
	<-f.began
	c.reset()
	close(f.gate)
	<-done
	f.gate, f.began = nil, nil
	muted(t, c, "u")
	if f.count() != 2 {
		t.Fatalf("a load overtaken by a resync was kept (loads %d)", f.count())
	}
}

func TestCacheBounds(t *testing.T) {
	f := &fakeRooms{}
	c := newRoomCache(CacheConfig{Idle: time.Minute, MaxAge: 2 * time.Minute, MaxRooms: 2}, f.load)
	now := time.Now()
	c.now = func() time.Time { return now }
	ctx := context.Background()
	for _, room := range []string{"a", "b", "c", "c"} {
		if _, err := c.active(ctx, room, kindKick, "u"); err != nil {
			t.Fatal(err)
		}
	}
	if c.size() != 2 || f.count() != 4 {
		t.Fatalf("past MaxRooms a room is read through: %d rooms, %d loads", c.size(), f.count())
	}
	now = now.Add(2 * time.Minute)
	c.active(ctx, "a", kindKick, "u")
	if c.size() != 1 || f.count() != 5 {
		t.Fatalf("idle rooms are dropped: %d rooms, %d loads", c.size(), f.count())
	}
	for i := 0; i < 5; i++ {
		now = now.Add(30 * time.Second)
		c.active(ctx, "a", kindKick, "u")
	}
	if f.count() != 6 {
		t.Fatalf("a copy older than MaxAge is reloaded once: %d loads", f.count())
	}
}

func TestCacheMuteEndsByTime(t *testing.T) {
	f := &fakeRooms{}
	c := newRoomCache(CacheConfig{}, f.load)
	now := time.Now()
	c.now = func() time.Time { return now }
	muted(t, c, "u")
	c.apply("r", f.mute("u", now.Add(time.Second).UnixMilli()))
	if !muted(t, c, "u") {
		t.Fatal("not muted")
	}
	now = now.Add(time.Second)
	if muted(t, c, "u") || f.count() != 1 {
		t.Fatal("the mute did not end by time, without a load")
	}
}
