package hls

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/media/access"
	"roomcast/internal/media/hub"
	"roomcast/internal/media/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRewriteURIs(t *testing.T) {
	in := "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",URI=\"audio2_stream.m3u8?sign=x\"\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=1\nvideo1_stream.m3u8?sign=x\n\n"
	want := "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",URI=\"r1/audio2_stream.m3u8?sign=x\"\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=1\nr1/video1_stream.m3u8?sign=x\n\n"
	if got := string(rewriteURIs([]byte(in), "r1/")); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEndPlaylist(t *testing.T) {
	in := "#EXTM3U\n#EXTINF:1.0,\nseg1.mp4\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p.mp4\""
	got := string(endPlaylist([]byte(in)))
	if strings.Contains(got, "PRELOAD-HINT") || !strings.HasSuffix(got, "seg1.mp4\n#EXT-X-ENDLIST\n") {
		t.Fatalf("got %q", got)
	}
	if n := strings.Count(string(endPlaylist([]byte(got))), "ENDLIST"); n != 1 {
		t.Fatalf("ENDLIST %d times", n)
	}
}

func TestNotLiveAndSigned(t *testing.T) {
	rooms := testenv.NewRooms("k", "r1")
	m := hub.NewManager(hub.Config{}, rooms, testenv.Logger(t), nil)
	defer m.Close()
	s := New(Config{}, m, &access.Checker{SignKey: "key"}, testenv.Logger(t))
	defer s.Close()
	for _, c := range []struct {
		target string
		file   string
		code   int
	}{
		{"/live/r1.m3u8", "", 403},
		{"/live/r1.m3u8?" + access.SignedQuery("key", "r1", timeNow(), time.Minute), "", 404},
		{"/live/r1/x_seg1.ts", "x_seg1.ts", 403},
		{"/live/r1/x_seg1.ts?" + access.SignedQuery("key", "r1", timeNow(), time.Minute), "x_seg1.ts", 404},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, c.target, nil)
		if c.file == "" {
			s.ServeIndex(rec, req, "r1")
		} else {
			s.ServeFile(rec, req, "r1", c.file)
		}
		if rec.Code != c.code || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: %d, want %d", c.target, rec.Code, c.code)
		}
	}
}

func timeNow() time.Time { return time.Now() }
