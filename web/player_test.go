package web_test

import (
	"fmt"
	"testing"
	"time"

	"roomcast/internal/config"
)

// waitLive waits until the API says the room is live.
func (s *server) waitLive(room string, timeout time.Duration) bool {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var r roomInfo
		if s.do("GET", "/api/rooms/"+room, "", nil, &r) == 200 && r.Live {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The viewer page, opened while the room is offline, starts by itself when
// ffmpeg starts publishing, and plays: the video's currentTime advances and
// its readyState reaches HAVE_FUTURE_DATA (3).
func TestViewerPlaysStream(t *testing.T) {
	rtmpPort := freePort(t)
	s := startServer(t, func(c *config.Config) { c.RTMP = fmt.Sprintf("127.0.0.1:%d", rtmpPort) })
	room, _ := s.createRoom("tv", "Test pattern", "tina")
	tb := newTab(t)
	tb.navigate(s.url + "/room/tv")
	tb.wait(`document.body.dataset.status === 'idle' && !document.querySelector('#overlay').hidden`, 5*time.Second)

	stop := publish(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", rtmpPort, room.StreamKey))
	if !s.waitLive("tv", time.Minute) {
		t.Fatal("the room did not go live within a minute of ffmpeg publishing (is the media server wired into internal/app?)")
	}
	tb.wait(`document.body.dataset.status === 'live'`, 12*time.Second)
	tb.wait(`(() => { const v = document.querySelector('#video'); return v.readyState >= 3 && v.currentTime > 0; })()`, 20*time.Second)
	// Playing: currentTime keeps advancing (by a second of video, however
	// long a busy machine takes to play it).
	t1 := eval[float64](tb, `document.querySelector('#video').currentTime`)
	took := tb.wait(fmt.Sprintf(`document.querySelector('#video').currentTime >= %f`, t1+1), 30*time.Second)
	t2 := eval[float64](tb, `document.querySelector('#video').currentTime`)
	rs := eval[int](tb, `document.querySelector('#video').readyState`)
	t.Logf("one second of video played in %v", took)
	tb.wait(`document.querySelector('#video').readyState >= 3`, 30*time.Second) // a loaded machine may stall a moment
	if kind := eval[string](tb, `document.querySelector('#player-kind').textContent`); kind != "HTTP-FLV" {
		t.Errorf("player %q, want HTTP-FLV through mpegts.js", kind)
	}
	if !eval[bool](tb, `document.querySelector('#overlay').hidden`) {
		t.Error("the offline overlay still covers the playing video")
	}
	t.Logf("played %.2f s → %.2f s, readyState %d", t1, t2, rs)

	// The publisher stops: the page says the stream ended.
	stop()
	tb.wait(`document.body.dataset.status === 'ended' && !document.querySelector('#overlay').hidden`, 10*time.Second)
}
