package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

var signinLink = regexp.MustCompile(`http://\S+/studio#code=([0-9a-f]{32})`)

// The acceptance test of issue 15, as a new user meets roomcast: a fresh
// `serve` with an empty data dir prints a one-time sign-in link; opening it
// in the browser signs the operator in to the studio, where they create a
// room for an anchor; publishing with ffmpeg to the RTMP URL and stream key
// the studio shows makes the room's picture appear on the room list. The
// link then is dead, `roomcast admin login` prints a working one, the
// admin key signs in too, and the ended session keeps its last picture as
// the room's cover.
func TestFirstStart(t *testing.T) {
	bin := redistest.Binary(t)
	data := t.TempDir()
	rtmpPort := freePort(t)
	args := []string{"--data", data, "--rtmp", fmt.Sprintf("127.0.0.1:%d", rtmpPort), "--thumbnail-every", "2s"}
	node := redistest.StartNode(t, bin, args...)

	var link, code string
	testutil.WaitFor(t, "the sign-in link in serve's output", 20*time.Second, func() bool {
		m := signinLink.FindStringSubmatch(node.Output())
		if m != nil {
			link, code = m[0], m[1]
		}
		return m != nil
	})
	out := node.Output()
	for _, want := range []string{node.URL + "/studio", fmt.Sprintf("rtmp://127.0.0.1:%d/live", rtmpPort), "roomcast admin login --data " + data} {
		if !strings.Contains(out, want) {
			t.Errorf("serve's first output lacks %q:\n%s", want, out)
		}
	}

	restart := regexp.MustCompile(`ERR_CONNECTION_REFUSED`) // the node restarts at the end, under open pages
	tb := newTab(t, restart)
	tb.navigate(link)
	tb.wait(`!document.querySelector('#admin').hidden`, 10*time.Second)
	if strings.Contains(eval[string](tb, `location.href`), "code=") {
		t.Error("the sign-in code stayed in the address bar")
	}
	tb.do(chromedpSendKeys("#admin-anchor", "alice"), chromedpSendKeys("#admin-title", "Alice live"),
		chromedpSendKeys("#admin-room-id", "alice"), chromedpClick("#admin-create-form button"))
	tb.wait(`!document.querySelector('#dash').hidden && document.querySelector('#stream-key').value.startsWith('rk_') && document.querySelector('#rtmp-url').value !== ''`, 10*time.Second)
	rtmpURL := eval[string](tb, `document.querySelector('#rtmp-url').value`)
	key := eval[string](tb, `document.querySelector('#stream-key').value`)
	if rtmpURL != fmt.Sprintf("rtmp://127.0.0.1:%d/live", rtmpPort) {
		t.Errorf("studio shows RTMP URL %q", rtmpURL)
	}
	if owner := apiGet(t, node.URL+"/api/rooms/alice"); !strings.Contains(owner, `"anchor_id":"alice"`) {
		t.Errorf("the room is not alice's: %s", owner)
	}
	// The operator hands alice a sign-in link of her own: it opens her room's studio as her.
	tb.do(chromedpClick("#anchor-link-make"))
	tb.wait(`document.querySelector('#anchor-link').value.includes('/studio#code=')`, 10*time.Second)
	alice := newTab(t, restart)
	alice.navigate(eval[string](tb, `document.querySelector('#anchor-link').value`))
	alice.wait(`!document.querySelector('#dash').hidden && document.querySelector('#who').textContent === 'alice · anchor' && document.querySelector('#stream-key').value === `+jsString(key), 10*time.Second)

	stop := publish(t, rtmpURL+"/"+key)
	list := newTab(t, restart)
	list.navigate(node.URL + "/")
	// Within 15 s of going live (the list refreshes every 5 s).
	list.wait(`(() => { const i = document.querySelector('.card[data-room="alice"] img.thumb-img'); return i && i.complete && i.naturalWidth === 640 && i.naturalHeight === 360; })()`, 25*time.Second)

	// The picture itself: a 640×360 JPEG, also as WebP.
	img := getBody(t, node.URL+"/live/alice.jpg", "image/jpeg")
	if cfg, err := jpeg.DecodeConfig(bytes.NewReader(img)); err != nil || cfg.Width != 640 || cfg.Height != 360 {
		t.Errorf("thumbnail: %v %+v", err, cfg)
	}
	if webp := getBody(t, node.URL+"/live/alice.webp", "image/webp"); !bytes.HasPrefix(webp, []byte("RIFF")) {
		t.Errorf("webp thumbnail starts %q", webp[:min(12, len(webp))])
	}

	// The link is dead now; `roomcast admin login` prints a new one; the admin key works too.
	if code := postJSON(t, node.URL+"/api/signin", `{"code":"`+code+`"}`); code != 401 {
		t.Errorf("a used sign-in code answered %d, want 401", code)
	}
	login, err := exec.Command(bin, "admin", "login", "--data", data, "--http", node.Addr).CombinedOutput()
	m := signinLink.FindStringSubmatch(string(login))
	if err != nil || m == nil {
		t.Fatalf("roomcast admin login: %v: %s", err, login)
	}
	if code := postJSON(t, node.URL+"/api/signin", `{"code":"`+m[1]+`"}`); code != 200 {
		t.Errorf("admin login's code answered %d", code)
	}
	adminKey, err := exec.Command(bin, "token", "--admin-key", "--data", data).Output()
	if err != nil {
		t.Fatal(err)
	}
	if code := postJSON(t, node.URL+"/api/signin", `{"admin_key":"`+strings.TrimSpace(string(adminKey))+`"}`); code != 200 {
		t.Errorf("the admin key answered %d", code)
	}

	// The session ends; its last picture stays as the room's cover.
	stop()
	testutil.WaitFor(t, "the cover of the ended session", 20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(data, "covers", "alice.jpg"))
		return err == nil
	})
	getBody(t, node.URL+"/live/alice.jpg", "image/jpeg")
	// The replay list: the ended session keeps its last picture as its cover.
	var cover string
	testutil.WaitFor(t, "the session's cover_url", 20*time.Second, func() bool {
		var out struct {
			Sessions []struct {
				EndedAt *string `json:"ended_at"`
				Cover   string  `json:"cover_url"`
			} `json:"sessions"`
		}
		if json.Unmarshal([]byte(apiGet(t, node.URL+"/api/rooms/alice/sessions")), &out) != nil || len(out.Sessions) == 0 {
			return false
		}
		cover = out.Sessions[0].Cover
		return out.Sessions[0].EndedAt != nil && strings.Contains(cover, "cover=")
	})
	if img := getBody(t, node.URL+cover, "image/jpeg"); len(img) < 1000 {
		t.Errorf("session cover of %d bytes", len(img))
	}

	// A later start prints the addresses but no new link.
	node.Stop()
	again := redistest.StartNode(t, bin, args...)
	testutil.WaitFor(t, "the second start's welcome", 20*time.Second, func() bool { return strings.Contains(again.Output(), "roomcast admin login") })
	if signinLink.MatchString(again.Output()) {
		t.Errorf("a second start printed a sign-in link:\n%s", again.Output())
	}
	if !strings.Contains(apiGet(t, again.URL+"/api/rooms"), `"thumbnail_url":"/live/alice.jpg`) {
		t.Error("after a restart the room has no cover")
	}
}

func apiGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func getBody(t *testing.T, url, ctype string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctype {
		t.Fatalf("GET %s: %d %s %.200s", url, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return b
}

func postJSON(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err == nil {
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Fatal(err)
	return 0
}
