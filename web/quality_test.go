package web_test

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

// With a quality ladder the viewer page offers Auto and each rendition;
// choosing one plays it at its height.
func TestViewerQualityChoice(t *testing.T) {
	rtmpPort := freePort(t)
	s := startServer(t, func(c *config.Config) {
		c.RTMP = fmt.Sprintf("127.0.0.1:%d", rtmpPort)
		c.Transcode = "240p:300k"
	})
	room, _ := s.createRoom("ql", "Ladder", "lara")
	publish(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", rtmpPort, room.StreamKey))
	if !s.waitLive("ql", time.Minute) {
		t.Fatal("the room did not go live")
	}
	testutil.WaitFor(t, "the 240p rendition", 60*time.Second, func() bool { _, ok := s.app.Media.StreamInfo("ql_240p"); return ok })
	// Should the rendition restart meanwhile, the player retries.
	tb := newTab(t, regexp.MustCompile(`ql_240p\.flv|code = 404`))
	tb.navigate(s.url + "/room/ql")
	tb.wait(`!document.querySelector('#quality').hidden`, 10*time.Second)
	if opts := eval[string](tb, `[...document.querySelectorAll('#quality option')].map(o => o.textContent).join(',')`); opts != "Auto,240p" {
		t.Errorf("quality options %q", opts)
	}
	tb.wait(`document.querySelector('#video').videoHeight === 360`, 30*time.Second) // Auto: the source
	tb.do(chromedpEval(`(() => { const s = document.querySelector('#quality'); s.value = '240p'; s.dispatchEvent(new Event('change')); })()`))
	tb.wait(`document.querySelector('#video').videoHeight === 240 && document.querySelector('#video').currentTime > 0`, 45*time.Second)
}
