// Package testenv holds test helpers shared by the media packages: a fake
// Rooms made of function fields, synthetic H.264/AAC frames, and the real
// ffmpeg/ffprobe drivers used by the end-to-end tests.
//
// The ffmpeg tests are all named TestFFmpeg*, so `go test -run FFmpeg` runs
// just them and `-skip FFmpeg` (or -short) leaves them out. A missing
// ffmpeg or ffprobe makes them fail, never skip: CI must have them.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Rooms is a fake room registry. Nil function fields use the built-in
// behaviour: Keys maps stream keys to rooms, a room exists when some key
// maps to it, SetLive records calls on Live.
type Rooms struct {
	ByStreamKeyFunc func(ctx context.Context, key string) (string, error)
	ExistsFunc      func(ctx context.Context, id string) (bool, error)
	SetLiveFunc     func(ctx context.Context, id string, live bool) error

	mu   sync.Mutex
	Keys map[string]string // key → room
	// Live receives every SetLive call (buffered; a full buffer drops).
	Live chan LiveEvent
}

// LiveEvent is one SetLive call.
type LiveEvent struct {
	Room string
	Live bool
}

// NewRooms returns a fake with key → room pairs.
func NewRooms(pairs ...string) *Rooms {
	r := &Rooms{Keys: map[string]string{}, Live: make(chan LiveEvent, 64)}
	for i := 0; i+1 < len(pairs); i += 2 {
		r.Keys[pairs[i]] = pairs[i+1]
	}
	return r
}

// ErrBadKey is returned for unknown keys.
var ErrBadKey = errors.New("unknown stream key")

// ByStreamKey implements hub.Rooms.
func (r *Rooms) ByStreamKey(ctx context.Context, key string) (string, error) {
	if r.ByStreamKeyFunc != nil {
		return r.ByStreamKeyFunc(ctx, key)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.Keys[key]; ok {
		return id, nil
	}
	return "", ErrBadKey
}

// Exists implements hub.Rooms.
func (r *Rooms) Exists(ctx context.Context, id string) (bool, error) {
	if r.ExistsFunc != nil {
		return r.ExistsFunc(ctx, id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.Keys {
		if v == id {
			return true, nil
		}
	}
	return false, nil
}

// SetLive implements hub.Rooms.
func (r *Rooms) SetLive(ctx context.Context, id string, live bool) error {
	if r.SetLiveFunc != nil {
		return r.SetLiveFunc(ctx, id, live)
	}
	select {
	case r.Live <- LiveEvent{id, live}:
	default:
	}
	return nil
}

// WaitLive waits for a SetLive(room, live) call.
func (r *Rooms) WaitLive(t testing.TB, room string, live bool, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-r.Live:
			if ev.Room == room && ev.Live == live {
				return
			}
		case <-deadline:
			t.Fatalf("no SetLive(%s, %v) within %v", room, live, timeout)
		}
	}
}

// Logger returns a logger writing to t.Log at level (debug when verbose).
func Logger(t testing.TB) *slog.Logger {
	lvl := slog.LevelWarn
	if testing.Verbose() {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Synthetic H.264 parameter sets (320x240 baseline, from x264) and AAC
// config (LC, 44.1 kHz, stereo), good enough for the hub: nothing decodes
// the synthetic pictures.
var (
	SPS = []byte{0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x23, 0xc5, 0x0a, 0xa8}
	PPS = []byte{0x68, 0xce, 0x0f, 0xc8}
	ASC = []byte{0x12, 0x10}
)

// IDR returns a fake IDR NALU of n bytes; NonIDR a fake P-slice.
func IDR(n int) []byte    { return fill(0x65, n) }
func NonIDR(n int) []byte { return fill(0x41, n) }

func fill(first byte, n int) []byte {
	b := make([]byte, max(n, 2))
	b[0] = first
	for i := 1; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// ---- ffmpeg ----

var (
	sampleOnce sync.Once
	sampleDir  string
	samplePath string
	sampleErr  error
)

// NeedFFmpeg fails the test when ffmpeg or ffprobe is missing, and skips
// it under -short.
func NeedFFmpeg(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("ffmpeg end-to-end test skipped in -short mode")
	}
	for _, b := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is required for the media end-to-end tests (apt-get install -y ffmpeg): %v", b, err)
		}
	}
}

// Sample returns the path of a short pre-encoded FLV (320x240 H.264 at
// 30 fps with a key frame every second, 44.1 kHz stereo AAC), made once per
// test binary so publishing costs no encoding CPU.
func Sample(t testing.TB) string {
	t.Helper()
	NeedFFmpeg(t)
	sampleOnce.Do(func() {
		sampleDir, sampleErr = os.MkdirTemp("", "roomcast-media-test")
		if sampleErr != nil {
			return
		}
		samplePath = filepath.Join(sampleDir, "sample.flv")
		out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
			"-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
			"-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ac", "2",
			"-f", "flv", samplePath).CombinedOutput()
		if err != nil {
			sampleErr = fmt.Errorf("encode sample: %v: %s", err, out)
		}
	})
	if sampleErr != nil {
		t.Fatal(sampleErr)
	}
	return samplePath
}

// Cleanup removes the sample; call it from TestMain after m.Run.
func Cleanup() {
	if sampleDir != "" {
		_ = os.RemoveAll(sampleDir)
	}
}

// Proc is a running ffmpeg.
type Proc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
	err  error
}

// Publish pushes the sample in a loop, in real time, to url until Stop.
func Publish(t testing.TB, url string) *Proc {
	t.Helper()
	return Start(t, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", Sample(t),
		"-c", "copy", "-f", "flv", url)
}

// Start runs ffmpeg with args; the test's cleanup stops it.
func Start(t testing.TB, args ...string) *Proc {
	t.Helper()
	NeedFFmpeg(t)
	p := &Proc{cmd: exec.Command("ffmpeg", args...), out: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ffmpeg: %v", err)
	}
	go func() { // owned by p: ends when ffmpeg exits (Stop kills it)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Stop)
	return p
}

// Stop kills ffmpeg and waits for it.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Wait waits up to timeout for ffmpeg to exit by itself and returns its
// error and output; ok is false on timeout.
func (p *Proc) Wait(timeout time.Duration) (err error, out string, ok bool) {
	select {
	case <-p.done:
		return p.err, p.out.String(), true
	case <-time.After(timeout):
		return nil, "", false
	}
}

// Stream is one stream as ffprobe reports it.
type Stream struct {
	CodecName string `json:"codec_name"`
	CodecType string `json:"codec_type"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
}

// Probe runs ffprobe on url (or a file) and returns its streams.
func Probe(t testing.TB, url string, extra ...string) []Stream {
	t.Helper()
	NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"-v", "error", "-probesize", "400000", "-analyzeduration", "1500000"}, extra...)
	args = append(args, "-show_entries", "stream=codec_name,codec_type,width,height", "-of", "json", url)
	out, err := exec.CommandContext(ctx, "ffprobe", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ffprobe %s: %v: %s", url, err, ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v", url, err)
	}
	var res struct {
		Streams []Stream `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("ffprobe output %q: %v", out, err)
	}
	return res.Streams
}

// CheckH264AAC fails unless streams are one H.264 video of w×h and one AAC
// audio.
func CheckH264AAC(t testing.TB, what string, streams []Stream, w, h int) {
	t.Helper()
	var video, audio bool
	for _, s := range streams {
		switch {
		case s.CodecType == "video" && s.CodecName == "h264" && s.Width == w && s.Height == h:
			video = true
		case s.CodecType == "audio" && s.CodecName == "aac":
			audio = true
		}
	}
	if !video || !audio {
		t.Fatalf("%s: want h264 %dx%d + aac, ffprobe says %+v", what, w, h, streams)
	}
}

// Discard drains r (for goroutines reading responses in tests).
func Discard(r io.Reader) { _, _ = io.Copy(io.Discard, r) }
