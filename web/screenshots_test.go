package web_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"roomcast/internal/auth"
	"roomcast/internal/config"
)

// Every page at desktop and phone width, with no console error. The files go
// to $ROOMCAST_SCREENSHOTS (make screenshots: docs/screenshots/), else to a
// temporary directory. The show room is published with ffmpeg so the
// pictures show a playing stream (when the media server is there).
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("ROOMCAST_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rtmpPort := freePort(t)
	s := startServer(t, func(c *config.Config) { c.RTMP = fmt.Sprintf("127.0.0.1:%d", rtmpPort) })
	show, anchorTok := s.createRoom("synthwave", "Friday night synthwave 🎹 live from the studio", "mika")
	s.createRoom("ramen", "Cooking ramen from scratch", "kenji")
	s.createRoom("blitz", "Blitz chess — road to 2000", "ola")
	_ = publish(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", rtmpPort, show.StreamKey))
	if !s.waitLive("synthwave", 8*time.Second) {
		t.Log("the room did not go live (no media server?): the pictures show it offline")
	}

	users := []struct {
		sub, name string
		level     int
	}{{"u1", "nightdrive", 3}, {"u2", "Lena", 12}, {"u3", "pixelcat", 38}, {"u4", "Marco", 1}, {"u5", "神様", 72}}
	toks := make([]string, len(users))
	for i, u := range users {
		toks[i] = s.token(u.sub, u.name, auth.RoleViewer, u.level)
	}
	lines := []string{"this bassline 🔥", "hi from Lisbon!", "what synth is that?", "first time here, love it",
		"Juno-106 I think", "turn it up!!", "the colours on this stream ✨", "1 more hour pls", "gg", "🎶🎶🎶"}
	talk := func(n int) {
		for i := range n {
			u := i % len(users)
			s.chat("synthwave", toks[u], lines[i%len(lines)])
			if i == 3 {
				s.do("POST", "/api/rooms/synthwave/messages", toks[4], map[string]any{"kind": "gift", "gift": map[string]any{"id": "rocket", "count": 1}}, nil)
			}
			time.Sleep(90 * time.Millisecond)
		}
	}

	type viewport struct {
		name          string
		width, height int64
		opts          []chromedp.EmulateViewportOption
	}
	viewports := []viewport{
		{"desktop", 1280, 800, nil},
		{"phone", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch}},
	}
	for _, vp := range viewports {
		shoot := func(page, url, ready string, full bool, before func(*tab)) {
			t.Helper()
			tb := newTab(t)
			tb.do(chromedp.EmulateViewport(vp.width, vp.height, vp.opts...))
			tb.navigate(url)
			tb.wait(ready, 10*time.Second)
			if before != nil {
				before(tb)
			}
			if w := eval[int](tb, `document.documentElement.scrollWidth`); w > int(vp.width) {
				t.Errorf("%s at %s width: the page is %d px wide, wider than the screen (%d px)", page, vp.name, w, vp.width)
			}
			var png []byte
			var err error
			if full {
				png, err = chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
			} else {
				png, err = chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
			}
			if err != nil {
				t.Fatalf("%s %s: %v", page, vp.name, err)
			}
			path := filepath.Join(dir, page+"-"+vp.name+".png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d KiB)", path, len(png)>>10)
		}
		shoot("room", s.url+"/room/synthwave", `document.body.dataset.transport === 'ws'`, false, func(tb *tab) {
			if s.waitLive("synthwave", 0) {
				tb.wait(`document.querySelector('#video').readyState >= 3`, 10*time.Second)
			}
			talk(10)
			tb.wait(`document.querySelectorAll('#danmaku .dm').length >= 4`, 5*time.Second)
			time.Sleep(1200 * time.Millisecond) // let them fly in
		})
		shoot("studio", s.url+"/studio#token="+anchorTok, `document.querySelector('#stream-key').value !== ''`, true, func(tb *tab) {
			tb.wait(`Number(document.querySelector('#chart-viewers').dataset.samples) >= 3`, 8*time.Second)
			talk(10)
			tb.wait(`document.querySelectorAll('#mod-chat .line').length >= 4 && Number(document.querySelector('#chart-rate').dataset.last) > 0`, 8*time.Second)
			time.Sleep(1500 * time.Millisecond)
		})
		shoot("index", s.url+"/", `document.querySelectorAll('.card').length === 3`, true, nil)
	}
}
