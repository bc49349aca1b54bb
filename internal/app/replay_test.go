package app

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

// Issue 10 end to end: a real ffmpeg publish is recorded; messages sent at
// known moments carry video_ms on the stream's clock; the session list, the
// VOD playlist and MP4 (ffprobe, Range), paging, the Bilibili export, a
// reconnect within the gap, the on_record_done hook, a restart, recording
// off and bad input are checked against one server and one sample.

func TestRecordReplay(t *testing.T) {
	hooks := make(chan map[string]any, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		hooks <- body
	}))
	t.Cleanup(hook.Close) // after the servers' shutdown (cleanups run last-in first-out)
	data := t.TempDir()
	cfgFn := func(c *config.Config) {
		c.RTMP = "127.0.0.1:0"
		c.Data = data
		c.RecordSegment = time.Second
		c.SessionGap = 8 * time.Second
		c.HookRecordDone = hook.URL
	}
	s := startServer(t, cfgFn)
	anchor := s.createRoom("rec1")
	key := s.streamKey("rec1", anchor)
	viewer := s.token("viewer1", "", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	sess, sent, after, firstLen := recordTwoPublishes(ctx, t, s, key, viewer)

	t.Run("video_ms", func(t *testing.T) { checkVideoMS(t, s, sess, sent, after, firstLen) })

	t.Run("vod", func(t *testing.T) { checkVOD(t, s, sess) })

	t.Run("paging and export", func(t *testing.T) { checkPaging(t, s, sess, sent) })

	t.Run("bad input", func(t *testing.T) { checkBadInput(t, s, sess, viewer, anchor) })

	t.Run("on_record_done", func(t *testing.T) {
		select {
		case h := <-hooks:
			if h["action"] != "on_record_done" || h["room"] != "rec1" || h["session"] != sess.ID || h["path"] == "" {
				t.Fatalf("hook body %v", h)
			}
			if d, _ := h["duration_ms"].(float64); int64(d) != sess.DurationMS {
				t.Fatalf("hook duration %v, session %d", h["duration_ms"], sess.DurationMS)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no on_record_done")
		}
	})

	// A restart keeps sessions, recordings and archives.
	before := allMessages(t, s, sess.ID, 500)
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	if err := s.app.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	scancel()
	// The restarted server signs play URLs and asks an on_play hook, which
	// VOD obeys as live playback does.
	plays := make(chan map[string]any, 16)
	refuse := make(chan bool, 1)
	refuse <- false
	onPlay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		plays <- body
		no := <-refuse
		refuse <- no
		if no {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(onPlay.Close)
	s = startServer(t, func(c *config.Config) { cfgFn(c); c.PlaySignKey = "vod-sign-key"; c.HookPlay = onPlay.URL })
	t.Run("signed URLs and on_play", func(t *testing.T) { checkSignedVOD(t, s, sess, plays, refuse) })
	t.Run("restart", func(t *testing.T) {
		ss := s.sessions("rec1")
		if len(ss) != 1 || ss[0].ID != sess.ID || !ss[0].Recorded || ss[0].DurationMS != sess.DurationMS || ss[0].Messages != int64(len(before)) {
			t.Fatalf("after restart: %+v, before %+v", ss, sess)
		}
		if got := allMessages(t, s, sess.ID, 500); len(got) != len(before) {
			t.Fatalf("after restart %d messages, before %d", len(got), len(before))
		}
		if codecs, _ := ffprobe(t, s.url+sess.VOD+"?"+s.app.Media.SignPlayQuery("rec1", time.Minute)); !codecs["h264"] {
			t.Fatalf("VOD after restart: %v", codecs)
		}
	})

	t.Run("recording off", func(t *testing.T) { checkRecordingOff(ctx, t, s, sess, viewer, anchor, data) })
}

func checkVideoMS(t *testing.T, s *server, sess session, sent []sentAt, after sentAt, firstLen int64) {
	msgs := allMessages(t, s, sess.ID, 2)
	byID := map[string]archived{}
	for _, m := range msgs {
		byID[m.ID] = m
	}
	for _, m := range sent {
		a, ok := byID[m.id]
		if !ok || a.VideoMS == nil {
			t.Fatalf("message %q not archived with video_ms: %+v", m.text, a)
		}
		got := *a.VideoMS
		if m.clientVideoMS != nil && m.text == "client says" {
			if got != *m.clientVideoMS {
				t.Errorf("plausible client video_ms %d replaced by %d", *m.clientVideoMS, got)
			}
			continue
		}
		if got < m.lo-300 || got > m.hi+300 {
			t.Errorf("%q: video_ms %d, sent while the stream was at %d–%d ms", m.text, got, m.lo, m.hi)
		}
	}
	a := byID[after.id]
	if a.VideoMS == nil || *a.VideoMS < firstLen || *a.VideoMS < after.lo-300 || *a.VideoMS > after.hi+300 {
		t.Errorf("after the reconnect: video_ms %v, want past %d, sent while the stream was at %d–%d ms", a.VideoMS, firstLen, after.lo, after.hi)
	}
	kinds := map[string]int{}
	for _, m := range msgs {
		kinds[m.Kind+":"+m.Text]++
	}
	if kinds["system:live_start"] != 2 || kinds["system:live_end"] != 2 {
		t.Errorf("system messages archived: %v", kinds)
	}
	if sess.Messages != int64(len(msgs)) {
		t.Errorf("session says %d messages, archive has %d", sess.Messages, len(msgs))
	}
}

func checkVOD(t *testing.T, s *server, sess session) {
	resp, pl := s.get(sess.VOD)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.apple.mpegurl" {
		t.Fatalf("playlist: %d %s", resp.StatusCode, pl)
	}
	for _, want := range []string{"#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-ENDLIST", "#EXT-X-PROGRAM-DATE-TIME:", "#EXT-X-DISCONTINUITY", `#EXT-X-MAP:URI="init-2.mp4"`} {
		if !strings.Contains(string(pl), want) {
			t.Errorf("playlist lacks %s:\n%s", want, pl)
		}
	}
	codecs, dur := ffprobe(t, s.url+sess.VOD)
	if !codecs["h264"] || !codecs["aac"] {
		t.Errorf("VOD codecs %v", codecs)
	}
	if d := dur - time.Duration(sess.DurationMS)*time.Millisecond; d < -1200*time.Millisecond || d > 1200*time.Millisecond {
		t.Errorf("VOD lasts %v, the session %d ms", dur, sess.DurationMS)
	}
	codecs, dur = ffprobe(t, s.url+"/vod/"+sess.ID+".mp4")
	if !codecs["h264"] || !codecs["aac"] {
		t.Errorf("MP4 codecs %v", codecs)
	}
	if d := dur - time.Duration(sess.DurationMS)*time.Millisecond; d < -1200*time.Millisecond || d > 1200*time.Millisecond {
		t.Errorf("MP4 lasts %v, the session %d ms", dur, sess.DurationMS)
	}
	resp, body := s.get("/vod/"+sess.ID+".mp4", "Range", "bytes=0-99")
	if resp.StatusCode != 206 || len(body) != 100 || !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes 0-99/") || string(body[4:8]) != "ftyp" {
		t.Fatalf("Range: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Range"), body[:min(8, len(body))])
	}
	size, _ := strconv.Atoi(strings.TrimPrefix(resp.Header.Get("Content-Range"), "bytes 0-99/"))
	resp, body = s.get("/vod/"+sess.ID+".mp4", "Range", fmt.Sprintf("bytes=%d-", size-10))
	if resp.StatusCode != 206 || len(body) != 10 {
		t.Fatalf("tail range: %d %d bytes", resp.StatusCode, len(body))
	}
	resp, body = s.get("/vod/"+sess.ID+".mp4", "Range", fmt.Sprintf("bytes=%d-", size))
	if resp.StatusCode != 416 || !strings.Contains(string(body), `"range_not_satisfiable"`) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
		t.Fatalf("range past the end: %d %s", resp.StatusCode, body)
	}
}

func checkPaging(t *testing.T, s *server, sess session, sent []sentAt) {
	all := allMessages(t, s, sess.ID, 500)
	paged := allMessages(t, s, sess.ID, 2)
	if len(all) != len(paged) || len(all) < len(sent)+4 {
		t.Fatalf("one page %d messages, pages of 2: %d", len(all), len(paged))
	}
	for i := range all {
		if all[i].ID != paged[i].ID {
			t.Fatalf("paging changed the order at %d", i)
		}
		if i > 0 && (*all[i].VideoMS < *all[i-1].VideoMS || *all[i].VideoMS == *all[i-1].VideoMS && all[i].Seq < all[i-1].Seq) {
			t.Fatalf("not ordered by video_ms, seq at %d", i)
		}
	}
	// A window, and "around".
	mid := *all[len(all)/2].VideoMS
	var win replayPage
	s.do("GET", fmt.Sprintf("/api/sessions/%s/messages?from_ms=%d&to_ms=%d", sess.ID, mid, mid+1500), "", nil, &win)
	for _, m := range win.Messages {
		if *m.VideoMS < mid || *m.VideoMS > mid+1500 {
			t.Fatalf("window [%d,%d] returned %d", mid, mid+1500, *m.VideoMS)
		}
	}
	var around replayPage
	s.do("GET", fmt.Sprintf("/api/sessions/%s/messages/around?t_ms=%d&count=3", sess.ID, mid), "", nil, &around)
	var before []archived
	for _, m := range all {
		if *m.VideoMS < mid {
			before = append(before, m)
		}
	}
	before = before[max(0, len(before)-3):]
	if len(around.Messages) != len(before) {
		t.Fatalf("around: %d messages, want %d", len(around.Messages), len(before))
	}
	for i := range before {
		if around.Messages[i].ID != before[i].ID {
			t.Fatalf("around[%d] = %s, want %s", i, around.Messages[i].ID, before[i].ID)
		}
	}
	// Bilibili XML.
	resp, raw := s.get("/api/sessions/" + sess.ID + "/messages?format=bilibili")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "xml") {
		t.Fatalf("bilibili: %d", resp.StatusCode)
	}
	var doc struct {
		D []struct {
			P    string `xml:"p,attr"`
			Text string `xml:",chardata"`
		} `xml:"d"`
	}
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("bilibili XML: %v\n%s", err, raw)
	}
	found := 0
	for _, d := range doc.D {
		p := strings.Split(d.P, ",")
		if len(p) != 8 {
			t.Fatalf("p=%q", d.P)
		}
		if d.Text == "at second 2 <b>&" {
			found++
			ts, _ := strconv.ParseFloat(p[0], 64)
			if ts < 1.5 || ts > 3.5 || p[1] != "1" {
				t.Errorf("bilibili entry %q", d.P)
			}
		}
	}
	if found != 1 || strings.Contains(string(raw), "<b>") {
		t.Fatalf("bilibili export: found %d, raw:\n%s", found, raw)
	}
}

func checkBadInput(t *testing.T, s *server, sess session, viewer, anchor string) {
	for _, c := range []struct {
		path, code string
		status     int
	}{
		{"/api/sessions/sdeadbeef", "not_found", 404},
		{"/api/sessions/nope/messages", "not_found", 404},
		{"/api/rooms/nosuch/sessions", "room_not_found", 404},
		{"/api/sessions/" + sess.ID + "/messages?from_ms=5000&to_ms=10", "bad_request", 400},
		{"/api/sessions/" + sess.ID + "/messages?limit=0", "bad_request", 400},
		{"/api/sessions/" + sess.ID + "/messages?limit=-5", "bad_request", 400},
		{"/api/sessions/" + sess.ID + "/messages?limit=5001", "bad_request", 400},
		{"/api/sessions/" + sess.ID + "/messages?limit=99999999999999999999", "bad_request", 400},
		{"/api/sessions/" + sess.ID + "/messages?from_ms=abc", "bad_request", 400},
		{"/api/sessions/" + sess.ID + "/messages?format=srt", "bad_request", 400},
		{"/api/sessions/" + sess.ID + "/messages/around", "bad_request", 400},
		{"/api/sessions/" + sess.ID + "/messages/around?t_ms=10&count=0", "bad_request", 400},
		{"/vod/sdeadbeef/index.m3u8", "not_found", 404},
		{"/vod/sdeadbeef.mp4", "not_found", 404},
		{"/vod/" + sess.ID + "/init-0.mp4", "not_found", 404},
		{"/vod/" + sess.ID + "/segments.jsonl", "not_found", 404},
		{"/vod/" + sess.ID + "/seg-999.m4s", "", 404},
	} {
		resp, body := s.get(c.path)
		if resp.StatusCode != c.status || (c.code != "" && !strings.Contains(string(body), `"code":"`+c.code+`"`)) {
			t.Errorf("%s: %d %s, want %d %s", c.path, resp.StatusCode, body, c.status, c.code)
		}
	}
	if code := s.do("PUT", "/api/rooms/rec1/recording", viewer, map[string]bool{"enabled": false}, nil); code != 403 {
		t.Errorf("a viewer turned recording off: %d", code)
	}
	if code := s.do("PUT", "/api/rooms/rec1/recording", anchor, `{"enabled":"yes"}`, nil); code != 400 {
		t.Errorf("bad body: %d", code)
	}
}

// recordTwoPublishes publishes the sample into rec1, sends messages at known
// moments (and a like, and client positions), reconnects within the gap,
// and returns the ended session once the archive has caught up.
func recordTwoPublishes(ctx context.Context, t *testing.T, s *server, key, viewer string) (sess session, sent []sentAt, after sentAt, firstLen int64) {
	// Publish 1: messages at known moments.
	pub := publishSample(ctx, t, s.rtmpURL()+key)
	testutil.WaitFor(t, "a live session", 30*time.Second, func() bool {
		ss := s.sessions("rec1")
		if len(ss) == 1 && ss[0].Live {
			sess = ss[0]
			return true
		}
		return false
	})
	// The stream position is the server's session clock (what the publisher
	// has sent so far), read just before and after each send: on a busy
	// machine ffmpeg falls behind the wall clock, so wall time since the
	// session started is not the stream's position.
	pos := func() int64 {
		t.Helper()
		sid, ms, ok := s.app.Recorder.Position(ctx, "rec1")
		if !ok || sid != sess.ID {
			t.Fatalf("stream clock: session %q ok %v, want %s", sid, ok, sess.ID)
		}
		return ms
	}
	send := func(text string, clientMS *int64) {
		t.Helper()
		lo := pos()
		body := map[string]any{"kind": "chat", "text": text}
		if clientMS != nil {
			body["video_ms"] = *clientMS
		}
		code, a := s.send("rec1", viewer, body)
		hi := pos()
		if code != 201 {
			t.Fatalf("send %q: %d %+v", text, code, a)
		}
		sent = append(sent, sentAt{id: a.ID, text: text, lo: lo, hi: hi, clientVideoMS: clientMS})
	}
	for i := range 4 {
		testutil.WaitFor(t, "stream time", 30*time.Second, func() bool { return pos() > int64(i+1)*1000 })
		send(fmt.Sprintf("at second %d <b>&", i+1), nil)
	}
	if code, _ := s.send("rec1", viewer, map[string]any{"kind": "like"}); code != 202 {
		t.Fatalf("like: %d", code)
	}
	behind := pos() - 2000
	send("client says", &behind) // plausible: used as is
	ahead := pos() + 60000
	send("client ahead", &ahead) // implausible: the server's clock instead

	// While live, the playlist is an EVENT playlist a late viewer can rewind.
	testutil.WaitFor(t, "a first segment", 20*time.Second, func() bool {
		resp, _ := s.get("/vod/" + sess.ID + "/index.m3u8")
		return resp.StatusCode == 200
	})
	if _, pl := s.get("/vod/" + sess.ID + "/index.m3u8"); !strings.Contains(string(pl), "#EXT-X-PLAYLIST-TYPE:EVENT") || strings.Contains(string(pl), "ENDLIST") {
		t.Fatalf("live playlist:\n%s", pl)
	}

	// Live messages carry video_ms in polling answers too.
	var poll struct {
		Messages []archived `json:"messages"`
	}
	s.do("GET", "/api/rooms/rec1/messages?cursor=0&limit=50", "", nil, &poll)
	stamped := 0
	for _, m := range poll.Messages {
		if m.Kind == "chat" && m.VideoMS != nil {
			stamped++
		}
	}
	if stamped != len(sent) {
		t.Fatalf("poll answer: %d of %d chat messages carry video_ms: %+v", stamped, len(sent), poll.Messages)
	}

	// Reconnect within the gap: the same session goes on.
	stopPublish(pub)
	testutil.WaitFor(t, "the session to end", 20*time.Second, func() bool {
		ss := s.sessions("rec1")
		return len(ss) == 1 && !ss[0].Live && ss[0].EndedAt != nil
	})
	firstLen = s.sessions("rec1")[0].DurationMS
	pub = publishSample(ctx, t, s.rtmpURL()+key)
	testutil.WaitFor(t, "the session to resume", 30*time.Second, func() bool {
		ss := s.sessions("rec1")
		return len(ss) == 1 && ss[0].Live
	})
	testutil.WaitFor(t, "stream time", 30*time.Second, func() bool { return pos() > firstLen+2000 })
	after.lo = pos()
	code, ack := s.send("rec1", viewer, map[string]any{"kind": "chat", "text": "after reconnect"})
	after.hi, after.id, after.text = pos(), ack.ID, "after reconnect"
	if code != 201 {
		t.Fatalf("send: %d", code)
	}
	testutil.WaitFor(t, "a recorded segment after the reconnect", 30*time.Second, func() bool { return pos() > firstLen+3000 })
	stopPublish(pub)
	testutil.WaitFor(t, "the session to end", 20*time.Second, func() bool {
		ss := s.sessions("rec1")
		return len(ss) == 1 && !ss[0].Live
	})
	// The archive is written off the send path: wait for the last live_end
	// and the like summary (written every 5 s).
	testutil.WaitFor(t, "the archive to catch up", 30*time.Second, func() bool {
		n, likes := 0, 0
		for _, m := range allMessages(t, s, s.sessions("rec1")[0].ID, 500) {
			if m.Text == "live_end" {
				n++
			}
			if m.Kind == "like" {
				likes++
			}
		}
		return n == 2 && likes == 1
	})
	sess = s.sessions("rec1")[0]
	if !sess.Recorded || sess.VOD != "/vod/"+sess.ID+"/index.m3u8" || sess.EndedAt == nil {
		t.Fatalf("ended session: %+v", sess)
	}
	return sess, sent, after, firstLen
}

func checkSignedVOD(t *testing.T, s *server, sess session, plays chan map[string]any, refuse chan bool) {
	if resp, body := s.get(sess.VOD); resp.StatusCode != 403 || !strings.Contains(string(body), "forbidden") {
		t.Fatalf("unsigned playlist: %d %s", resp.StatusCode, body)
	}
	if resp, _ := s.get("/vod/" + sess.ID + "/seg-1.m4s"); resp.StatusCode != 403 {
		t.Fatalf("unsigned segment: %d", resp.StatusCode)
	}
	q := s.app.Media.SignPlayQuery("rec1", time.Minute)
	resp, pl := s.get(sess.VOD + "?" + q)
	if resp.StatusCode != 200 || !strings.Contains(string(pl), "seg-1.m4s?"+q) {
		t.Fatalf("signed playlist: %d\n%s", resp.StatusCode, pl)
	}
	if resp, _ := s.get("/vod/" + sess.ID + "/seg-1.m4s?" + q); resp.StatusCode != 200 {
		t.Fatalf("signed segment: %d", resp.StatusCode)
	}
	select {
	case ev := <-plays:
		if ev["action"] != "on_play" || ev["stream"] != "vod/"+sess.ID || ev["room"] != "rec1" {
			t.Fatalf("on_play body %v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no on_play call for the VOD")
	}
	<-refuse
	refuse <- true
	if resp, _ := s.get("/vod/" + sess.ID + ".mp4?" + q); resp.StatusCode != 403 {
		t.Fatalf("MP4 refused by on_play: %d", resp.StatusCode)
	}
	<-plays
	<-refuse
	refuse <- false
}

func checkRecordingOff(ctx context.Context, t *testing.T, s *server, sess session, viewer, anchor, data string) {
	if code := s.do("PUT", "/api/rooms/rec1/recording", anchor, map[string]bool{"enabled": false}, nil); code != 200 {
		t.Fatalf("turn off: %d", code)
	}
	var st struct {
		Enabled bool `json:"enabled"`
	}
	if s.do("GET", "/api/rooms/rec1/recording", "", nil, &st); st.Enabled {
		t.Fatal("still enabled")
	}
	pub := publishSample(ctx, t, s.rtmpURL()+s.streamKey("rec1", anchor))
	var live session
	testutil.WaitFor(t, "a second session", 30*time.Second, func() bool {
		ss := s.sessions("rec1")
		if len(ss) == 2 && ss[0].Live {
			live = ss[0]
			return true
		}
		return false
	})
	testutil.WaitFor(t, "stream time", 10*time.Second, func() bool { return time.Since(live.StartedAt) > 2500*time.Millisecond })
	if code, _ := s.send("rec1", viewer, map[string]any{"kind": "chat", "text": "unrecorded"}); code != 201 {
		t.Fatal("send")
	}
	stopPublish(pub)
	testutil.WaitFor(t, "the session to end", 20*time.Second, func() bool { return !s.sessions("rec1")[0].Live })
	testutil.WaitFor(t, "the archive to catch up", 20*time.Second, func() bool { return s.sessions("rec1")[0].Messages >= 3 })
	got := s.sessions("rec1")[0]
	if got.ID == sess.ID || got.Recorded || got.VOD != "" || got.Messages < 3 {
		t.Fatalf("unrecorded session: %+v %+v", got, allMessages(t, s, got.ID, 100))
	}
	if resp, body := s.get("/vod/" + got.ID + "/index.m3u8?" + s.app.Media.SignPlayQuery("rec1", time.Minute)); resp.StatusCode != 404 || !strings.Contains(string(body), "not_found") {
		t.Fatalf("VOD of an unrecorded session: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(data, "recordings", "rec1", got.ID)); !os.IsNotExist(err) {
		t.Fatalf("recording directory exists: %v", err)
	}
}
