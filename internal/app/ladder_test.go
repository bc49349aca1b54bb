package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

// probeVideo returns the width and height ffprobe sees at url.
func probeVideo(t *testing.T, url string) (w, h int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-rw_timeout", "15000000", "-select_streams", "v:0",
		"-show_entries", "stream=width,height", "-of", "json", url).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", url, err)
	}
	var res struct {
		Streams []struct{ Width, Height int } `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe %s: %v %s", url, err, out)
	}
	return res.Streams[0].Width, res.Streams[0].Height
}

// The quality ladder (issue 15, M10): a 320×240 source gets 240p and 120p
// renditions, each playable over RTMP, HTTP-FLV and HLS at its resolution;
// the master playlist lists the source and both; killing the ffmpeg child
// restarts it; the publisher leaving stops it; its CPU is in /metrics.
func TestQualityLadder(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RTMP = "127.0.0.1:0"; c.Transcode = "240p:300k,120p:100k" })
	if s.app.ladder == nil {
		t.Fatal("the ladder is off")
	}
	tok := s.createRoom("tc")
	var room struct {
		Key string `json:"stream_key"`
	}
	s.do("GET", "/api/rooms/tc", tok, nil, &room)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := publish(ctx, t, s.rtmpURL()+room.Key)
	defer func() { cancel(); _ = pub.Wait() }()

	testutil.WaitFor(t, "both renditions live", 60*time.Second, func() bool {
		_, ok1 := s.app.Media.StreamInfo("tc_240p")
		_, ok2 := s.app.Media.StreamInfo("tc_120p")
		return ok1 && ok2
	})
	for _, c := range []struct {
		url  string
		w, h int
	}{
		{s.rtmpURL() + "tc_120p", 160, 120},
		{s.url + "/live/tc_240p.flv", 320, 240},
		{s.url + "/live/tc_120p.m3u8", 160, 120},
	} {
		if w, h := probeVideo(t, c.url); w != c.w || h != c.h {
			t.Errorf("%s is %dx%d, want %dx%d", c.url, w, h, c.w, c.h)
		}
	}
	if st, _ := s.roomStatus("tc_240p"); st != "" {
		t.Errorf("a rendition is a room of the registry (status %q)", st)
	}

	var master string
	testutil.WaitFor(t, "the master playlist with three variants", 30*time.Second, func() bool {
		master = getText(t, s.url+"/live/tc.m3u8")
		return strings.Count(master, "#EXT-X-STREAM-INF") == 3
	})
	for _, want := range []string{"RESOLUTION=320x240", "RESOLUTION=160x120", "\ntc_240p/", "\ntc_120p/", "\ntc/"} {
		if !strings.Contains(master, want) {
			t.Errorf("master playlist lacks %q:\n%s", want, master)
		}
	}
	// A variant's URI plays: ffprobe follows it from the master.
	if w, h := probeVideo(t, s.url+"/live/"+regexp.MustCompile(`tc_120p/\S+`).FindString(master)); w != 160 || h != 120 {
		t.Errorf("the 120p variant of the master plays at %dx%d", w, h)
	}

	// Killing the child restarts it (after the backoff); the rendition comes back.
	old := s.app.ladder.PIDs()["tc"]
	if old == 0 {
		t.Fatal("no ffmpeg child for room tc")
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a new ffmpeg child", 30*time.Second, func() bool {
		p := s.app.ladder.PIDs()["tc"]
		return p != 0 && p != old
	})
	testutil.WaitFor(t, "the rendition back", 60*time.Second, func() bool {
		_, ok := s.app.Media.StreamInfo("tc_120p")
		return ok
	})
	if w, h := probeVideo(t, s.url+"/live/tc_120p.flv"); w != 160 || h != 120 {
		t.Errorf("after the restart 120p is %dx%d", w, h)
	}
	metrics := getText(t, s.url+"/metrics")
	for _, want := range []string{`roomcast_transcode_cpu_seconds_total{room="tc"}`, "roomcast_transcode_restarts_total 1", "roomcast_transcode_processes 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The publisher leaves: the child is killed, no restart.
	cancel()
	_ = pub.Wait()
	testutil.WaitFor(t, "the ladder stopped", 30*time.Second, func() bool { return len(s.app.ladder.PIDs()) == 0 })
	if !strings.Contains(getText(t, s.url+"/metrics"), "roomcast_transcode_restarts_total 1") {
		t.Error("the ladder restarted after the publisher left")
	}
}

// Without ffmpeg the ladder stays off, serve says so, and the rest runs.
func TestQualityLadderWithoutFFmpeg(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var logs bytes.Buffer
	cfg := config.Default()
	cfg.HTTP, cfg.RTMP, cfg.Data, cfg.Transcode = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), "480p:1000k"
	a, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	if a.ladder != nil || !strings.Contains(logs.String(), "ffmpeg is not installed: the quality ladder (--transcode) stays off") {
		t.Errorf("ladder %v, logs:\n%s", a.ladder, logs.String())
	}
	bad := config.Default()
	bad.HTTP, bad.Data, bad.Transcode = "127.0.0.1:0", t.TempDir(), "480:1000k"
	if _, err := New(context.Background(), bad, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "HEIGHTp:BITRATE") {
		t.Errorf("a bad --transcode: %v", err)
	}
}

func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b)
}
