package keepalive

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bigBody = strings.Repeat("0123456789abcdef", 40<<10) // 640 KiB

const testHeader = "Cache-Control: no-store\r\nContent-Type: text/plain\r\n"

// env is an http.Server behind a Server's Listener. GET /poll is answered
// here once, then on the keep-alive path; POST /echo echoes its body; GET
// /other answers "other"; GET /panic panics on the keep-alive path.
type env struct {
	s    *Server
	hs   *http.Server
	addr string
	// netHTTP counts the requests net/http answered.
	netHTTP atomic.Int64
}

func pollBody(r *Request) string { return "poll " + r.Query + " auth=" + r.Authorization }

func handle(_ context.Context, r *Request, dst []byte) ([]byte, bool) {
	switch r.Path {
	case "/poll":
		return append(dst, pollBody(r)...), true
	case "/panic":
		panic("handler panic")
	case "/big": // larger than the socket buffers: written in several parts
		return append(dst, bigBody...), true
	}
	return nil, false
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	cfg.Header = testHeader
	cfg.InternalError = "internal"
	e := &env{s: NewServer(cfg)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /poll", func(w http.ResponseWriter, r *http.Request) {
		e.netHTTP.Add(1)
		body := "poll " + r.URL.RawQuery + " auth=" + r.Header.Get("Authorization")
		kc, taken := e.s.Take(w, r, []byte(body))
		if !taken {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, body)
			return
		}
		if kc != nil {
			kc.Serve(handle)
		}
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		e.netHTTP.Add(1)
		_, _ = io.WriteString(w, "net/http panic route")
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		e.netHTTP.Add(1)
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /other", func(w http.ResponseWriter, r *http.Request) {
		e.netHTTP.Add(1)
		_, _ = io.WriteString(w, "other")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	kl := e.s.Listener(ln)
	done := make(chan struct{})
	go func() { defer close(done); _ = e.hs.Serve(kl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.hs.Shutdown(ctx)
		if err := e.s.Shutdown(ctx); err != nil {
			t.Errorf("keepalive shutdown: %v", err)
		}
		<-done
	})
	return e
}

// client is an ordinary net/http client that counts the connections it
// opens.
func (e *env) client(t *testing.T) (*http.Client, *atomic.Int64) {
	var dials atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, n, a)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, &dials
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp, string(b)
}

// Polls after the first are answered here, on one connection, with the
// same status, headers and body net/http gives.
func TestPollsStayOnOneConnection(t *testing.T) {
	e := newEnv(t, Config{})
	c, dials := e.client(t)
	base := "http://" + e.addr
	for i := range 50 {
		resp, body := get(t, c, fmt.Sprintf("%s/poll?cursor=%d", base, i), "Authorization", "Bearer tok")
		if want := fmt.Sprintf("poll cursor=%d auth=Bearer tok", i); body != want || resp.StatusCode != 200 {
			t.Fatalf("poll %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
		if resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("Cache-Control") != "no-store" ||
			resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(body)) {
			t.Fatalf("poll %d: headers %v", i, resp.Header)
		}
	}
	st := e.s.Stats()
	if d := dials.Load(); d != 1 {
		t.Errorf("%d connections for 50 polls, want 1", d)
	}
	if n := e.netHTTP.Load(); n != 1 || st.Takes != 1 || st.Answers != 50 || st.HandBacks != 0 || st.Conns != 1 {
		t.Errorf("net/http answered %d; stats %+v; want 1 and 1 take, 50 answers (the first written by Take), no hand-back, 1 connection", n, st)
	}
}

// Any other request on the connection goes back to net/http intact — a
// POST with its body, another path, a poll the handler declines — and
// the next poll comes back to the keep-alive path.
func TestOtherRequestsGoBackToNetHTTP(t *testing.T) {
	e := newEnv(t, Config{})
	c, dials := e.client(t)
	base := "http://" + e.addr
	for i := range 5 {
		if _, body := get(t, c, base+"/poll?a=1"); body != "poll a=1 auth=" {
			t.Fatalf("poll: %q", body)
		}
		payload := strings.Repeat(fmt.Sprint(i), 20000) // larger than a head and than net/http's buffer
		resp, err := c.Post(base+"/echo", "text/plain", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != payload {
			t.Fatalf("echo %d: %d bytes back, want %d", i, len(b), len(payload))
		}
		if _, body := get(t, c, base+"/other"); body != "other" {
			t.Fatalf("other: %q", body)
		}
		if resp, _ := get(t, c, base+"/poll/x"); resp.StatusCode != 404 { // declined by the handler
			t.Fatalf("declined path: %d", resp.StatusCode)
		}
		// HEAD matches the GET route in net/http; it is not taken, and its
		// answer has no body.
		resp, err = c.Head(base + "/poll?h=1")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("HEAD: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d connections, want 1", d)
	}
	if st := e.s.Stats(); st.Answers != 5 || st.Takes != 5 || st.HandBacks != 5 {
		t.Errorf("stats %+v, want 5 answers, 5 takes and 5 hand-backs (the POSTs)", st)
	}
}

// An answer larger than the socket buffers arrives whole, and the
// connection goes on serving.
func TestLargeAnswers(t *testing.T) {
	e := newEnv(t, Config{})
	rc := e.dial(t)
	rc.enter()
	for range 3 {
		rc.send("GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
		if code, body, _ := rc.read(); code != 200 || body != bigBody {
			t.Fatalf("big answer: %d, %d bytes of %d", code, len(body), len(bigBody))
		}
		rc.enter()
	}
}

// rawConn is a client socket for hand-made requests.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (e *env) dial(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one answer; it returns the status code and the body.
func (rc *rawConn) read() (int, string, http.Header) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.t.Fatalf("reading an answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// closed waits for the server to close the connection (EOF), failing on
// anything else read.
func (rc *rawConn) closed() {
	rc.t.Helper()
	b, err := rc.r.ReadByte()
	if err == nil {
		rc.t.Fatalf("read %q, want the connection closed", b)
	}
}

const pollReq = "GET /poll?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"

// enter polls once through net/http, which hands the connection over.
func (rc *rawConn) enter() {
	rc.t.Helper()
	rc.send(pollReq)
	if code, body, _ := rc.read(); code != 200 || body != "poll x=1 auth=" {
		rc.t.Fatalf("first poll: %d %q", code, body)
	}
}

// Requests sent in one write are answered in order, polls here and the rest
// by net/http.
func TestPipelinedRequests(t *testing.T) {
	e := newEnv(t, Config{})
	rc := e.dial(t)
	rc.enter()
	rc.send(pollReq + "GET /poll?x=2 HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nauthorization: b\r\n\r\n" +
		"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + pollReq + "GET /other HTTP/1.1\r\nHost: h\r\n\r\n" + pollReq)
	for i, want := range []string{"poll x=1 auth=", "poll x=2 auth=a", "hello", "poll x=1 auth=", "other", "poll x=1 auth="} {
		if code, body, _ := rc.read(); code != 200 || body != want {
			t.Fatalf("answer %d: %d %q, want 200 %q", i, code, body, want)
		}
	}
}

// Heads the keep-alive path does not fully understand go to net/http,
// whose rules answer them (400 for malformed ones) exactly as without it.
func TestUnusualHeadsGoToNetHTTP(t *testing.T) {
	e := newEnv(t, Config{MaxHead: 1024})
	cases := []struct {
		name, req string
		code      int
		body      string // "" = any
		closes    bool
	}{
		{"folded header", "GET /poll?f=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", 200, "poll f=1 auth=", false}, // net/http unfolds it
		{"space before colon", "GET /poll HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n", 400, "", true},
		{"two hosts", "GET /poll HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", 400, "", true},
		{"no host", "GET /poll HTTP/1.1\r\n\r\n", 400, "", true},
		{"control byte", "GET /poll HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n", 400, "", true},
		{"bare LF", "GET /poll?b=1 HTTP/1.1\nHost: h\n\n", 200, "poll b=1 auth=", false},
		{"HTTP/1.0", "GET /poll?v=0 HTTP/1.0\r\nHost: h\r\n\r\n", 200, "poll v=0 auth=", true},
		{"Connection: close", "GET /poll?c=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n", 200, "poll c=1 auth=", true},
		{"head over MaxHead", "GET /poll?big=1 HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 3000) + "\r\n\r\n", 200, "poll big=1 auth=", false},
		{"GET with a body", "GET /poll?g=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", 200, "poll g=1 auth=", false},
		{"chunked", "GET /poll?g=2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, "poll g=2 auth=", false},
		{"absolute target", "GET http://h/poll?g=3 HTTP/1.1\r\nHost: h\r\n\r\n", 200, "poll g=3 auth=", false},
		{"declined path", "GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n", 404, "", false},
		{"handler panic", "GET /panic HTTP/1.1\r\nHost: h\r\n\r\n", 500, "internal", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := e.dial(t)
			rc.enter()
			rc.send(tc.req)
			code, body, _ := rc.read()
			if code != tc.code || (tc.body != "" && body != tc.body) {
				t.Fatalf("%d %q, want %d %q", code, body, tc.code, tc.body)
			}
			if tc.closes {
				rc.closed()
				return
			}
			rc.enter() // the connection still serves
		})
	}
}

// A head that stops arriving is cut off after HeaderTimeout, an idle
// connection after IdleTimeout.
func TestTimeouts(t *testing.T) {
	e := newEnv(t, Config{HeaderTimeout: 100 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	partial := e.dial(t)
	partial.enter()
	partial.send("GET /poll HTTP/1.1\r\nHo")
	idle := e.dial(t)
	idle.enter()
	partial.closed()
	idle.closed()
	testutil.WaitFor(t, "the connections to be forgotten", 5*time.Second, func() bool { return e.s.Stats().Conns == 0 })
}

// Shutdown closes idle connections at once and waits for them; a poll
// after it gets no answer from the keep-alive path.
func TestShutdownClosesIdleConnections(t *testing.T) {
	e := newEnv(t, Config{})
	conns := make([]*rawConn, 20)
	for i := range conns {
		conns[i] = e.dial(t)
		conns[i].enter()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, rc := range conns {
		rc.closed()
	}
	// A new poller is answered by net/http and not taken.
	c, _ := e.client(t)
	for range 3 {
		if _, body := get(t, c, "http://"+e.addr+"/poll?n=1"); body != "poll n=1 auth=" {
			t.Fatalf("poll after shutdown: %q", body)
		}
	}
	if st := e.s.Stats(); st.Answers != 20 || st.Conns != 0 {
		t.Errorf("stats %+v, want the 20 first polls only, no connection", st)
	}
}

// A handed-back connection gives raw socket access once net/http has read
// the replayed bytes, never before.
func TestReplayConnRawAccess(t *testing.T) {
	a, b := tcpPair(t)
	rc := &replayConn{Conn: a, pending: []byte("head")}
	if _, err := rc.SyscallConn(); !errors.Is(err, errPending) {
		t.Fatalf("raw access with pending bytes: %v", err)
	}
	if _, err := b.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, 8)
	for len(got) < 8 {
		buf := make([]byte, 8)
		n, err := rc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "headmore" {
		t.Fatalf("read %q", got)
	}
	if _, err := rc.SyscallConn(); err != nil {
		t.Fatalf("raw access once drained: %v", err)
	}
	if err := rc.SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
