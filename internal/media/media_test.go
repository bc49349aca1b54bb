package media_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"roomcast/internal/media"
	"roomcast/internal/media/access"
	"roomcast/internal/media/flvtag"
	"roomcast/internal/media/internal/testenv"
)

func TestMain(m *testing.M) {
	code := func() int {
		defer testenv.Cleanup()
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

type env struct {
	reg    *prometheus.Registry
	srv    *media.Server
	rooms  *testenv.Rooms
	http   *httptest.Server
	client *http.Client
	rtmp   string // rtmp://127.0.0.1:PORT/live
}

func newEnv(t *testing.T, cfg media.Config) *env {
	t.Helper()
	rooms := testenv.NewRooms("key1", "room1", "key2", "room2")
	cfg.RTMP = "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	srv, err := media.New(cfg, rooms, testenv.Logger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/live/", srv.HTTPHandler())
	hs := httptest.NewServer(mux)
	e := &env{reg: reg, srv: srv, rooms: rooms, http: hs, client: &http.Client{Transport: &http.Transport{}},
		rtmp: "rtmp://" + srv.RTMPAddr().String() + "/live"}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		hs.Close()
		e.client.CloseIdleConnections()
	})
	return e
}

func (e *env) get(t *testing.T, path string) *http.Response {
	t.Helper()
	resp, err := e.client.Get(e.http.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

func (e *env) getBody(t *testing.T, path string) (int, string) {
	t.Helper()
	resp := e.get(t, path)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFFmpegEndToEnd publishes with real ffmpeg and checks every playback
// protocol with real ffprobe, a mid-stream FLV join, stats, HLS progress and
// the end of the stream.
func TestFFmpegEndToEnd(t *testing.T) {
	e := newEnv(t, media.Config{GOPCache: true})
	pub := testenv.Publish(t, e.rtmp+"/key1")
	e.rooms.WaitLive(t, "room1", true, 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // be mid-GOP and mid-stream

	t.Run("FLVJoinMidStream", func(t *testing.T) {
		checkFLVStart(t, e, "/live/room1.flv")
	})
	t.Run("ffprobeFLV", func(t *testing.T) {
		testenv.CheckH264AAC(t, "HTTP-FLV", testenv.Probe(t, e.http.URL+"/live/room1.flv"), 320, 240)
	})
	t.Run("ffprobeRTMP", func(t *testing.T) {
		testenv.CheckH264AAC(t, "RTMP", testenv.Probe(t, e.rtmp+"/room1"), 320, 240)
	})
	t.Run("ffprobeHLS", func(t *testing.T) {
		testenv.CheckH264AAC(t, "HLS", testenv.Probe(t, e.http.URL+"/live/room1.m3u8"), 320, 240)
	})
	t.Run("HLSAdvancesAndSegmentsDecode", func(t *testing.T) {
		checkHLSProgress(t, e, "room1")
	})
	t.Run("StreamInfo", func(t *testing.T) {
		info, ok := e.srv.StreamInfo("room1")
		if !ok || info.Codec != "h264" || info.AudioCodec != "aac" || info.Resolution != "320x240" || info.BitrateIn <= 0 || info.FPS < 20 {
			b, _ := json.Marshal(info)
			t.Fatalf("stream info: ok=%v %s", ok, b)
		}
		if _, ok := e.srv.StreamInfo("room2"); ok {
			t.Fatal("room2 is not live")
		}
	})
	t.Run("Metrics", func(t *testing.T) {
		checkMetrics(t, e.reg)
	})

	// A viewer connected when the publisher leaves gets a clean end.
	resp := e.get(t, "/live/room1.flv")
	defer resp.Body.Close()
	ended := make(chan error, 1)
	go func() {
		r := flvtag.NewReader(resp.Body)
		if _, err := r.ReadFileHeader(); err != nil {
			ended <- err
			return
		}
		for {
			if _, err := r.ReadTag(); err != nil {
				ended <- err
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	pub.Stop()
	e.rooms.WaitLive(t, "room1", false, 10*time.Second)
	select {
	case err := <-ended:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("FLV response did not end cleanly: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FLV response still open after the publisher left")
	}
	// HLS: playlist ends with ENDLIST.
	checkHLSEnded(t, e, "room1")
	if code, _ := e.getBody(t, "/live/room1.flv"); code != http.StatusNotFound {
		t.Fatalf("FLV after end: %d, want 404", code)
	}
}

// checkFLVStart reads an FLV response and checks the start: header,
// onMetaData, sequence headers, then a key frame as the first video frame,
// all within a short time.
func checkFLVStart(t *testing.T, e *env, path string) {
	t.Helper()
	start := time.Now()
	resp := e.get(t, path)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/x-flv" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	r := flvtag.NewReader(resp.Body)
	fi, err := r.ReadFileHeader()
	if err != nil || !fi.HasVideo || !fi.HasAudio {
		t.Fatalf("file header %+v %v", fi, err)
	}
	var sawMeta, sawVSeq, sawASeq bool
	var firstKey time.Duration
	var lastVideoTS int64 = -1
	tags := 0
	for tags < 200 {
		tag, err := r.ReadTag()
		if err != nil {
			t.Fatalf("tag %d: %v", tags, err)
		}
		tags++
		switch tag.Type {
		case flvtag.TypeScript:
			md, err := flvtag.ParseMetadata(tag.Body)
			if err != nil || md.Number("width") != 320 || md.Number("height") != 240 {
				t.Fatalf("metadata %v %v", md, err)
			}
			sawMeta = true
		case flvtag.TypeAudio:
			ai, err := flvtag.ParseAudio(tag.Body)
			if err != nil || ai.Codec != "aac" {
				t.Fatalf("audio %+v %v", ai, err)
			}
			if ai.SeqHeader {
				sawASeq = true
			} else if !sawASeq {
				t.Fatal("AAC frame before the AAC sequence header")
			}
		case flvtag.TypeVideo:
			vi, err := flvtag.ParseVideo(tag.Body)
			if err != nil || vi.Codec != "h264" {
				t.Fatalf("video %+v %v", vi, err)
			}
			if vi.SeqHeader {
				sawVSeq = true
				continue
			}
			if !sawMeta || !sawVSeq {
				t.Fatal("video frame before onMetaData / AVC sequence header")
			}
			if lastVideoTS < 0 {
				if !vi.Key {
					t.Fatal("first video frame is not a key frame")
				}
				firstKey = time.Since(start)
				if tag.Timestamp > 100 {
					t.Fatalf("first key frame at ts %d, want ~0 (rebased)", tag.Timestamp)
				}
			} else if int64(tag.Timestamp) < lastVideoTS {
				t.Fatalf("video timestamps go back: %d after %d", tag.Timestamp, lastVideoTS)
			}
			lastVideoTS = int64(tag.Timestamp)
		}
		if lastVideoTS > 1500 { // cached GOP (≤1 s) and then live tags
			break
		}
	}
	if firstKey == 0 {
		t.Fatal("no key frame")
	}
	if firstKey > 500*time.Millisecond {
		t.Fatalf("first key frame after %v, want it at once from the GOP cache", firstKey)
	}
	t.Logf("first key frame %v after the request", firstKey)
}

var mediaSeqRe = regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`)

func mediaPlaylist(t *testing.T, e *env, room string) (path, body string) {
	t.Helper()
	code, idx := e.getBody(t, "/live/"+room+".m3u8")
	if code != 200 {
		t.Fatalf("index: %d %s", code, idx)
	}
	for _, l := range strings.Split(idx, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			path = "/live/" + strings.TrimSpace(l)
			break
		}
	}
	if !strings.HasPrefix(path, "/live/"+room+"/") {
		t.Fatalf("index URIs not under the room: %q", idx)
	}
	code, body = e.getBody(t, path)
	if code != 200 {
		t.Fatalf("media playlist %s: %d %s", path, code, body)
	}
	return path, body
}

func checkHLSProgress(t *testing.T, e *env, room string) {
	t.Helper()
	_, pl1 := mediaPlaylist(t, e, room)
	seq := func(pl string) (int, string) {
		m := mediaSeqRe.FindStringSubmatch(pl)
		if m == nil {
			t.Fatalf("no media sequence in %q", pl)
		}
		n, _ := strconv.Atoi(m[1])
		var last string
		for _, l := range strings.Split(pl, "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				last = strings.TrimSpace(l)
			}
		}
		return n, last
	}
	s1, last1 := seq(pl1)
	deadline := time.Now().Add(8 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		path, pl2 := mediaPlaylist(t, e, room)
		s2, last2 := seq(pl2)
		if s2 > s1 || last2 != last1 {
			// Download the newest segment and decode it with ffprobe.
			dir := filepath.Dir(path)
			resp := e.get(t, dir+"/"+last2)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || len(b) == 0 {
				t.Fatalf("segment %s: %d (%d bytes)", last2, resp.StatusCode, len(b))
			}
			f := filepath.Join(t.TempDir(), "seg.ts")
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			testenv.CheckH264AAC(t, "HLS segment", testenv.Probe(t, f), 320, 240)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("HLS playlist did not advance:\n%s\n---\n%s", pl1, pl2)
		}
	}
}

func checkHLSEnded(t *testing.T, e *env, room string) {
	t.Helper()
	_, pl := mediaPlaylist(t, e, room)
	if !strings.Contains(pl, "#EXT-X-ENDLIST") {
		t.Fatalf("ended playlist has no ENDLIST:\n%s", pl)
	}
}

// TestFFmpegPublishRefused: a wrong key and a second publisher are refused
// at publish time; real ffmpeg gives up with an error.
func TestFFmpegPublishRefused(t *testing.T) {
	e := newEnv(t, media.Config{GOPCache: true})
	bad := testenv.Publish(t, e.rtmp+"/wrong-key")
	err, out, ok := bad.Wait(10 * time.Second)
	if !ok || err == nil {
		t.Fatalf("ffmpeg with a wrong key: exited=%v err=%v", ok, err)
	}
	t.Logf("wrong key: %v: %s", err, strings.TrimSpace(out))

	testenv.Publish(t, e.rtmp+"/key2")
	e.rooms.WaitLive(t, "room2", true, 10*time.Second)
	second := testenv.Publish(t, e.rtmp+"/key2")
	err, out, ok = second.Wait(10 * time.Second)
	if !ok || err == nil {
		t.Fatalf("second publisher: exited=%v err=%v", ok, err)
	}
	t.Logf("second publisher: %v: %s", err, strings.TrimSpace(out))
	if _, live := e.srv.StreamInfo("room2"); !live {
		t.Fatal("the first publisher must keep the room")
	}
}

// TestSignedURLs checks that signed play URLs are enforced on FLV and HLS.
// RTMP play is covered in package rtmp.
func TestSignedURLs(t *testing.T) {
	const key = "s3cret"
	e := newEnv(t, media.Config{GOPCache: true, PlaySignKey: key})
	now := time.Now()
	good := access.SignedQuery(key, "room1", now, time.Minute)
	expired := "expires=" + strconv.FormatInt(now.Add(-time.Second).Unix(), 10) + "&sign=" + access.Sign(key, "room1", now.Add(-time.Second).Unix())
	otherRoom := access.SignedQuery(key, "room2", now, time.Minute)
	forged := "expires=" + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + "&sign=" + strings.Repeat("ab", 32)
	for _, ext := range []string{".flv", ".m3u8"} {
		for name, q := range map[string]string{"none": "", "expired": expired, "other-room": otherRoom, "forged": forged} {
			code, body := e.getBody(t, "/live/room1"+ext+"?"+q)
			if code != http.StatusForbidden || !strings.Contains(body, `"code":"forbidden"`) {
				t.Errorf("%s %s: %d %s, want 403 forbidden", ext, name, code, body)
			}
		}
		// A good signature passes the check (the room is simply not live).
		code, body := e.getBody(t, "/live/room1"+ext+"?"+good)
		if code != http.StatusNotFound {
			t.Errorf("%s good signature: %d %s, want 404 not live", ext, code, body)
		}
	}
	if q := e.srv.SignPlayQuery("room1", time.Minute); !strings.Contains(q, "sign=") {
		t.Fatalf("SignPlayQuery = %q", q)
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t, media.Config{})
	for path, want := range map[string]int{
		"/live/room1.flv":      404,
		"/live/nope.flv":       404,
		"/live/../x.flv":       404,
		"/live/room1/x.ts":     404,
		"/live/":               404,
		"/live/room1.mp4":      404,
		"/live/-bad.flv":       404,
		"/live/room1.m3u8":     404,
		"/live/room1/a/b.m3u8": 404,
	} {
		if code, _ := e.getBody(t, path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	req, _ := http.NewRequest(http.MethodOptions, e.http.URL+"/live/room1.flv", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestFFmpegLowLatencyHLS: the LL-HLS variant carries h264+aac too and ends
// with ENDLIST.
func TestFFmpegLowLatencyHLS(t *testing.T) {
	e := newEnv(t, media.Config{GOPCache: true, HLSLowLatency: true})
	pub := testenv.Publish(t, e.rtmp+"/key1")
	e.rooms.WaitLive(t, "room1", true, 10*time.Second)
	testenv.CheckH264AAC(t, "LL-HLS", testenv.Probe(t, e.http.URL+"/live/room1.m3u8"), 320, 240)
	_, pl := mediaPlaylist(t, e, "room1")
	if !strings.Contains(pl, "#EXT-X-PART:") || !strings.Contains(pl, "CAN-BLOCK-RELOAD=YES") {
		t.Fatalf("not a low-latency playlist:\n%s", pl)
	}
	pub.Stop()
	e.rooms.WaitLive(t, "room1", false, 10*time.Second)
	checkHLSEnded(t, e, "room1")
}

// TestPlayHook: a non-2xx on_play answer refuses FLV and HLS play.
func TestPlayHook(t *testing.T) {
	var got []access.Event
	var mu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev access.Event
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer hook.Close()
	e := newEnv(t, media.Config{HookPlay: hook.URL})
	for _, p := range []string{"/live/room1.flv?token=abc", "/live/room1.m3u8?token=abc"} {
		if code, body := e.getBody(t, p); code != http.StatusForbidden || !strings.Contains(body, "on_play") {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Action != "on_play" || got[0].Protocol != "flv" || got[1].Protocol != "hls" ||
		got[0].Room != "room1" || got[0].Query != "token=abc" || got[0].RemoteAddr == "" || got[0].Key != "" {
		t.Fatalf("hook events %+v", got)
	}
}

func checkMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Counter != nil:
				vals[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				vals[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				vals[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	for _, k := range []string{
		"roomcast_media_streams_active",
		"roomcast_media_received_bytes_total",
		"roomcast_media_sent_bytes_total{protocol=flv}",
		"roomcast_media_sent_bytes_total{protocol=rtmp}",
		"roomcast_media_first_keyframe_seconds{protocol=flv}",
	} {
		if vals[k] <= 0 {
			t.Errorf("metric %s = %v, want > 0 (have %v)", k, vals[k], vals)
		}
	}
	if _, ok := vals["roomcast_media_viewers_active{protocol=hls}"]; !ok {
		t.Error("no HLS viewers gauge")
	}
}
