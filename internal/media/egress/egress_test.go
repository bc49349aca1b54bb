package egress_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"roomcast/internal/media/egress"
	"roomcast/internal/media/flvtag"
	"roomcast/internal/media/hub"
	"roomcast/internal/media/internal/testenv"
	wait "roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tagOut writes the hub's FLV tags as they are (no per-viewer header) to a
// TCP connection: the smallest egress.Out with a raw socket.
type tagOut struct {
	c       *net.TCPConn
	timeout time.Duration
	iov     net.Buffers
}

func (o *tagOut) Build(_ *hub.Reader, frames []*hub.Frame, _ bool) (net.Buffers, int) {
	o.iov = o.iov[:0]
	n := 0
	for _, f := range frames {
		o.iov = append(o.iov, f.Tag)
		n += len(f.Tag)
	}
	return o.iov, n
}

func (o *tagOut) Write(bufs net.Buffers) error {
	_ = o.c.SetWriteDeadline(time.Now().Add(o.timeout))
	_, err := bufs.WriteTo(o.c)
	return err
}

func (o *tagOut) Raw() (syscall.RawConn, *sync.Mutex) {
	rc, err := o.c.SyscallConn()
	if err != nil {
		return nil, nil
	}
	return rc, nil
}

// ownOut is a tagOut without a raw socket: it writes on its own goroutine.
type ownOut struct{ tagOut }

func (o *ownOut) Raw() (syscall.RawConn, *sync.Mutex) { return nil, nil }

type env struct {
	m   *hub.Manager
	out *egress.Writers
	p   *hub.Publisher
	ln  net.Listener
	n   int // frames published
}

func newEnv(t *testing.T, cfg egress.Config) *env {
	t.Helper()
	m := hub.NewManager(hub.Config{GOPCache: true}, testenv.NewRooms("k1", "r1"), testenv.Logger(t), nil)
	out := egress.New(cfg, m.Metrics())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var asc mpeg4audio.AudioSpecificConfig
	if err := asc.Unmarshal(testenv.ASC); err != nil {
		t.Fatal(err)
	}
	p, err := m.Publish(context.Background(), "r1", "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(hub.Tracks{
		Video: &hub.VideoTrack{Codec: "h264", SPS: testenv.SPS, PPS: testenv.PPS},
		Audio: &hub.AudioTrack{Config: &asc},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		out.Close()
		_ = ln.Close()
	})
	return &env{m: m, out: out, p: p, ln: ln}
}

// frame publishes the next video frame (a key frame every gop) and an
// audio frame.
func (e *env) frame(t *testing.T, gop, size int) {
	t.Helper()
	ts := time.Duration(e.n) * time.Second / 30
	nalu := testenv.NonIDR(size)
	if e.n%gop == 0 {
		nalu = testenv.IDR(size)
	}
	e.n++
	if err := e.p.WriteVideo(ts, ts, [][]byte{nalu}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.WriteAudio(ts, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
}

// viewer is one connection served by egress and read (or not) by the test.
type viewer struct {
	client *net.TCPConn
	done   chan error // Serve's result
	video  atomic.Int64
	first  atomic.Value // the first video tag: "key" or "inter"
	readEr chan error
}

// connect serves a new viewer; own: without a raw socket.
func (e *env) connect(t *testing.T, ctx context.Context, timeout time.Duration, own bool, tune func(server, client *net.TCPConn)) *viewer {
	t.Helper()
	cc, err := net.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := e.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	v := &viewer{client: cc.(*net.TCPConn), done: make(chan error, 1), readEr: make(chan error, 1)}
	t.Cleanup(func() { _ = cc.Close() })
	if tune != nil {
		tune(sc.(*net.TCPConn), v.client)
	}
	rd, st, err := e.p.Stream().Attach(hub.ProtoFLV, cc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	var out egress.Out = &tagOut{c: sc.(*net.TCPConn), timeout: timeout}
	if own {
		out = &ownOut{tagOut{c: sc.(*net.TCPConn), timeout: timeout}}
	}
	go func() { // owned by the test: ends when Serve returns (stream end, ctx, write error)
		defer rd.Close()
		defer sc.Close()
		v.done <- e.out.Serve(ctx, rd, out, st.Config)
	}()
	return v
}

// read counts the viewer's video tags until the connection ends.
func (v *viewer) read() {
	r := flvtag.NewReader(bufio.NewReaderSize(v.client, 64<<10))
	for {
		tag, err := r.ReadTag()
		if err != nil {
			v.readEr <- err
			return
		}
		if tag.Type != flvtag.TypeVideo || len(tag.Body) < 2 || tag.Body[1] != 1 { // not a coded picture
			continue
		}
		if v.video.Add(1) == 1 {
			kind := "inter"
			if tag.Body[0]>>4 == 1 {
				kind = "key"
			}
			v.first.Store(kind)
		}
	}
}

// Many viewers of one stream, in several lanes, each get every frame from
// the cached GOP's key frame on, and the stream's end.
func TestManyViewers(t *testing.T) {
	e := newEnv(t, egress.Config{Delay: 20 * time.Millisecond, LaneSize: 7})
	for range 5 { // a GOP in the cache: the viewers start at frame 0
		e.frame(t, 30, 1000)
	}
	const n = 40
	vs := make([]*viewer, n)
	for i := range vs {
		vs[i] = e.connect(t, context.Background(), 5*time.Second, false, nil)
		go vs[i].read()
	}
	for range 55 {
		e.frame(t, 30, 5000)
	}
	for i, v := range vs {
		wait.WaitFor(t, "every frame at viewer", 30*time.Second, func() bool { return v.video.Load() == 60 })
		if k := v.first.Load(); k != "key" {
			t.Fatalf("viewer %d: first picture is %v, want a key frame", i, k)
		}
	}
	if r := counter(t, e.m.Metrics().EgressRounds); r == 0 {
		t.Fatal("no shared-writer rounds: the viewers did not join a lane")
	}
	e.p.Close()
	for i, v := range vs {
		if err := <-v.done; !errors.Is(err, hub.ErrEnded) {
			t.Fatalf("viewer %d: Serve = %v, want ErrEnded", i, err)
		}
		_ = v.client.CloseWrite()
	}
	if got := vs[0].video.Load(); got != 60 {
		t.Fatalf("after the end: %d pictures, want 60", got)
	}
}

// A viewer that never reads does not stall the others: they get every
// frame while it is dropped at its write timeout.
func TestSlowViewerDoesNotStall(t *testing.T) {
	e := newEnv(t, egress.Config{Delay: 10 * time.Millisecond})
	e.frame(t, 30, 1000)
	small := func(server, client *net.TCPConn) {
		_ = server.SetWriteBuffer(8 << 10)
		_ = client.SetReadBuffer(4 << 10)
	}
	slow := e.connect(t, context.Background(), 500*time.Millisecond, false, small)
	fast := make([]*viewer, 3)
	for i := range fast {
		fast[i] = e.connect(t, context.Background(), 5*time.Second, false, nil)
		go fast[i].read()
	}
	const frames = 150 // 30 MB: far more than the slow viewer's socket holds
	for i := 1; i < frames; i++ {
		e.frame(t, 30, 200_000)
		if i%10 == 0 { // keep the fast viewers within the hub's MaxLag, as real time would
			for _, v := range fast {
				wait.WaitFor(t, "a fast viewer keeps up", 30*time.Second, func() bool { return v.video.Load() >= int64(i-5) })
			}
		}
	}
	for _, v := range fast {
		wait.WaitFor(t, "every frame at a fast viewer", 30*time.Second, func() bool { return v.video.Load() == frames })
	}
	var ne net.Error
	if err := <-slow.done; !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("slow viewer: Serve = %v, want a write timeout", err)
	}
	if h := counter(t, e.m.Metrics().EgressHandbacks.WithLabelValues("socket_full")); h == 0 {
		t.Fatal("the slow viewer was never handed back to its goroutine")
	}
	e.p.Close()
	for _, v := range fast {
		if err := <-v.done; !errors.Is(err, hub.ErrEnded) {
			t.Fatalf("fast viewer: Serve = %v, want ErrEnded", err)
		}
	}
}

// A viewer leaving (its context ends) returns at once and leaves the lane
// serving the rest; the lane ends with its last member.
func TestLeave(t *testing.T) {
	e := newEnv(t, egress.Config{Delay: 5 * time.Millisecond})
	e.frame(t, 30, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	gone := e.connect(t, ctx, 5*time.Second, false, nil)
	stay := e.connect(t, context.Background(), 5*time.Second, false, nil)
	go gone.read()
	go stay.read()
	e.frame(t, 30, 1000)
	wait.WaitFor(t, "both viewers", 10*time.Second, func() bool { return gone.video.Load() == 2 && stay.video.Load() == 2 })
	cancel()
	if err := <-gone.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("leaving viewer: Serve = %v, want context.Canceled", err)
	}
	for range 10 {
		e.frame(t, 30, 1000)
	}
	wait.WaitFor(t, "the staying viewer", 10*time.Second, func() bool { return stay.video.Load() == 12 })
	e.p.Close()
	if err := <-stay.done; !errors.Is(err, hub.ErrEnded) {
		t.Fatalf("staying viewer: Serve = %v, want ErrEnded", err)
	}
}

// Without a raw socket a viewer writes on its own goroutine, with the same
// result; Delay 0 writes every frame at once.
func TestOwnGoroutine(t *testing.T) {
	for _, d := range []time.Duration{0, 20 * time.Millisecond} {
		e := newEnv(t, egress.Config{Delay: d})
		e.frame(t, 30, 1000)
		own := e.connect(t, context.Background(), 5*time.Second, true, nil)
		shared := e.connect(t, context.Background(), 5*time.Second, false, nil)
		go own.read()
		go shared.read()
		for range 20 {
			e.frame(t, 30, 3000)
		}
		wait.WaitFor(t, "both viewers", 10*time.Second, func() bool { return own.video.Load() == 21 && shared.video.Load() == 21 })
		e.p.Close()
		for _, v := range []*viewer{own, shared} {
			if err := <-v.done; !errors.Is(err, hub.ErrEnded) {
				t.Fatalf("delay %v: Serve = %v, want ErrEnded", d, err)
			}
		}
	}
}

// Closing the Writers hands their viewers back with context.Canceled.
func TestClose(t *testing.T) {
	e := newEnv(t, egress.Config{})
	e.frame(t, 30, 1000)
	v := e.connect(t, context.Background(), 5*time.Second, false, nil)
	go v.read()
	wait.WaitFor(t, "the first frame", 10*time.Second, func() bool { return v.video.Load() == 1 })
	e.out.Close()
	if err := <-v.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve = %v, want context.Canceled", err)
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
