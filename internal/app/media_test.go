package app

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

// publish pushes a small synthetic H.264/AAC stream with real ffmpeg until
// ctx ends; it fails the test (never skips) when ffmpeg is missing.
func publish(ctx context.Context, t *testing.T, url string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg is required (scripts/deps.sh installs it)")
	}
	cmd := exec.CommandContext(ctx, bin, "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
		"-c:a", "aac", "-f", "flv", url)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func (s *server) rtmpURL() string {
	return "rtmp://" + s.app.Media.RTMPAddr().String() + "/live/"
}

func (s *server) roomStatus(id string) (status string, live bool) {
	var r struct {
		Status string `json:"status"`
		Live   bool   `json:"live"`
	}
	s.do("GET", "/api/rooms/"+id, "", nil, &r)
	return r.Status, r.Live
}

// TestLiveLifecycle: publishing with the room's key makes it live and tells
// the room (live_start); a wrong key is refused; ffprobe sees h264+aac over
// HTTP-FLV; the publisher leaving ends the room (live_end).
func TestLiveLifecycle(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RTMP = "127.0.0.1:0"; c.Tick = 20 * time.Millisecond })
	anchor := s.createRoom("live1")
	var rm struct {
		StreamKey string `json:"stream_key"`
	}
	s.do("GET", "/api/rooms/live1", anchor, nil, &rm)
	if !strings.HasPrefix(rm.StreamKey, "rk_") {
		t.Fatalf("the anchor should see the stream key: %+v", rm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := s.dial(ctx, "room=live1&cursor=0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()

	// A wrong key is refused: ffmpeg exits with an error and the room stays idle.
	bad := exec.CommandContext(ctx, "ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-f", "flv", s.rtmpURL()+"rk_wrong")
	if out, err := bad.CombinedOutput(); err == nil {
		t.Fatalf("publishing with a wrong key succeeded: %s", out)
	}
	if st, _ := s.roomStatus("live1"); st != "idle" {
		t.Fatalf("room status after a refused publish: %s", st)
	}

	pctx, stop := context.WithCancel(ctx)
	pub := publish(pctx, t, s.rtmpURL()+rm.StreamKey)
	testutil.WaitFor(t, "room live", 20*time.Second, func() bool { _, live := s.roomStatus("live1"); return live })
	if !waitText(ctx, c, "live_start") {
		t.Fatal("no live_start message")
	}
	probe, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
		"-of", "json", "-read_intervals", "%+2", "http://"+s.app.HTTPAddr()+"/live/live1.flv").Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var pr struct {
		Streams []struct {
			CodecName string `json:"codec_name"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(probe, &pr); err != nil {
		t.Fatal(err)
	}
	codecs := map[string]bool{}
	for _, st := range pr.Streams {
		codecs[st.CodecName] = true
		if st.CodecName == "h264" && (st.Width != 320 || st.Height != 240) {
			t.Fatalf("resolution %dx%d", st.Width, st.Height)
		}
	}
	if !codecs["h264"] || !codecs["aac"] {
		t.Fatalf("streams: %s", probe)
	}
	var info struct {
		Live  bool   `json:"live"`
		Codec string `json:"codec"`
	}
	s.do("GET", "/api/rooms/live1/stream", "", nil, &info)
	if !info.Live || info.Codec != "h264" {
		t.Fatalf("stream info: %+v", info)
	}
	stop()
	_ = pub.Wait()
	testutil.WaitFor(t, "room ended", 20*time.Second, func() bool { st, _ := s.roomStatus("live1"); return st == "ended" })
	if !waitText(ctx, c, "live_end") {
		t.Fatal("no live_end message")
	}
}

// TestKeysSurviveRestart: stream keys (and the livego control API's) are
// the same after a restart on the same data dir, and the old key publishes.
func TestKeysSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	mk := func() *server {
		return startServer(t, func(c *config.Config) { c.Data = dir; c.RTMP = "127.0.0.1:0" })
	}
	s1 := mk()
	var got struct {
		Status int    `json:"status"`
		Data   string `json:"data"`
	}
	if code := s1.do("GET", "/control/get?room=movie", testAdminKey, nil, &got); code != 200 || got.Status != 200 || got.Data == "" {
		t.Fatalf("control/get: %d %+v", code, got)
	}
	key := got.Data
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s1.app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := mk()
	if s2.do("GET", "/control/get?room=movie", testAdminKey, nil, &got); got.Data != key {
		t.Fatalf("key changed across restart: %s → %s", key, got.Data)
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	pub := publish(pctx, t, s2.rtmpURL()+key)
	testutil.WaitFor(t, "live after restart", 20*time.Second, func() bool { _, live := s2.roomStatus("movie"); return live })
	stop()
	_ = pub.Wait()
	// A reset key replaces the old one.
	s2.do("GET", "/control/reset?room=movie", testAdminKey, nil, &got)
	if got.Data == key || got.Data == "" {
		t.Fatalf("reset did not change the key: %+v", got)
	}
	// With an admin key configured, the control API needs it (even on loopback).
	var e struct {
		Status int `json:"status"`
	}
	req := s2.do("GET", "/control/get?room=movie", "wrong-key", nil, &e)
	if req != 403 {
		t.Fatalf("control API with a wrong key: %d", req)
	}
}
