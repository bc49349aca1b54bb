package hub_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"go.uber.org/goleak"

	"roomcast/internal/media/flvtag"
	"roomcast/internal/media/hub"
	"roomcast/internal/media/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func tracks(t testing.TB) hub.Tracks {
	var asc mpeg4audio.AudioSpecificConfig
	if err := asc.Unmarshal(testenv.ASC); err != nil {
		t.Fatal(err)
	}
	return hub.Tracks{
		Video: &hub.VideoTrack{Codec: "h264", SPS: testenv.SPS, PPS: testenv.PPS},
		Audio: &hub.AudioTrack{Config: &asc},
	}
}

func newManager(t testing.TB, cfg hub.Config) (*hub.Manager, *testenv.Rooms) {
	rooms := testenv.NewRooms("k1", "r1")
	m := hub.NewManager(cfg, rooms, testenv.Logger(t), nil)
	t.Cleanup(m.Close)
	return m, rooms
}

func startPub(t testing.TB, m *hub.Manager, room string) *hub.Publisher {
	t.Helper()
	p, err := m.Publish(context.Background(), room, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(tracks(t)); err != nil {
		t.Fatal(err)
	}
	return p
}

// feed publishes frames [from, to) of a 30 fps stream with a key frame
// every gop frames and one audio frame per video frame.
func feed(t testing.TB, p *hub.Publisher, from, to, gop, size int) {
	t.Helper()
	for i := from; i < to; i++ {
		ts := time.Duration(i) * time.Second / 30
		nalu := testenv.NonIDR(size)
		if i%gop == 0 {
			nalu = testenv.IDR(size)
		}
		if err := p.WriteVideo(ts, ts, [][]byte{nalu}); err != nil {
			t.Fatal(err)
		}
		if err := p.WriteAudio(ts+time.Millisecond, []byte{1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
	}
}

func next(t testing.TB, r *hub.Reader, n int) []*hub.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	fs, err := r.Next(ctx, make([]*hub.Frame, 0, n))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return fs
}

func TestGOPCacheStartsAtLatestKeyFrame(t *testing.T) {
	m, rooms := newManager(t, hub.Config{GOPCache: true})
	p := startPub(t, m, "r1")
	rooms.WaitLive(t, "r1", true, time.Second)
	feed(t, p, 0, 40, 30, 100) // key frames at 0 and 30

	r, st, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !st.HasVideo || !st.HasAudio || len(st.Config) != 3 {
		t.Fatalf("start %+v", st)
	}
	md, err := flvtag.ParseMetadata(flvtag.Body(st.Config[0].Tag))
	if err != nil || md.Number("width") != 320 || md.Number("height") != 240 {
		t.Fatalf("metadata %v %v", md, err)
	}
	fs := next(t, r, 512)
	if fs[0].Kind != hub.KindVideo || !fs[0].Key {
		t.Fatalf("first frame %+v, want the key frame", fs[0])
	}
	if len(fs) != 20 { // frames 30..39, video and audio
		t.Fatalf("got %d cached frames, want 20", len(fs))
	}
	r.Rebase(fs)
	if ts := r.TS(fs[0]); ts != 0 {
		t.Fatalf("first timestamp %d, want 0 (rebased)", ts)
	}
	if ts := r.TS(fs[2]); ts != 33 {
		t.Fatalf("second video timestamp %d, want 33", ts)
	}
	// Live frames follow without a gap.
	feed(t, p, 40, 41, 30, 100)
	fs = next(t, r, 512)
	if len(fs) != 2 || r.TS(fs[0]) != 333 {
		t.Fatalf("live frames %d, ts %d", len(fs), r.TS(fs[0]))
	}
}

func TestWithoutGOPCacheWaitsForKeyFrame(t *testing.T) {
	m, _ := newManager(t, hub.Config{GOPCache: false})
	p := startPub(t, m, "r1")
	feed(t, p, 0, 10, 30, 100)
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	feed(t, p, 10, 31, 30, 100) // frames 10..29 are skipped, 30 is a key frame
	fs := next(t, r, 512)
	if !fs[0].Key || fs[0].DTS != time.Second {
		t.Fatalf("first frame %+v, want the key frame at 1s", fs[0])
	}
}

func TestLaggingReaderSkipsToLatestKeyFrame(t *testing.T) {
	m, _ := newManager(t, hub.Config{GOPCache: true, MaxLag: 500 * time.Millisecond, MaxSkips: 2})
	p := startPub(t, m, "r1")
	feed(t, p, 0, 1, 30, 100)
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	next(t, r, 512)
	feed(t, p, 1, 95, 30, 100) // 3 s behind; key frames at 30, 60, 90
	fs := next(t, r, 512)
	// The sequence headers come again, then the latest key frame.
	if len(fs) < 3 || !fs[0].Config || !fs[1].Config || !fs[2].Key || fs[2].DTS != 3*time.Second {
		t.Fatalf("after lag got %d frames starting %+v", len(fs), fs[:min(3, len(fs))])
	}
	info, _ := m.Info("r1")
	if info.Dropped == 0 {
		t.Fatal("skipped frames not counted")
	}
	// Falling behind again and again drops the reader.
	feed(t, p, 95, 200, 30, 100)
	if _, err := r.Next(context.Background(), make([]*hub.Frame, 0, 512)); err != nil {
		t.Fatalf("second skip: %v", err)
	}
	feed(t, p, 200, 300, 30, 100)
	if _, err := r.Next(context.Background(), make([]*hub.Frame, 0, 512)); !errors.Is(err, hub.ErrSlow) {
		t.Fatalf("third skip: %v, want ErrSlow", err)
	}
}

func TestRingIsBounded(t *testing.T) {
	m, _ := newManager(t, hub.Config{GOPCache: true, RingBytes: 1 << 20, RingFrames: 256})
	p := startPub(t, m, "r1")
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "stuck viewer")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	feed(t, p, 0, 600, 30, 20_000) // ~12 MB through a reader that never reads
	frames, bytes := p.Stream().Buffered()
	if frames > 256 || bytes > 1<<20 {
		t.Fatalf("ring holds %d frames / %d bytes, bound 256 / 1 MiB", frames, bytes)
	}
	fs := next(t, r, 512)
	if !fs[0].Config || !fs[2].Key {
		t.Fatalf("an overrun reader must restart at a key frame with sequence headers, got %+v", fs[0])
	}
}

func TestLifecycleAndEnd(t *testing.T) {
	m, rooms := newManager(t, hub.Config{GOPCache: true})
	p := startPub(t, m, "r1")
	rooms.WaitLive(t, "r1", true, time.Second)
	if _, err := m.Publish(context.Background(), "r1", "second"); !errors.Is(err, hub.ErrBusy) {
		t.Fatalf("second publisher: %v, want ErrBusy", err)
	}
	feed(t, p, 0, 5, 30, 100)
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoRTMP, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p.Close()
	rooms.WaitLive(t, "r1", false, time.Second)
	fs := next(t, r, 512) // what was buffered is still delivered
	if len(fs) != 10 {
		t.Fatalf("drained %d frames, want 10", len(fs))
	}
	if _, err := r.Next(context.Background(), fs[:0]); !errors.Is(err, hub.ErrEnded) {
		t.Fatalf("after end: %v", err)
	}
	if _, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "late"); !errors.Is(err, hub.ErrNotLive) {
		t.Fatalf("play after end: %v", err)
	}
	if _, _, err := m.Play(context.Background(), "nope", hub.ProtoFLV, "x"); !errors.Is(err, hub.ErrNoRoom) {
		t.Fatalf("play unknown room: %v", err)
	}
}

func TestTakeover(t *testing.T) {
	m, rooms := newManager(t, hub.Config{GOPCache: true, PublishTakeover: true})
	p1 := startPub(t, m, "r1")
	rooms.WaitLive(t, "r1", true, time.Second)
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p2 := startPub(t, m, "r1")
	select {
	case <-p1.Context().Done():
	case <-time.After(time.Second):
		t.Fatal("old publisher not told to stop")
	}
	if _, err := r.Next(context.Background(), nil); !errors.Is(err, hub.ErrEnded) {
		t.Fatalf("old viewer: %v", err)
	}
	p1.Close() // must not mark the room ended: p2 is live
	select {
	case ev := <-rooms.Live:
		t.Fatalf("unexpected lifecycle call %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
	if info, ok := m.Info("r1"); !ok || !info.Live {
		t.Fatal("room must stay live")
	}
	p2.Close()
	rooms.WaitLive(t, "r1", false, time.Second)
}

func TestSessionsAndInfo(t *testing.T) {
	m, _ := newManager(t, hub.Config{GOPCache: true})
	p := startPub(t, m, "r1")
	feed(t, p, 0, 31, 30, 1000)
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "1.2.3.4:5")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fs := next(t, r, 512)
	r.Rebase(fs)
	r.Sent(fs, 1234)
	p.Stream().NoteHLSClient("a", time.Now())
	p.Stream().NoteHLSClient("b", time.Now())
	info, ok := m.Info("r1")
	if !ok || info.Viewers != (hub.Viewers{FLV: 1, HLS: 2, Total: 3}) || info.BytesOut != 1234 || info.Resolution != "320x240" {
		t.Fatalf("info %+v", info)
	}
	ss := m.Sessions()
	if len(ss) != 2 || !ss[0].Publisher || ss[1].Protocol != hub.ProtoFLV || ss[0].VideoBytes == 0 {
		t.Fatalf("sessions %+v", ss)
	}
}

func TestParameterChangeReachesReaders(t *testing.T) {
	m, _ := newManager(t, hub.Config{GOPCache: true})
	p := startPub(t, m, "r1")
	feed(t, p, 0, 2, 30, 100)
	r, _, err := m.Play(context.Background(), "r1", hub.ProtoFLV, "v")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	next(t, r, 512)
	newPPS := []byte{0x68, 0xce, 0x0f, 0xc9}
	if err := p.WriteVideo(0, 0, [][]byte{testenv.SPS, newPPS}); err != nil {
		t.Fatal(err)
	}
	fs := next(t, r, 512)
	if len(fs) != 1 || !fs[0].Config || string(fs[0].AU[1]) != string(newPPS) {
		t.Fatalf("want one sequence header with the new PPS, got %+v", fs)
	}
}

// TestPublishAllocations guards the per-frame cost on the publisher path.
func TestPublishAllocations(t *testing.T) {
	m, _ := newManager(t, hub.Config{GOPCache: true})
	p := startPub(t, m, "r1")
	nalu := [][]byte{testenv.NonIDR(2000)}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		ts := time.Duration(i) * time.Millisecond
		i++
		_ = p.WriteVideo(ts, ts, nalu)
	})
	// Frame, tag, NALU views, and the wake-up channel.
	if allocs > 4 {
		t.Fatalf("%.1f allocations per published frame, want ≤ 4", allocs)
	}
}

func BenchmarkPublishFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(itoa(n), func(b *testing.B) {
			m, _ := newManager(b, hub.Config{GOPCache: true})
			p := startPub(b, m, "r1")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{}, n)
			for range n {
				r, _, err := m.Play(ctx, "r1", hub.ProtoFLV, "bench")
				if err != nil {
					b.Fatal(err)
				}
				go func() {
					defer func() { r.Close(); done <- struct{}{} }()
					buf := make([]*hub.Frame, 0, 512)
					for {
						var err error
						buf, err = r.Next(ctx, buf[:0])
						if err != nil {
							return
						}
					}
				}()
			}
			nalu := [][]byte{testenv.NonIDR(10_000)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ts := time.Duration(i) * time.Millisecond
				_ = p.WriteVideo(ts, ts, nalu)
			}
			b.StopTimer()
			cancel()
			for range n {
				<-done
			}
		})
	}
}

func itoa(n int) string {
	switch n {
	case 1:
		return "readers=1"
	case 100:
		return "readers=100"
	}
	return "readers=1000"
}
