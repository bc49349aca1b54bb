package flv_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"go.uber.org/goleak"

	"roomcast/internal/media/access"
	"roomcast/internal/media/egress"
	"roomcast/internal/media/flv"
	"roomcast/internal/media/flvtag"
	"roomcast/internal/media/hub"
	"roomcast/internal/media/internal/testenv"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	m      *hub.Manager
	rooms  *testenv.Rooms
	h      *flv.Handler
	srv    *httptest.Server
	client *http.Client
}

func newEnv(t testing.TB, hcfg hub.Config, fcfg flv.Config) *env {
	rooms := testenv.NewRooms("k1", "r1")
	m := hub.NewManager(hcfg, rooms, testenv.Logger(t), nil)
	out := egress.New(egress.Config{}, m.Metrics())
	h := flv.New(fcfg, m, out, &access.Checker{}, testenv.Logger(t))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/live/"), ".flv")
		h.Serve(w, r, room)
	}))
	e := &env{m: m, rooms: rooms, h: h, srv: srv, client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(func() {
		m.Close()
		h.Close()
		out.Close()
		srv.Close()
		e.client.CloseIdleConnections()
	})
	return e
}

func publish(t testing.TB, m *hub.Manager) *hub.Publisher {
	t.Helper()
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
	return p
}

func frame(t testing.TB, p *hub.Publisher, i, gop, size int) {
	ts := time.Duration(i) * time.Second / 30
	nalu := testenv.NonIDR(size)
	if i%gop == 0 {
		nalu = testenv.IDR(size)
	}
	if err := p.WriteVideo(ts, ts, [][]byte{nalu}); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteAudio(ts, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
}

// readAll reads an FLV response and reports the tags until a clean end.
func readTags(body io.Reader, onTag func(flvtag.Tag)) error {
	r := flvtag.NewReader(body)
	if _, err := r.ReadFileHeader(); err != nil {
		return err
	}
	for {
		tag, err := r.ReadTag()
		if err != nil {
			return err
		}
		onTag(tag)
	}
}

func TestStartsWithCacheAndEndsCleanly(t *testing.T) {
	e := newEnv(t, hub.Config{GOPCache: true}, flv.Config{})
	p := publish(t, e.m)
	for i := range 45 {
		frame(t, p, i, 30, 500)
	}
	resp, err := e.client.Get(e.srv.URL + "/live/r1.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var types []byte
	var firstVideo *flvtag.VideoInfo
	done := make(chan error, 1)
	got := make(chan struct{}, 1000)
	go func() {
		done <- readTags(resp.Body, func(tag flvtag.Tag) {
			types = append(types, tag.Type)
			if tag.Type == flvtag.TypeVideo {
				vi, _ := flvtag.ParseVideo(tag.Body)
				if !vi.SeqHeader && firstVideo == nil {
					firstVideo = &vi
				}
			}
			got <- struct{}{}
		})
	}()
	// The cached GOP (frames 30..44) arrives without new frames being published.
	for range 3 + 30 {
		select {
		case <-got:
		case <-time.After(2 * time.Second):
			t.Fatal("cached GOP not sent at once")
		}
	}
	p.Close()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("response end: %v, want a clean EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("response not ended after the publisher left")
	}
	if string(types[:3]) != string([]byte{flvtag.TypeScript, flvtag.TypeVideo, flvtag.TypeAudio}) {
		t.Fatalf("start tags %v", types[:3])
	}
	if firstVideo == nil || !firstVideo.Key {
		t.Fatalf("first video frame %+v, want a key frame", firstVideo)
	}
}

// TestSlowViewerIsolated: a viewer that stops reading must not slow the
// publisher or a healthy viewer; it is dropped and memory stays bounded.
func TestSlowViewerIsolated(t *testing.T) {
	const ring = 4 << 20
	e := newEnv(t, hub.Config{GOPCache: true, RingBytes: ring}, flv.Config{WriteTimeout: 500 * time.Millisecond})
	p := publish(t, e.m)
	frame(t, p, 0, 30, 1000)

	// The slow viewer: sends a request and never reads.
	slow, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if tc, ok := slow.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	if _, err := slow.Write([]byte("GET /live/r1.flv HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}

	// The healthy viewer counts bytes.
	resp, err := e.client.Get(e.srv.URL + "/live/r1.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var mu sync.Mutex
	var lastTS uint32
	readDone := make(chan error, 1)
	go func() {
		readDone <- readTags(bufio.NewReaderSize(resp.Body, 1<<16), func(tag flvtag.Tag) {
			if tag.Type == flvtag.TypeVideo {
				mu.Lock()
				lastTS = tag.Timestamp
				mu.Unlock()
			}
		})
	}()
	testutil.WaitFor(t, "the condition", 30*time.Second, func() bool { return p.Stream().Readers() == 2 })

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	// ~60 MB of media in 10 s of stream time, as fast as possible.
	const frames, size = 300, 200_000
	start := time.Now()
	for i := 1; i < frames; i++ {
		frame(t, p, i, 30, size)
		if i%5 == 0 { // let the healthy viewer keep up, as real time would (a burst of 30 frames outran its queue with one CPU)
			testutil.WaitFor(t, "the condition", 30*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return int(lastTS) >= (i-1)*1000/30
			})
		}
	}
	elapsed := time.Since(start)
	testutil.WaitFor(t, "the condition", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return int(lastTS) >= (frames-1)*1000/30-1
	})

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n, b := p.Stream().Buffered(); b > ring {
		t.Fatalf("ring holds %d frames / %d bytes, bound %d", n, b, ring)
	}
	if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 3*ring {
		t.Fatalf("heap grew by %d bytes with a stuck viewer", grow)
	}
	// The stuck viewer is dropped (write timeout) or skipping.
	testutil.WaitFor(t, "the condition", 30*time.Second, func() bool { return p.Stream().Readers() == 1 })
	t.Logf("published %d frames of %d KB in %v with a stuck viewer", frames, size/1000, elapsed)
	p.Close()
	if err := <-readDone; !errors.Is(err, io.EOF) {
		t.Fatalf("healthy viewer: %v", err)
	}
}

func TestClientLeaves(t *testing.T) {
	e := newEnv(t, hub.Config{GOPCache: true}, flv.Config{})
	p := publish(t, e.m)
	frame(t, p, 0, 30, 100)
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("GET /live/r1.flv HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("status line %q %v", line, err)
	}
	testutil.WaitFor(t, "the condition", 30*time.Second, func() bool { return p.Stream().Readers() == 1 })
	conn.Close()
	// With no new frames, the handler still notices the client is gone.
	testutil.WaitFor(t, "the condition", 30*time.Second, func() bool { return p.Stream().Readers() == 0 })
}

func TestErrors(t *testing.T) {
	e := newEnv(t, hub.Config{}, flv.Config{})
	for path, want := range map[string]string{
		"/live/r1.flv":   `"code":"not_found"`,
		"/live/none.flv": `"code":"room_not_found"`,
	} {
		resp, err := e.client.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(b), want) || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
}

// Over HTTP/2 (no hijack, no raw socket) the viewer writes on its own
// goroutine through the ResponseWriter: the cached GOP at once, then live
// frames, then a clean end.
func TestHTTP2(t *testing.T) {
	rooms := testenv.NewRooms("k1", "r1")
	m := hub.NewManager(hub.Config{GOPCache: true}, rooms, testenv.Logger(t), nil)
	out := egress.New(egress.Config{Delay: 10 * time.Millisecond}, m.Metrics())
	h := flv.New(flv.Config{}, m, out, &access.Checker{}, testenv.Logger(t))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, "r1")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	client := srv.Client()
	t.Cleanup(func() {
		m.Close()
		h.Close()
		out.Close()
		srv.Close()
		client.CloseIdleConnections()
	})
	p := publish(t, m)
	for i := range 5 {
		frame(t, p, i, 30, 500)
	}
	resp, err := client.Get(srv.URL + "/live/r1.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", resp.Proto)
	}
	var mu sync.Mutex
	var pictures int
	var firstKey, firstSeen bool
	done := make(chan error, 1)
	go func() {
		done <- readTags(resp.Body, func(tag flvtag.Tag) {
			if tag.Type != flvtag.TypeVideo {
				return
			}
			vi, _ := flvtag.ParseVideo(tag.Body)
			if vi.SeqHeader {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if !firstSeen {
				firstSeen, firstKey = true, vi.Key
			}
			pictures++
		})
	}()
	for i := 5; i < 20; i++ {
		frame(t, p, i, 30, 500)
	}
	testutil.WaitFor(t, "every picture over HTTP/2", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return pictures == 20
	})
	p.Close()
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Fatalf("response end: %v, want a clean EOF", err)
	}
	if !firstKey {
		t.Fatal("the first picture is not a key frame")
	}
}
