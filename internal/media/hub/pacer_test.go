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

// watching publishes frame 0 (a key frame) of a stream and returns its
// publisher and a viewer's reader, closed at the end of the test.
func watching(t *testing.T) (*hub.Publisher, *hub.Reader) {
	m, _ := newManager(t, hub.Config{GOPCache: true, RingBytes: 8 << 20})
	p := startPub(t, m, "r1")
	feed(t, p, 0, 1, 30, 100)
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return p, r
}

// A paced writer's pause ends when a key frame or FlushBytes arrive, not
// only when its delay is up (issue 14: lower forwarding latency at the same
// number of writes).
func TestFlushSignalsKeyFramesAndBytes(t *testing.T) {
	p, r := watching(t)
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
}

// A paced reader holds its first frame until a key frame arrives when that
// comes before the delay is up, and then writes everything queued at once
// (issue 14: a key frame flushes at once).
func TestPacerKeyFrameEndsHold(t *testing.T) {
	p, r := watching(t)
	pace := hub.NewPacer(time.Hour)
	buf, err := pace.Next(context.Background(), r, make([]*hub.Frame, 0, 64), true) // the start: not held
	if err != nil || len(buf) == 0 {
		t.Fatalf("first batch: %d frames, %v", len(buf), err)
	}
	feed(t, p, 1, 2, 30, 100) // a video and an audio frame, not key
	type result struct {
		frames []*hub.Frame
		err    error
	}
	done := make(chan result, 1)
	go func() {
		b, err := pace.Next(context.Background(), r, buf[:0], false)
		done <- result{b, err}
	}()
	// Held (an hour) while only small frames come; the key frame ends it
	// (whether it arrives during the hold or before it began).
	feed(t, p, 2, 31, 30, 100) // frame 30 is a key frame
	select {
	case res := <-done:
		key := false
		for _, f := range res.frames {
			key = key || f.Key
		}
		if res.err != nil || !key {
			t.Fatalf("after the key frame: %d frames (key frame among them: %v), %v", len(res.frames), key, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pacer held through a key frame")
	}
}

// A held frame goes out once it has waited the delay, with what came in
// meanwhile; a delay of 0 does not hold.
func TestPacerHoldsUpToTheDelay(t *testing.T) {
	p, r := watching(t)
	buf, err := hub.NewPacer(0).Next(context.Background(), r, make([]*hub.Frame, 0, 64), false) // the GOP
	if err != nil || len(buf) == 0 {
		t.Fatalf("first batch: %d frames, %v", len(buf), err)
	}
	const d = 30 * time.Millisecond
	before := time.Now() // the frames arrive after this
	feed(t, p, 1, 2, 30, 100)
	buf, err = hub.NewPacer(d).Next(context.Background(), r, buf[:0], false)
	if held := time.Since(before); err != nil || len(buf) != 2 || held < d {
		t.Fatalf("%d frames after %v, %v; want 2 after at least %v", len(buf), held, err, d)
	}
	feed(t, p, 2, 3, 30, 100)
	buf, err = hub.NewPacer(0).Next(context.Background(), r, buf[:0], false)
	if err != nil || len(buf) != 2 {
		t.Fatalf("delay 0: %d frames, %v; want 2 at once", len(buf), err)
	}
}
