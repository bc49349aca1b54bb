package web_test

import (
	"fmt"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

type replaySession struct {
	ID        string    `json:"id"`
	StartedAt time.Time `json:"started_at"`
	Live      bool      `json:"live"`
	Recorded  bool      `json:"recorded"`
}

type replayMsg struct {
	ID      string `json:"id"`
	Text    string `json:"text"`
	VideoMS int64  `json:"video_ms"`
}

// The replay page (issue 10): a recorded session plays with hls.js; after a
// seek, the message of that moment flies over the video when the playhead
// reaches it, and the ones from before and after the moment do not; the
// chat panel holds what was said before the seek point; pausing freezes
// the danmaku. The room page lists the session, linking to its replay.
func TestReplayPage(t *testing.T) {
	rtmpPort := freePort(t)
	s := startServer(t, func(c *config.Config) {
		c.RTMP = fmt.Sprintf("127.0.0.1:%d", rtmpPort)
		c.RecordSegment = time.Second
		c.SessionGap = time.Second
	})
	room, _ := s.createRoom("rp", "Replay me", "rita")
	viewer := s.token("v1", "Viewer", "", 1)
	stop := publish(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", rtmpPort, room.StreamKey))
	var sess replaySession
	testutil.WaitFor(t, "a live session", 30*time.Second, func() bool {
		var out struct{ Sessions []replaySession }
		s.do("GET", "/api/rooms/rp/sessions", "", nil, &out)
		if len(out.Sessions) == 1 && out.Sessions[0].Live {
			sess = out.Sessions[0]
			return true
		}
		return false
	})
	ids := map[string]string{}
	for _, m := range []struct {
		text string
		at   time.Duration
	}{{"early bird", 1500 * time.Millisecond}, {"middle <moment>", 5 * time.Second}, {"late comer", 9 * time.Second}} {
		testutil.WaitFor(t, "stream time", 20*time.Second, func() bool { return time.Since(sess.StartedAt) >= m.at })
		ids[m.text] = s.chat("rp", viewer, m.text)
	}
	testutil.WaitFor(t, "stream time", 20*time.Second, func() bool { return time.Since(sess.StartedAt) >= 11*time.Second })
	stop()
	var msgs []replayMsg
	testutil.WaitFor(t, "the session to end with its messages archived", 30*time.Second, func() bool {
		var out struct{ Messages []replayMsg }
		s.do("GET", "/api/sessions/"+sess.ID+"/messages", "", nil, &out)
		var one replaySession
		s.do("GET", "/api/sessions/"+sess.ID, "", nil, &one)
		msgs = out.Messages
		n := 0
		for _, m := range msgs {
			if ids[m.Text] == m.ID {
				n++
			}
		}
		return n == 3 && !one.Live && one.Recorded
	})
	at := map[string]int64{}
	for _, m := range msgs {
		at[m.Text] = m.VideoMS
	}

	// The room page lists the session with a link to the replay.
	tb := newTab(t)
	tb.navigate(s.url + "/room/rp")
	tb.wait(fmt.Sprintf(`!!document.querySelector('#sessions a[href="/replay/%s"]')`, sess.ID), 10*time.Second)

	tb.navigate(s.url + "/replay/" + sess.ID)
	tb.wait(`document.body.dataset.replay === 'playing'`, 30*time.Second)
	seekTo := float64(at["middle <moment>"]-1200) / 1000
	tb.do(chromedpEval(fmt.Sprintf(`(() => { const v = document.querySelector('#video'); v.currentTime = %f; v.play(); })()`, seekTo)))
	inLayer := func(text string) string {
		return fmt.Sprintf(`!!document.querySelector('#danmaku [data-id=%s]')`, jsString(ids[text]))
	}
	tb.wait(inLayer("middle <moment>"), 20*time.Second)
	if eval[bool](tb, inLayer("early bird")) || eval[bool](tb, inLayer("late comer")) {
		t.Fatal("danmaku from another moment is flying after the seek")
	}
	if !eval[bool](tb, `document.querySelector('#danmaku [data-id] .dm-text').textContent === 'middle <moment>'`) {
		t.Fatal("the danmaku text is not the message's text (escaped as text)")
	}
	// The chat panel: what was said before the seek point, then the moment.
	chat := eval[[]string](tb, `[...document.querySelectorAll('#chat li')].map((li) => li.dataset.id)`)
	has := map[string]bool{}
	for _, id := range chat {
		has[id] = true
	}
	if !has[ids["early bird"]] || !has[ids["middle <moment>"]] || has[ids["late comer"]] {
		t.Fatalf("chat panel after the seek: %v (ids %v)", chat, ids)
	}
	// Pause freezes the danmaku where it is.
	tb.do(chromedpEval(`(() => {
		document.querySelector('#video').pause();
		requestAnimationFrame(() => {
			window.__dm = document.querySelector('#danmaku [data-id]');
			window.__before = window.__dm.style.transform;
			window.__t0 = performance.now();
		});
	})()`))
	tb.wait(`window.__t0 !== undefined && performance.now() - window.__t0 > 500`, 10*time.Second)
	frozen := eval[bool](tb, `window.__dm.style.transform === window.__before && document.querySelector('#video').paused`)
	if !frozen {
		t.Fatal("danmaku kept moving while paused")
	}
	if errs := tb.consoleErrors(); len(errs) > 0 {
		t.Fatalf("console errors: %v", errs)
	}
}
