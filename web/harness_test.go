package web_test

// The browser-test harness: one Chromium for the whole package (started on
// first use, with exactly the flags below and a fresh profile), a new tab
// per test, and a full roomcast node per test, in process, on a random port.
// Tests run serially. A missing Chromium FAILS the tests: CI installs it
// with scripts/deps.sh (make test runs it).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"roomcast/internal/app"
	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

// minWait is the least a tab waits for a condition.
const minWait = 20 * time.Second

const (
	testSecret   = "web-test-secret-0123456789"
	testAdminKey = "web-test-admin-key"
)

// chromiumPath is Debian's Chromium, or $ROOMCAST_CHROMIUM.
func chromiumPath() string {
	if p := os.Getenv("ROOMCAST_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

var browser struct {
	once   sync.Once
	ctx    context.Context // the browser's root chromedp context
	cancel func()
	dir    string
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	if browser.dir != "" {
		os.RemoveAll(browser.dir)
	}
	os.Exit(code)
}

// startBrowser starts the shared Chromium once; every caller fails if it
// cannot start.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		path := chromiumPath()
		if _, err := exec.LookPath(path); err != nil {
			browser.err = fmt.Errorf("Chromium not found at %s (install it with scripts/deps.sh, or set ROOMCAST_CHROMIUM): %w", path, err)
			return
		}
		dir, err := os.MkdirTemp("", "roomcast-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		browser.dir = dir
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(path),
			chromedp.Flag("headless", true),
			chromedp.Flag("no-sandbox", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.UserDataDir(dir),
		}
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelCtx := chromedp.NewContext(allocCtx)
		browser.ctx = ctx
		browser.cancel = func() { cancelCtx(); cancelAlloc() }
		start, cancelStart := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancelStart()
		done := make(chan error, 1)
		go func() { done <- chromedp.Do(ctx) }()
		select {
		case browser.err = <-done:
		case <-start.Done():
			browser.err = fmt.Errorf("Chromium did not start in 30 s")
		}
		if browser.err != nil {
			browser.err = fmt.Errorf("starting Chromium %s: %w", path, browser.err)
		}
	})
	if browser.err != nil {
		t.Fatal(browser.err)
	}
	return browser.ctx
}

// tab is one browser tab with its console recorded.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage // guarded by mu
}

// newTab opens a tab; it closes at the end of the test, after checking that
// the page wrote no error to the console (except messages matching allow).
func newTab(t *testing.T, allow ...*regexp.Regexp) *tab {
	t.Helper()
	bctx := startBrowser(t)
	ctx, cancel := chromedp.NewContext(bctx)
	tb := &tab{t: t, ctx: ctx}
	msgs := chromedp.Console(ctx) // opens the tab and subscribes before any page loads
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, m)
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		for _, e := range tb.consoleErrors(allow...) {
			t.Errorf("console error: %s (%s:%d)", e, e.URL, e.Line+1)
		}
		cancel()
	})
	return tb
}

func (tb *tab) consoleErrors(allow ...*regexp.Regexp) []chromedp.ConsoleMessage {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []chromedp.ConsoleMessage
next:
	for _, m := range tb.console {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
			continue
		}
		for _, re := range allow {
			if re.MatchString(m.Text) {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// do runs steps with a timeout.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatal(err)
	}
}

// navigate opens url and waits for the document.
func (tb *tab) navigate(url string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(url))
}

// eval evaluates a JavaScript expression.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, minWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// wait polls a JavaScript predicate every 20 ms until it is truthy (within
// timeout, at least minWait) and returns how long it took.
func (tb *tab) wait(expr string, timeout time.Duration) time.Duration {
	tb.t.Helper()
	// The timeout is a bound on failure, not a latency check: a busy 2-core
	// machine can take seconds to deliver and render, so it is at least
	// minWait (scaled like testutil.WaitFor); a wait that holds costs no more.
	timeout = max(timeout, time.Duration(float64(minWait)*testutil.Scale()))
	start := time.Now()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		tb.t.Fatalf("waiting %v for %s: %v", timeout, expr, err)
	}
	if testing.Verbose() {
		tb.t.Logf("%6.0f ms  %.70s", float64(time.Since(start).Microseconds())/1000, strings.Join(strings.Fields(expr), " "))
	}
	return time.Since(start)
}

// waitAudience waits until the server counts user among room's audience
// (its presence, from which the quiz enrolls players).
func (s *server) waitAudience(room, user string) {
	s.t.Helper()
	testutil.WaitFor(s.t, user+" in the audience of "+room, minWait, func() bool {
		var out struct {
			Audience []struct {
				ID string `json:"id"`
			} `json:"audience"`
		}
		s.do("GET", "/api/rooms/"+url.PathEscape(room)+"/audience", "", nil, &out)
		for _, a := range out.Audience {
			if a.ID == user {
				return true
			}
		}
		return false
	})
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// server is one roomcast node for a test.
type server struct {
	t      *testing.T
	app    *app.App
	url    string
	client *http.Client
}

// startServer starts a node on a random port (RTMP off unless mutate sets it).
func startServer(t *testing.T, mutate func(*config.Config)) *server {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP = "127.0.0.1:0"
	cfg.RTMP = ""
	cfg.Data = t.TempDir()
	cfg.Secret = testSecret
	cfg.AdminKey = testAdminKey
	cfg.RateLimit = "0"
	if mutate != nil {
		mutate(cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, app: a, url: "http://" + a.HTTPAddr(), client: &http.Client{Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func (s *server) token(sub, name, role string, level int) string {
	s.t.Helper()
	tok, err := s.app.Signer.Sign(auth.Claims{Sub: sub, Name: name, Level: level, Role: role}, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// metric reads an unlabelled counter or gauge from GET /metrics (0 when
// absent).
func (s *server) metric(name string) float64 {
	s.t.Helper()
	resp, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		s.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	return 0
}

// do calls the API and decodes the answer into out (if not nil).
func (s *server) do(method, path, tok string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

type roomInfo struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	StreamKey string `json:"stream_key"`
	Live      bool   `json:"live"`
	Online    int    `json:"online"`
}

// createRoom makes anchor's room and returns it with the anchor's token.
func (s *server) createRoom(id, title, anchor string) (roomInfo, string) {
	s.t.Helper()
	tok := s.token(anchor, "Anchor "+anchor, auth.RoleAnchor, 50)
	var r roomInfo
	if code := s.do("POST", "/api/rooms", tok, map[string]string{"title": title, "id": id}, &r); code != 201 {
		s.t.Fatalf("create room: %d %+v", code, r)
	}
	return r, tok
}

// chat sends a chat message and returns its id.
func (s *server) chat(room, tok, text string) string {
	s.t.Helper()
	var out struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", "/api/rooms/"+room+"/messages", tok, map[string]any{"kind": "chat", "text": text}, &out); code != 201 {
		s.t.Fatalf("send %q: %d", text, code)
	}
	return out.ID
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// publish pushes a synthetic H.264/AAC stream (small, cheap to encode) to
// rtmpURL with ffmpeg until stop is called or the test ends.
func publish(t *testing.T, rtmpURL string) (stop func()) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg not found (install it with scripts/deps.sh)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "25", "-b:v", "600k",
		"-c:a", "aac", "-b:a", "64k", "-f", "flv", rtmpURL)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt) // ffmpeg ends the stream cleanly
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				cancel()
				<-done
			}
			cancel()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("ffmpeg: %s", stderr.String())
		}
	})
	return stop
}

func chromedpClick(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)
}

func chromedpSendKeys(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible)
}

func chromedpEval(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](expr)
}
