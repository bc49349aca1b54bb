package media_test

import (
	"bytes"
	"image/jpeg"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"roomcast/internal/media"
	"roomcast/internal/media/internal/testenv"
	"roomcast/internal/testutil"
)

// decodes reads the times (ns) the counting ffmpeg wrapper decoded at.
func decodes(t *testing.T, log string) []int64 {
	t.Helper()
	raw, _ := os.ReadFile(log)
	var out []int64
	for _, f := range strings.Fields(string(raw)) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Pictures (issue 15): nothing is decoded while nobody asks; a request
// decodes the GOP cache's key frame into a JPEG of the stream's size;
// requests within --thumbnail-every share it; a later one decodes again,
// never sooner than the period; the ended session's picture stays as the
// room's cover, on disk.
func TestThumbnails(t *testing.T) {
	testenv.NeedFFmpeg(t)
	real, _ := exec.LookPath("ffmpeg")
	dir := t.TempDir()
	log := filepath.Join(dir, "decodes")
	wrapper := filepath.Join(dir, "ffmpeg")
	script := "#!/bin/sh\ncase \"$*\" in *pipe:0*) date +%s%N >> " + log + ";; esac\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	covers := filepath.Join(dir, "covers")
	every := time.Second
	e := newEnv(t, media.Config{GOPCache: true, ThumbnailEvery: every, CoverDir: covers, FFmpeg: wrapper})
	if code, _ := e.getBody(t, "/live/room1.jpg"); code != 404 {
		t.Errorf("a room never live: %d, want 404", code)
	}
	pub := testenv.Publish(t, e.rtmp+"/key1")
	e.rooms.WaitLive(t, "room1", true, 10*time.Second)
	testutil.WaitFor(t, "a key frame and 2 s of stream", 20*time.Second, func() bool {
		info, ok := e.srv.StreamInfo("room1")
		return ok && info.Uptime >= 2 && e.srv.PictureURL("room1") != ""
	})
	if n := len(decodes(t, log)); n != 0 {
		t.Fatalf("%d decodes while nobody asked", n)
	}

	get := func() []byte {
		t.Helper()
		resp := e.get(t, "/live/room1.jpg")
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("GET /live/room1.jpg: %d %s", resp.StatusCode, b)
		}
		return b
	}
	first := get()
	if cfg, err := jpeg.DecodeConfig(bytes.NewReader(first)); err != nil || cfg.Width != 320 || cfg.Height != 240 {
		t.Fatalf("picture: %v %+v", err, cfg)
	}
	if again := get(); !bytes.Equal(again, first) || len(decodes(t, log)) != 1 {
		t.Fatalf("a second request within the period decoded again (%d decodes)", len(decodes(t, log)))
	}
	testutil.WaitFor(t, "a second decode after the period", 20*time.Second, func() bool { get(); return len(decodes(t, log)) >= 2 })
	if d := decodes(t, log); time.Duration(d[1]-d[0]) < every {
		t.Errorf("decoded twice within %v", time.Duration(d[1]-d[0]))
	}

	pub.Stop()
	e.rooms.WaitLive(t, "room1", false, 10*time.Second)
	testutil.WaitFor(t, "the cover on disk", 20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(covers, "room1.jpg"))
		return err == nil
	})
	if b := get(); len(b) == 0 {
		t.Error("no cover after the stream ended")
	}
}
