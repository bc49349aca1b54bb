package ws

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quietLogger drops everything; set WS_TEST_LOG=1 style debugging by
// swapping in slog.Default() locally when needed.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

type closeEvent struct {
	c      *Conn
	code   int
	reason string
}

// recHandler records events; with echo it sends every message back.
type recHandler struct {
	echo   bool
	msgs   chan []byte
	closes chan closeEvent
	onMsg  func(c *Conn, data []byte)
}

func newRecHandler(echo bool) *recHandler {
	return &recHandler{echo: echo, msgs: make(chan []byte, 1024), closes: make(chan closeEvent, 8192)}
}

func (h *recHandler) OnMessage(c *Conn, data []byte) {
	if h.onMsg != nil {
		h.onMsg(c, data)
	}
	if h.echo {
		if utf8.Valid(data) {
			_ = c.SendText(data)
		} else {
			_ = c.Send(NewPrepared(data, false))
		}
	}
	select {
	case h.msgs <- data:
	default:
	}
}

func (h *recHandler) OnClose(c *Conn, code int, reason string) {
	h.closes <- closeEvent{c, code, reason}
}

func (h *recHandler) waitClose(t testing.TB) closeEvent {
	t.Helper()
	select {
	case ev := <-h.closes:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for OnClose")
		return closeEvent{}
	}
}

type testServer struct {
	*Server
	hs    *httptest.Server
	conns chan *Conn // every upgraded conn, in order
	url   string     // ws://host/
}

// newTestServer runs s behind an httptest.Server; upgraded conns are
// started and published on conns.
func newTestServer(t testing.TB, cfg Config, h Handler) *testServer {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the connection layer needs linux")
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	s, err := NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, conns: make(chan *Conn, 8192)}
	ts.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Upgrade(w, r, testSubprotocols...)
		if err != nil {
			return
		}
		c.SetValue(r.URL.Query().Get("id"))
		c.Start()
		ts.conns <- c
	}))
	ts.url = "ws" + strings.TrimPrefix(ts.hs.URL, "http") + "/"
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		ts.hs.Close()
	})
	return ts
}

// testSubprotocols are the subprotocols the test server speaks.
var testSubprotocols = []string{"a.v1", "b.v1"}

func (ts *testServer) nextConn(t testing.TB) *Conn {
	t.Helper()
	select {
	case c := <-ts.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for upgrade")
		return nil
	}
}

// rawClient is a minimal hand-written client for protocol tests: it writes
// exactly the frames a test asks for.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func handshakeRequest(host string, extra http.Header) string {
	var key [16]byte
	_, _ = rand.Read(key[:])
	var sb strings.Builder
	fmt.Fprintf(&sb, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", host)
	fmt.Fprintf(&sb, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", base64.StdEncoding.EncodeToString(key[:]))
	for k, vs := range extra {
		for _, v := range vs {
			fmt.Fprintf(&sb, "%s: %s\r\n", k, v)
		}
	}
	sb.WriteString("\r\n")
	return sb.String()
}

// dialRaw connects and completes the handshake; after is written right
// behind the request (in the same write) to test pipelined bytes.
func dialRaw(t testing.TB, ts *testServer, extra http.Header, after []byte) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", ts.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := handshakeRequest(ts.hs.Listener.Addr().String(), extra)
	if _, err := nc.Write(append([]byte(req), after...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return &rawClient{t: t, nc: nc, br: br}
}

// clientFrame builds a masked client frame.
func clientFrame(fin, rsv1 bool, op byte, payload []byte) []byte {
	b := make([]byte, 0, 14+len(payload))
	b0 := op
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	b = append(b, b0)
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= mask[i&3]
	}
	return b
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.nc.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) writeFrame(fin bool, op byte, payload []byte) {
	rc.t.Helper()
	rc.write(clientFrame(fin, false, op, payload))
}

// readFrame reads one server frame (server frames are never masked).
func (rc *rawClient) readFrame() (fin bool, op byte, payload []byte, err error) {
	_ = rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [2]byte
	if _, err = io.ReadFull(rc.br, h[:]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	if h[1]&0x80 != 0 {
		return fin, op, nil, fmt.Errorf("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err = io.ReadFull(rc.br, e[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err = io.ReadFull(rc.br, e[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(rc.br, payload)
	return
}

// expectFrame reads frames, skipping pings, until one arrives.
func (rc *rawClient) expectFrame() (op byte, payload []byte) {
	rc.t.Helper()
	for {
		_, op, payload, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("read frame: %v", err)
		}
		if op != opPing {
			return op, payload
		}
	}
}

// expectClose reads until a close frame and returns its code and reason.
func (rc *rawClient) expectClose() (int, string) {
	rc.t.Helper()
	for {
		op, p := rc.expectFrame()
		if op == opClose {
			if len(p) < 2 {
				return CloseNoStatus, ""
			}
			return int(binary.BigEndian.Uint16(p)), string(p[2:])
		}
	}
}

// expectEOF checks the server closed the TCP connection.
func (rc *rawClient) expectEOF() {
	rc.t.Helper()
	for {
		_, _, _, err := rc.readFrame()
		if err != nil {
			if err != io.EOF && !strings.Contains(err.Error(), "reset") {
				rc.t.Fatalf("want EOF, got %v", err)
			}
			return
		}
	}
}

// countingReader drains a connection in its own goroutine and counts bytes.
type countingReader struct {
	mu sync.Mutex
	n  int64
}

func (cr *countingReader) add(n int) {
	cr.mu.Lock()
	cr.n += int64(n)
	cr.mu.Unlock()
}

func (cr *countingReader) get() int64 {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.n
}
