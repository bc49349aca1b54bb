package flv

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"roomcast/internal/media/hub"
	"roomcast/internal/media/internal/testenv"
)

// batchFixture publishes one GOP (30 video + 30 audio frames of a 2.5 Mbps
// stream) and returns a reader positioned on it and the frames.
func batchFixture(tb testing.TB) (*hub.Reader, []*hub.Frame) {
	tb.Helper()
	m := hub.NewManager(hub.Config{GOPCache: true}, testenv.NewRooms("k", "r"), testenv.Logger(tb), nil)
	tb.Cleanup(m.Close)
	var asc mpeg4audio.AudioSpecificConfig
	_ = asc.Unmarshal(testenv.ASC)
	p, err := m.Publish(context.Background(), "r", "bench")
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.Start(hub.Tracks{
		Video: &hub.VideoTrack{Codec: "h264", SPS: testenv.SPS, PPS: testenv.PPS},
		Audio: &hub.AudioTrack{Config: &asc},
	}); err != nil {
		tb.Fatal(err)
	}
	for i := range 30 {
		ts := time.Duration(i) * time.Second / 30
		n := testenv.NonIDR(8_000)
		if i == 0 {
			n = testenv.IDR(60_000)
		}
		_ = p.WriteVideo(ts, ts, [][]byte{n})
		_ = p.WriteAudio(ts, make([]byte, 300))
	}
	r, _, err := m.Play(context.Background(), "r", hub.ProtoFLV, "bench")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	frames, err := r.Next(context.Background(), make([]*hub.Frame, 0, 512))
	if err != nil {
		tb.Fatal(err)
	}
	r.Rebase(frames)
	return r, frames
}

// TestBuildDoesNotAllocate guards the per-viewer write path: building the
// writev vector for a batch reuses the viewer's scratch buffers.
func TestBuildDoesNotAllocate(t *testing.T) {
	r, frames := batchFixture(t)
	var w tagWriter
	w.build(r, frames, true, true)
	w.release()
	allocs := testing.AllocsPerRun(100, func() {
		w.build(r, frames, false, true)
		w.release()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
}

// BenchmarkTagWriterBuild measures the per-viewer CPU of a 60-tag batch
// (one GOP): headers with rebased timestamps and chunk framing.
func BenchmarkTagWriterBuild(b *testing.B) {
	r, frames := batchFixture(b)
	var w tagWriter
	b.ReportAllocs()
	for b.Loop() {
		w.build(r, frames, false, true)
		w.release()
	}
}

// BenchmarkFLVWriteLoopback measures one viewer's full write path — build
// plus writev of a GOP batch — over a loopback TCP connection.
func BenchmarkFLVWriteLoopback(b *testing.B) {
	r, frames := batchFixture(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(io.Discard, c)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := &hijackSink{conn: conn, chunked: true, timeout: 10 * time.Second}
	total := 0
	for _, f := range frames {
		total += len(f.Tag)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	for b.Loop() {
		bufs, _ := s.Build(r, frames, false)
		if err := s.Write(bufs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	conn.Close()
	<-done
}
