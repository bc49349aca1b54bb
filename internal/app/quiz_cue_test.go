package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"

	"roomcast/internal/config"
	"roomcast/internal/media/flvtag"
	"roomcast/internal/quiz"
	"roomcast/internal/testutil"
)

// TestQuizCueInStream: pushing a question while the room is live writes an
// onQuizQuestion script-data tag {"activity","n"} into the HTTP-FLV stream
// (the same tags RTMP viewers get) and an EXT-X-DATERANGE into the live HLS
// playlist, and the question carries the stream's clock (video_ms).
func TestQuizCueInStream(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RTMP = "127.0.0.1:0"; c.QuizDelay = 0 })
	anchor := s.createRoom("qlive")
	var rm struct {
		StreamKey string `json:"stream_key"`
	}
	s.do("GET", "/api/rooms/qlive", anchor, nil, &rm)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pctx, stop := context.WithCancel(ctx)
	pub := publish(pctx, t, s.rtmpURL()+rm.StreamKey)
	defer func() { stop(); _ = pub.Wait() }()
	testutil.WaitFor(t, "room live", 30*time.Second, func() bool { _, live := s.roomStatus("qlive"); return live })
	id := createQuiz(t, s, anchor, quizBody("qlive", 0, 1000)).ID
	viewer := s.player(ctx, "qlive", "v1")

	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/live/qlive.flv", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("flv: %v", err)
	}
	defer resp.Body.Close()
	rd := flvtag.NewReader(bufio.NewReader(resp.Body))
	if _, err := rd.ReadFileHeader(); err != nil {
		t.Fatal(err)
	}
	cues := make(chan []any, 4)
	go func() { // owned by the test: ends when the response body closes
		for {
			tag, err := rd.ReadTag()
			if err != nil {
				close(cues)
				return
			}
			if tag.Type != flvtag.TypeScript {
				continue
			}
			if d, err := amf0.Unmarshal(tag.Body); err == nil && len(d) == 2 && d[0] == quiz.CueName {
				cues <- d
			}
		}
	}()

	// HLS has segments before the cue, so the date range lands on its timeline.
	media := ""
	testutil.WaitFor(t, "an HLS media playlist with segments", 30*time.Second, func() bool {
		idx := get(ctx, s.url+"/live/qlive.m3u8")
		for _, l := range strings.Split(idx, "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				media = s.url + "/live/" + strings.TrimSpace(l)
			}
		}
		return media != "" && strings.Contains(get(ctx, media), "#EXTINF")
	})

	s.opStep(anchor, "/api/activities/"+id+"/start")
	s.opStep(anchor, "/api/activities/"+id+"/questions/1/push")
	q := decodeData[quiz.QuestionData](t, viewer.waitMsg(ctx, "quiz_question", 1))
	if q.VideoMS <= 0 {
		t.Fatalf("video_ms %d", q.VideoMS)
	}
	select {
	case d, ok := <-cues:
		if !ok {
			t.Fatal("FLV stream ended without the cue")
		}
		obj, _ := d[1].(amf0.Object)
		if fmt.Sprint(obj) != fmt.Sprint(amf0.Object{{Key: "activity", Value: id}, {Key: "n", Value: float64(1)}}) {
			t.Fatalf("cue %v", d)
		}
	case <-ctx.Done():
		t.Fatal("no onQuizQuestion tag in the FLV stream")
	}
	want := `X-ACTIVITY="` + id + `",X-N=1`
	testutil.WaitFor(t, "EXT-X-DATERANGE in the media playlist", 20*time.Second, func() bool {
		pl := get(ctx, media)
		return strings.Contains(pl, "#EXT-X-DATERANGE:") && strings.Contains(pl, want) && strings.Contains(pl, `X-NAME="onQuizQuestion"`)
	})
	resp.Body.Close()
	for range cues { // the reader goroutine ends with the body
	}
}

func get(ctx context.Context, url string) string {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
