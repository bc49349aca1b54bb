package rtmp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"go.uber.org/goleak"

	"roomcast/internal/media/access"
	"roomcast/internal/media/egress"
	"roomcast/internal/media/hub"
	"roomcast/internal/media/internal/testenv"
	"roomcast/internal/media/rtmp"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	m     *hub.Manager
	rooms *testenv.Rooms
	srv   *rtmp.Server
	base  string // rtmp://127.0.0.1:PORT/live
}

func newEnv(t *testing.T, hcfg hub.Config, acc *access.Checker) *env {
	t.Helper()
	rooms := testenv.NewRooms("key1", "room1")
	m := hub.NewManager(hcfg, rooms, testenv.Logger(t), nil)
	out := egress.New(egress.Config{}, m.Metrics())
	srv := rtmp.New(rtmp.Config{Addr: "127.0.0.1:0"}, m, out, rooms, acc, testenv.Logger(t))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		m.Close()
		out.Close()
		acc.Wait()
	})
	return &env{m: m, rooms: rooms, srv: srv, base: "rtmp://" + srv.Addr().String() + "/live"}
}

func dial(t *testing.T, rawURL string, publish bool) (*gortmplib.Client, error) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c := &gortmplib.Client{URL: u, Publish: publish}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Initialize(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(c.Close)
	return c, nil
}

// publisher publishes synthetic H.264 + AAC with gortmplib until stop.
type publisher struct {
	c     *gortmplib.Client
	w     *gortmplib.Writer
	video *gortmplib.Track
	audio *gortmplib.Track
	n     int
}

func newPublisher(t *testing.T, rawURL string) (*publisher, error) {
	c, err := dial(t, rawURL, true)
	if err != nil {
		return nil, err
	}
	var asc mpeg4audio.AudioSpecificConfig
	if err := asc.Unmarshal(testenv.ASC); err != nil {
		t.Fatal(err)
	}
	p := &publisher{c: c,
		video: &gortmplib.Track{Codec: &codecs.H264{SPS: testenv.SPS, PPS: testenv.PPS}},
		audio: &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: &asc}},
	}
	p.w = &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{p.video, p.audio}}
	if err := p.w.Initialize(); err != nil {
		return nil, err
	}
	return p, nil
}

// frames sends n video frames (key frame every 30) with audio.
func (p *publisher) frames(t *testing.T, n int) {
	t.Helper()
	for range n {
		if err := p.send(); err != nil {
			t.Fatal(err)
		}
	}
}

func (p *publisher) send() error {
	ts := time.Duration(p.n) * time.Second / 30
	nalu := testenv.NonIDR(500)
	if p.n%30 == 0 {
		nalu = testenv.IDR(2000)
	}
	p.n++
	if err := p.w.WriteH264(p.video, ts, ts, [][]byte{nalu}); err != nil {
		return err
	}
	return p.w.WriteMPEG4Audio(p.audio, ts, []byte{1, 2, 3, 4})
}

func TestPublishAndPlay(t *testing.T) {
	e := newEnv(t, hub.Config{GOPCache: true}, &access.Checker{})
	pub, err := newPublisher(t, e.base+"#key1")
	if err != nil {
		t.Fatal(err)
	}
	pub.frames(t, 45)
	e.rooms.WaitLive(t, "room1", true, 5*time.Second)

	// Joining mid-GOP: tracks, then a key frame first.
	c, err := dial(t, e.base+"#room1", false)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	r := &gortmplib.Reader{Conn: c}
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() { // keep the stream going while the player probes
		defer close(pubDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := pub.send(); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-pubDone }()
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	var video *gortmplib.Track
	for _, tr := range r.Tracks() {
		switch tr.Codec.(type) {
		case *codecs.H264:
			video = tr
		case *codecs.MPEG4Audio:
			r.OnDataMPEG4Audio(tr, func(time.Duration, []byte) {})
		}
	}
	if video == nil || len(r.Tracks()) != 2 {
		t.Fatalf("tracks %v", r.Tracks())
	}
	got := false
	var key bool
	var firstDTS time.Duration
	r.OnDataH264(video, func(_, dts time.Duration, au [][]byte) {
		if got {
			return
		}
		for _, n := range au {
			if t := h264.NALUType(n[0] & 0x1F); t != h264.NALUTypeSPS && t != h264.NALUTypePPS {
				got, key, firstDTS = true, h264.IsRandomAccess(au), dts
				return
			}
		}
	})
	for !got {
		if err := r.Read(); err != nil {
			t.Fatal(err)
		}
	}
	if !key {
		t.Fatal("first video frame of an RTMP player is not a key frame")
	}
	if firstDTS > 100*time.Millisecond {
		t.Fatalf("first DTS %v, want ~0 (rebased)", firstDTS)
	}
}

func TestPublishRefused(t *testing.T) {
	var hookCalls atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookCalls.Add(1)
		var ev access.Event
		_ = json.NewDecoder(r.Body).Decode(&ev)
		if ev.Action != "on_publish" || ev.Room != "room1" || ev.Protocol != "rtmp" || ev.Key != "key1" || ev.RemoteAddr == "" {
			t.Errorf("hook event %+v", ev)
		}
		if r.URL.Query().Get("deny") != "" {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer hook.Close()
	e := newEnv(t, hub.Config{}, &access.Checker{HookPublish: hook.URL})

	if _, err := newPublisher(t, e.base+"#wrong"); err == nil || !strings.Contains(err.Error(), "NetStream.Publish.Unauthorized") {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := newPublisher(t, e.base+"#"); err == nil {
		t.Fatal("missing key accepted")
	}
	if hookCalls.Load() != 0 {
		t.Fatal("hook called for a bad key")
	}
	first, err := newPublisher(t, e.base+"#key1")
	if err != nil {
		t.Fatal(err)
	}
	first.frames(t, 2)
	e.rooms.WaitLive(t, "room1", true, 5*time.Second)
	if _, err := newPublisher(t, e.base+"#key1"); err == nil || !strings.Contains(err.Error(), "already being published") {
		t.Fatalf("second publisher: %v", err)
	}
	first.c.Close()
	e.rooms.WaitLive(t, "room1", false, 5*time.Second)

	// The hook refuses.
	e2 := newEnv(t, hub.Config{}, &access.Checker{HookPublish: hook.URL + "?deny=1"})
	if _, err := newPublisher(t, e2.base+"#key1"); err == nil || !strings.Contains(err.Error(), "on_publish") {
		t.Fatalf("hook refusal: %v", err)
	}
	if _, err := newPublisher(t, strings.Replace(e.base, "/live", "/other", 1)+"#key1"); err == nil {
		t.Fatal("unknown app accepted")
	}
}

func TestTakeoverKicksOldPublisher(t *testing.T) {
	e := newEnv(t, hub.Config{PublishTakeover: true}, &access.Checker{})
	first, err := newPublisher(t, e.base+"#key1")
	if err != nil {
		t.Fatal(err)
	}
	first.frames(t, 2)
	e.rooms.WaitLive(t, "room1", true, 5*time.Second)
	second, err := newPublisher(t, e.base+"#key1")
	if err != nil {
		t.Fatal(err)
	}
	second.frames(t, 2)
	// The first publisher's connection is closed by the server.
	_ = first.c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := first.c.Read(); err != nil {
			break
		}
	}
	testutil.WaitFor(t, "the condition", 20*time.Second, func() bool { info, ok := e.m.Info("room1"); return ok && info.Live })
}

func TestSignedPlay(t *testing.T) {
	const key = "k"
	e := newEnv(t, hub.Config{GOPCache: true}, &access.Checker{SignKey: key})
	pub, err := newPublisher(t, e.base+"#key1")
	if err != nil {
		t.Fatal(err)
	}
	pub.frames(t, 5)
	e.rooms.WaitLive(t, "room1", true, 5*time.Second)
	for _, q := range []string{"", "?expires=1&sign=00", "?" + access.SignedQuery(key, "room1", time.Now().Add(-time.Hour), time.Minute)} {
		if _, err := dial(t, e.base+"#room1"+q, false); err == nil || !strings.Contains(err.Error(), "NetStream.Play.Forbidden") {
			t.Errorf("play with %q: %v, want Forbidden", q, err)
		}
	}
	if _, err := dial(t, e.base+"#room1?"+access.SignedQuery(key, "room1", time.Now(), time.Minute), false); err != nil {
		t.Fatalf("signed play: %v", err)
	}
	if _, err := dial(t, e.base+"#nosuchroom?"+access.SignedQuery(key, "nosuchroom", time.Now(), time.Minute), false); err == nil {
		t.Fatal("play of a room that is not live accepted")
	}
}

// H.265 parameter sets of a 320x240 x265 stream.
var (
	hevcVPS = []byte{0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x95, 0x94, 0x09}
	hevcSPS = []byte{0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0x52, 0x93, 0x0b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x10}
	hevcPPS = []byte{0x44, 0x01, 0xc0, 0x73, 0xc1, 0x89}
)

// TestEnhancedRTMPH265: an Enhanced RTMP H.265 publisher is accepted and
// replayed to an RTMP player as H.265.
func TestEnhancedRTMPH265(t *testing.T) {
	e := newEnv(t, hub.Config{GOPCache: true}, &access.Checker{})
	c, err := dial(t, e.base+"#key1", true)
	if err != nil {
		t.Fatal(err)
	}
	video := &gortmplib.Track{Codec: &codecs.H265{VPS: hevcVPS, SPS: hevcSPS, PPS: hevcPPS}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{video}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		ts := time.Duration(i) * time.Second / 30
		nalu := []byte{0x02, 0x01, 0xaa} // TRAIL_R
		if i%30 == 0 {
			nalu = []byte{0x26, 0x01, 0xaf} // IDR_W_RADL
		}
		if err := w.WriteH265(video, ts, ts, [][]byte{nalu}); err != nil {
			t.Fatal(err)
		}
	}
	e.rooms.WaitLive(t, "room1", true, 5*time.Second)
	info, ok := e.m.Info("room1")
	if !ok || info.Codec != "h265" || info.Resolution != "320x240" || info.AudioCodec != "" {
		t.Fatalf("info %+v", info)
	}
	p, err := dial(t, e.base+"#room1", false)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	fed := make(chan struct{})
	defer func() { c.Close(); <-fed }()
	go func() { // keep media flowing while the player probes
		defer close(fed)
		for i := 40; i < 200; i++ {
			ts := time.Duration(i) * time.Second / 30
			if w.WriteH265(video, ts, ts, [][]byte{{0x02, 0x01, 0xaa}}) != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	r := &gortmplib.Reader{Conn: p}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	if tr := r.Tracks(); len(tr) != 1 {
		t.Fatalf("tracks %v", tr)
	} else if _, ok := tr[0].Codec.(*codecs.H265); !ok {
		t.Fatalf("player track %T, want H.265", tr[0].Codec)
	}
}
