package hub_test

import (
	"context"
	"testing"
	"time"

	"roomcast/internal/media/hub"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A paced writer's pause ends when a key frame or FlushBytes arrive, not
// only when its delay is up (issue 14: lower forwarding latency at the same
// number of writes).
func TestFlushSignalsKeyFramesAndBytes(t *testing.T) {
	m, _ := newManager(t, hub.Config{GOPCache: true, RingBytes: 8 << 20})
	p := startPub(t, m, "r1")
	feed(t, p, 0, 1, 30, 100)
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	early := r.Flush()
	feed(t, p, 1, 3, 30, 100) // small non-key frames
	if closed(early) {
		t.Fatal("a few small frames ended the pause")
	}
	feed(t, p, 3, 31, 30, 100) // frame 30 is a key frame
	if !closed(early) {
		t.Fatal("a key frame did not end the pause")
	}
	early = r.Flush()
	feed(t, p, 31, 32, 30, hub.FlushBytes) // one large non-key frame
	if !closed(early) {
		t.Fatal("FlushBytes queued did not end the pause")
	}
	// The pacer waits its delay, or less when signalled.
	pace := hub.NewPacer(time.Hour)
	done := make(chan struct{})
	early = r.Flush()
	go func() { pace.Wait(context.Background(), early); close(done) }()
	feed(t, p, 32, 61, 30, 100) // frame 60 is a key frame
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pacer slept through a key frame")
	}
	hub.NewPacer(0).Wait(context.Background(), nil) // 0: off, returns at once
}
