package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

type session struct {
	ID         string     `json:"id"`
	Room       string     `json:"room"`
	StartedAt  time.Time  `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at"`
	DurationMS int64      `json:"duration_ms"`
	Live       bool       `json:"live"`
	Recorded   bool       `json:"recorded"`
	Messages   int64      `json:"messages"`
	VOD        string     `json:"vod"`
}

type archived struct {
	Seq     uint64 `json:"seq"`
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Text    string `json:"text"`
	VideoMS *int64 `json:"video_ms"`
}

type replayPage struct {
	Messages   []archived `json:"messages"`
	NextFromMS *int64     `json:"next_from_ms"`
}

var (
	sampleOnce sync.Once
	sampleFile string
	sampleErr  error
)

// replaySample is a 30 s pre-encoded FLV (320x240 H.264, key frame every
// second, AAC), made once so publishing is a cheap -c copy in real time.
func replaySample(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Fatal("ffprobe is required (scripts/deps.sh installs ffmpeg)")
	}
	sampleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "roomcast-replay")
		if err != nil {
			sampleErr = err
			return
		}
		sampleFile = filepath.Join(dir, "sample.flv")
		out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
			"-t", "30", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-b:a", "64k", "-f", "flv", sampleFile).CombinedOutput()
		if err != nil {
			sampleErr = fmt.Errorf("encode sample: %v: %s", err, out)
		}
	})
	if sampleErr != nil {
		t.Fatal(sampleErr)
	}
	t.Cleanup(func() {}) // the sample is removed with the temp dir by the OS; it is small
	return sampleFile
}

// publishSample pushes the sample in real time until ctx ends or it is killed.
func publishSample(ctx context.Context, t *testing.T, url string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", replaySample(t), "-c", "copy", "-f", "flv", url)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func stopPublish(cmd *exec.Cmd) { _ = cmd.Process.Kill(); _ = cmd.Wait() }

func (s *server) sessions(room string) []session {
	s.t.Helper()
	var out struct {
		Sessions []session `json:"sessions"`
	}
	if code := s.do("GET", "/api/rooms/"+room+"/sessions", "", nil, &out); code != 200 {
		s.t.Fatalf("sessions: %d", code)
	}
	return out.Sessions
}

func (s *server) streamKey(room, anchor string) string {
	s.t.Helper()
	var rm struct {
		StreamKey string `json:"stream_key"`
	}
	s.do("GET", "/api/rooms/"+room, anchor, nil, &rm)
	return rm.StreamKey
}

func (s *server) get(path string, hdr ...string) (*http.Response, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type probeOut struct {
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
	Streams []struct {
		CodecName string `json:"codec_name"`
	} `json:"streams"`
}

func ffprobe(t *testing.T, url string) (codecs map[string]bool, dur time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name", "-of", "json", url).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", url, err)
	}
	var p probeOut
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	codecs = map[string]bool{}
	for _, s := range p.Streams {
		codecs[s.CodecName] = true
	}
	f, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return codecs, time.Duration(f * float64(time.Second))
}

// sentAt is a message and the window of stream positions it was sent in.
type sentAt struct {
	id, text      string
	lo, hi        int64 // ms since the session's first frame, before and after the send
	clientVideoMS *int64
}

// allMessages pages through a session's archive with limit.
func allMessages(t *testing.T, s *server, sid string, limit int) []archived {
	t.Helper()
	var out []archived
	from := int64(0)
	for range 1000 {
		var p replayPage
		if code := s.do("GET", fmt.Sprintf("/api/sessions/%s/messages?from_ms=%d&limit=%d", sid, from, limit), "", nil, &p); code != 200 {
			t.Fatalf("messages: %d", code)
		}
		out = append(out, p.Messages...)
		if p.NextFromMS == nil {
			return out
		}
		if *p.NextFromMS <= from && len(p.Messages) == 0 {
			t.Fatal("paging does not advance")
		}
		from = *p.NextFromMS
	}
	t.Fatal("too many pages")
	return nil
}
