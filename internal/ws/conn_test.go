package ws

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomcast/internal/testutil"
)

func dialCoder(t testing.TB, ts *testServer, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, _, err := websocket.Dial(ctx, ts.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.CloseNow() })
	cc.SetReadLimit(1 << 24)
	return cc
}

func TestEchoCoderClient(t *testing.T) {
	ts := newTestServer(t, Config{}, newRecHandler(true))
	cc := dialCoder(t, ts, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, msg := range []string{"hello", "", strings.Repeat("é", 5000), "last"} {
		if err := cc.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		typ, got, err := cc.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(got) != msg {
			t.Fatalf("echo %q: got %v %q err %v", msg[:min(len(msg), 10)], typ, got[:min(len(got), 10)], err)
		}
	}
	bin := []byte{0xff, 0x00, 0xfe}
	if err := cc.Write(ctx, websocket.MessageBinary, bin); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := cc.Read(ctx); err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, bin) {
		t.Fatalf("binary echo: %v %x %v", typ, got, err)
	}
	if err := cc.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "close", 10*time.Second, func() bool { return ts.Len() == 0 })
	if st := ts.Stats(); st.ClosedClient != 1 || st.MessagesRead != 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFragmentedMaskedWithPing(t *testing.T) {
	h := newRecHandler(false)
	ts := newTestServer(t, Config{}, h)
	rc := dialRaw(t, ts, nil, nil)
	rc.writeFrame(false, opText, []byte("hel"))
	rc.writeFrame(false, opContinuation, []byte(""))
	rc.writeFrame(true, opPing, []byte("are you there"))
	rc.writeFrame(false, opContinuation, []byte("lo wo"))
	rc.writeFrame(true, opContinuation, []byte("rld"))
	op, p := rc.expectFrame()
	if op != opPong || string(p) != "are you there" {
		t.Fatalf("want pong, got op %x %q", op, p)
	}
	if got := <-h.msgs; string(got) != "hello world" {
		t.Fatalf("got %q", got)
	}
}

// TestSplitWrites feeds frames to the server in random small pieces so the
// parser must keep partial frames across reads.
func TestSplitWrites(t *testing.T) {
	h := newRecHandler(false)
	ts := newTestServer(t, Config{}, h)
	rc := dialRaw(t, ts, nil, nil)
	var stream []byte
	var want []string
	for i := range 40 {
		msg := strings.Repeat(string(rune('a'+i%26)), i*37)
		want = append(want, msg)
		stream = append(stream, clientFrame(true, false, opText, []byte(msg))...)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for len(stream) > 0 {
		n := min(len(stream), 1+r.IntN(20))
		rc.write(stream[:n])
		stream = stream[n:]
		if r.IntN(4) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	for i, w := range want {
		select {
		case got := <-h.msgs:
			if string(got) != w {
				t.Fatalf("msg %d: len %d, want %d", i, len(got), len(w))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out at msg %d", i)
		}
	}
}

// TestPipelinedAfterHandshake sends a frame in the same write as the
// handshake request; the server must keep those bytes from the hijacked
// bufio.Reader.
func TestPipelinedAfterHandshake(t *testing.T) {
	h := newRecHandler(false)
	ts := newTestServer(t, Config{}, h)
	dialRaw(t, ts, nil, clientFrame(true, false, opText, []byte("early bird")))
	select {
	case got := <-h.msgs:
		if string(got) != "early bird" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pipelined message lost")
	}
}

func TestCloseHandshakeClientInitiated(t *testing.T) {
	h := newRecHandler(false)
	ts := newTestServer(t, Config{}, h)
	rc := dialRaw(t, ts, nil, nil)
	rc.writeFrame(true, opClose, append([]byte{0x03, 0xe8}, "bye"...))
	if code, _ := rc.expectClose(); code != CloseNormal {
		t.Fatalf("echoed code %d", code)
	}
	rc.expectEOF()
	ev := h.waitClose(t)
	if ev.code != CloseNormal || ev.reason != "bye" {
		t.Fatalf("OnClose %d %q", ev.code, ev.reason)
	}
	if ts.Stats().ClosedClient != 1 || ts.Len() != 0 {
		t.Fatalf("stats %+v", ts.Stats())
	}
}

func TestCloseHandshakeServerInitiated(t *testing.T) {
	h := newRecHandler(false)
	ts := newTestServer(t, Config{}, h)
	rc := dialRaw(t, ts, nil, nil)
	c := ts.nextConn(t)
	c.Close(4001, "kicked")
	if code, reason := rc.expectClose(); code != 4001 || reason != "kicked" {
		t.Fatalf("got close %d %q", code, reason)
	}
	if err := c.SendText([]byte("late")); err != ErrClosed {
		t.Fatalf("send after close: %v", err)
	}
	rc.writeFrame(true, opClose, []byte{0x0f, 0xa1}) // 4001 echoed back
	rc.expectEOF()
	ev := h.waitClose(t)
	if ev.code != 4001 || ev.reason != "kicked" || ev.c != c {
		t.Fatalf("OnClose %+v", ev)
	}
	c.Close(CloseNormal, "again") // no-op
	select {
	case ev := <-h.closes:
		t.Fatalf("second OnClose %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
	if st := ts.Stats(); st.ClosedServer != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCloseGraceExpires(t *testing.T) {
	// The peer never answers our close: the socket is released after the
	// grace period (capped by Heartbeat; tiny here).
	h := newRecHandler(false)
	ts := newTestServer(t, Config{Heartbeat: 100 * time.Millisecond}, h)
	rc := dialRaw(t, ts, nil, nil)
	c := ts.nextConn(t)
	c.Close(CloseNormal, "bye")
	ev := h.waitClose(t)
	if ev.code != CloseNormal {
		t.Fatalf("OnClose %+v", ev)
	}
	if code, _ := rc.expectClose(); code != CloseNormal {
		t.Fatalf("code %d", code)
	}
	rc.expectEOF()
}

func TestProtocolErrors(t *testing.T) {
	bigText := bytes.Repeat([]byte("a"), 2000)
	tests := []struct {
		name   string
		frames [][]byte
		code   int
	}{
		{"oversize", [][]byte{clientFrame(true, false, opText, bigText)}, CloseMessageTooBig},
		{"oversize fragmented", [][]byte{
			clientFrame(false, false, opText, bigText[:800]),
			clientFrame(true, false, opContinuation, bigText[:800]),
		}, CloseMessageTooBig},
		{"invalid utf8", [][]byte{clientFrame(true, false, opText, []byte{'o', 'k', 0xff, 0xfe})}, CloseInvalidPayload},
		{"invalid utf8 across fragments", [][]byte{
			clientFrame(false, false, opText, []byte{0xe2, 0x82}),
			clientFrame(true, false, opContinuation, []byte{'x'}),
		}, CloseInvalidPayload},
		{"unmasked", [][]byte{{0x81, 0x02, 'h', 'i'}}, CloseProtocolError},
		{"rsv1 without deflate", [][]byte{clientFrame(true, true, opText, []byte("x"))}, CloseProtocolError},
		{"unknown opcode", [][]byte{clientFrame(true, false, 0xB, nil)}, CloseProtocolError},
		{"stray continuation", [][]byte{clientFrame(true, false, opContinuation, []byte("x"))}, CloseProtocolError},
		{"interleaved data", [][]byte{
			clientFrame(false, false, opText, []byte("a")),
			clientFrame(true, false, opText, []byte("b")),
		}, CloseProtocolError},
		{"long ping", [][]byte{clientFrame(true, false, opPing, bigText[:126])}, CloseProtocolError},
		{"bad close code", [][]byte{clientFrame(true, false, opClose, []byte{0x03, 0xed})}, CloseProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newRecHandler(false)
			ts := newTestServer(t, Config{MaxMessage: 1024}, h)
			rc := dialRaw(t, ts, nil, nil)
			for _, f := range tt.frames {
				rc.write(f)
			}
			if code, _ := rc.expectClose(); code != tt.code {
				t.Fatalf("close code %d, want %d", code, tt.code)
			}
			rc.writeFrame(true, opClose, nil)
			rc.expectEOF()
			if ev := h.waitClose(t); ev.code != tt.code {
				t.Fatalf("OnClose code %d", ev.code)
			}
			if st := ts.Stats(); st.ClosedProtocol != 1 || st.MessagesRead != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestTooManyPending(t *testing.T) {
	h := newRecHandler(false)
	release := make(chan struct{})
	h.onMsg = func(*Conn, []byte) { <-release }
	ts := newTestServer(t, Config{MaxPending: 4}, h)
	rc := dialRaw(t, ts, nil, nil)
	for range 10 {
		rc.writeFrame(true, opText, []byte("spam"))
	}
	code, reason := rc.expectClose()
	rc.writeFrame(true, opClose, nil)
	close(release)
	if code != ClosePolicyViolation || reason != "too many pending" {
		t.Fatalf("close %d %q", code, reason)
	}
	if ev := h.waitClose(t); ev.code != ClosePolicyViolation {
		t.Fatalf("OnClose %+v", ev)
	}
}

func TestHandlerPanicRecovered(t *testing.T) {
	h := newRecHandler(true)
	h.onMsg = func(_ *Conn, data []byte) {
		if string(data) == "boom" {
			panic("handler bug")
		}
	}
	ts := newTestServer(t, Config{}, h)
	rc := dialRaw(t, ts, nil, nil)
	rc.writeFrame(true, opText, []byte("boom"))
	rc.writeFrame(true, opText, []byte("still alive"))
	if op, p := rc.expectFrame(); op != opText || string(p) != "still alive" {
		t.Fatalf("got %x %q", op, p)
	}
}

func TestCompressedRoundTrip(t *testing.T) {
	h := newRecHandler(true)
	ts := newTestServer(t, Config{Compression: true}, h)
	cc := dialCoder(t, ts, &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
	sc := ts.nextConn(t)
	if !sc.Compressed() {
		t.Fatal("compression not negotiated")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := []byte(strings.Repeat(`{"type":"chat","text":"hello hello"}`, 200))
	if err := cc.Write(ctx, websocket.MessageText, msg); err != nil {
		t.Fatal(err)
	}
	if _, got, err := cc.Read(ctx); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: len %d err %v", len(got), err)
	}

	// A Prepared goes compressed to this client and plain to another.
	plain := dialRaw(t, ts, nil, nil)
	pc := ts.nextConn(t)
	if pc.Compressed() {
		t.Fatal("raw client got compression")
	}
	p := NewPrepared(msg, true)
	if err := sc.Send(p); err != nil {
		t.Fatal(err)
	}
	if _, got, err := cc.Read(ctx); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("prepared: len %d err %v", len(got), err)
	}
	if n := len(p.compressedFrame()); n >= len(msg)/4 {
		t.Fatalf("compressed frame is %d bytes for a %d-byte message", n, len(msg))
	}
	if err := pc.Send(p); err != nil {
		t.Fatal(err)
	}
	if op, got := plain.expectFrame(); op != opText || !bytes.Equal(got, msg) {
		t.Fatalf("plain: op %x len %d", op, len(got))
	}
	if p.compressedFrame()[0]&0x40 == 0 || len(p.compressedFrame()) >= len(p.frame) {
		t.Fatal("compressed frame not smaller / RSV1 unset")
	}
	// Small messages are not worth deflating and go out as they are.
	small := NewPrepared([]byte("hi"), true)
	if &small.compressedFrame()[0] != &small.frame[0] {
		t.Fatal("tiny message was deflated")
	}
}

func TestCompressedLimits(t *testing.T) {
	ext := http.Header{"Sec-WebSocket-Extensions": {"permessage-deflate; client_no_context_takeover"}}
	t.Run("zip bomb", func(t *testing.T) {
		h := newRecHandler(false)
		ts := newTestServer(t, Config{Compression: true, MaxMessage: 4096}, h)
		rc := dialRaw(t, ts, ext, nil)
		bomb := deflateMessage(make([]byte, 1<<20)) // 1 MiB of zeros, ~1 KiB compressed
		if len(bomb) > 4096 {
			t.Fatalf("bomb is %d bytes", len(bomb))
		}
		rc.write(clientFrame(true, true, opBinary, bomb))
		if code, _ := rc.expectClose(); code != CloseMessageTooBig {
			t.Fatalf("code %d", code)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		h := newRecHandler(false)
		ts := newTestServer(t, Config{Compression: true}, h)
		rc := dialRaw(t, ts, ext, nil)
		rc.write(clientFrame(true, true, opText, []byte{0xff, 0xff, 0xff, 0xff}))
		if code, _ := rc.expectClose(); code != CloseInvalidPayload {
			t.Fatalf("code %d", code)
		}
	})
	t.Run("fragmented compressed", func(t *testing.T) {
		h := newRecHandler(false)
		ts := newTestServer(t, Config{Compression: true}, h)
		rc := dialRaw(t, ts, ext, nil)
		msg := strings.Repeat("abcabc", 300)
		d := deflateMessage([]byte(msg))
		rc.write(clientFrame(false, true, opText, d[:len(d)/2]))
		rc.write(clientFrame(true, false, opContinuation, d[len(d)/2:]))
		if got := <-h.msgs; string(got) != msg {
			t.Fatalf("got %d bytes", len(got))
		}
	})
}

func TestValue(t *testing.T) {
	ts := newTestServer(t, Config{}, newRecHandler(false))
	_ = dialRaw(t, ts, nil, nil)
	c := ts.nextConn(t)
	if v, _ := c.Value().(string); v != "" {
		t.Fatalf("value %q", v)
	}
	c.SetValue(42)
	if c.Value() != 42 {
		t.Fatal("SetValue lost")
	}
	c.SetValue(nil)
	if c.Value() != nil {
		t.Fatal("nil value")
	}
}

func TestPreparedBatch(t *testing.T) {
	ts := newTestServer(t, Config{Compression: true}, newRecHandler(false))
	plain := dialRaw(t, ts, nil, nil)
	pc := ts.nextConn(t)
	cc := dialCoder(t, ts, &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
	zc := ts.nextConn(t)
	msgs := [][]byte{
		[]byte("short"),
		[]byte(strings.Repeat("compress me please ", 50)),
		{},
		bytes.Repeat([]byte("z"), 70000), // 64-bit length header
	}
	p := NewPreparedBatch(msgs, true)
	if len(p.compressedFrame()) >= p.Len() {
		t.Fatal("batch not compressed")
	}
	if err := pc.Send(p); err != nil {
		t.Fatal(err)
	}
	if err := zc.Send(p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, m := range msgs {
		if op, got := plain.expectFrame(); op != opText || !bytes.Equal(got, m) {
			t.Fatalf("plain msg %d: op %x len %d", i, op, len(got))
		}
		if typ, got, err := cc.Read(ctx); err != nil || typ != websocket.MessageText || !bytes.Equal(got, m) {
			t.Fatalf("compressed msg %d: len %d err %v", i, len(got), err)
		}
	}
}

// writeTogether connects to ts and writes n one-byte text messages ("a",
// "b", …) with one write, then waits until the server has queued them all.
func writeTogether(t *testing.T, ts *testServer, n int) *rawClient {
	t.Helper()
	rc := dialRaw(t, ts, nil, nil)
	ts.nextConn(t)
	var all []byte
	for i := range n {
		all = append(all, clientFrame(true, false, opText, []byte{'a' + byte(i)})...)
	}
	rc.write(all)
	testutil.WaitFor(t, "messages queued", 10*time.Second, func() bool { return ts.Stats().MessagesRead == uint64(n) })
	return rc
}

// TestPipelinedRepliesShareAWrite: frames that arrive together are
// answered in order, and the replies to those waiting behind the first
// one leave in one write.
func TestPipelinedRepliesShareAWrite(t *testing.T) {
	h := newRecHandler(true)
	release := make(chan struct{})
	first := true
	h.onMsg = func(*Conn, []byte) {
		if first { // hold the first message until all five are queued
			first = false
			<-release
		}
	}
	ts := newTestServer(t, Config{}, h)
	rc := writeTogether(t, ts, 5)
	before := ts.Stats().WriteSyscalls
	close(release)
	for i := range 5 {
		op, payload := rc.expectFrame()
		if op != opText || string(payload) != string(rune('a'+i)) {
			t.Fatalf("reply %d: op %d %q", i, op, payload)
		}
	}
	// The counters move just after the syscall: wait for the last frame's.
	testutil.WaitFor(t, "five frames counted", 10*time.Second, func() bool { return ts.Stats().FramesWritten == 5 })
	// The first reply is written at once if nothing was waiting behind it
	// yet when it was taken; the others share one writev.
	if got := ts.Stats().WriteSyscalls - before; got < 1 || got > 2 {
		t.Fatalf("%d write syscalls for 5 replies, want 1 or 2", got)
	}
}

// TestCorkedCloseGoesOut: a close while replies are corked behind a slow
// handler is written at once, with what was queued before it.
func TestCorkedCloseGoesOut(t *testing.T) {
	h := newRecHandler(true)
	ready, release := make(chan struct{}), make(chan struct{})
	var n int
	h.onMsg = func(c *Conn, _ []byte) {
		n++
		switch n {
		case 1: // hold until all three are queued
			<-ready
		case 2: // corked now: message 3 waits behind this one
			c.Close(CloseNormal, "bye")
			<-release
		}
	}
	ts := newTestServer(t, Config{}, h)
	rc := writeTogether(t, ts, 3)
	close(ready)
	defer close(release)
	if op, payload := rc.expectFrame(); op != opText || string(payload) != "a" {
		t.Fatalf("first reply: op %d %q", op, payload)
	}
	code, reason := rc.expectClose()
	if code != CloseNormal || reason != "bye" {
		t.Fatalf("close %d %q", code, reason)
	}
}

// inlineHandler answers messages starting with "i" on the poller
// goroutine and echoes the rest from OnMessage.
type inlineHandler struct {
	*recHandler
	inline atomic.Int64
}

func (h *inlineHandler) OnMessageInline(c *Conn, data []byte) bool {
	if len(data) == 0 || data[0] != 'i' {
		return false
	}
	h.inline.Add(1)
	_ = c.SendText(append([]byte("inline "), data...))
	return true
}

// TestInlineHandlerKeepsOrder: a message the InlineHandler takes is
// answered without OnMessage, but only when nothing of the connection is
// waiting for OnMessage, so the replies keep the messages' order.
func TestInlineHandlerKeepsOrder(t *testing.T) {
	h := &inlineHandler{recHandler: newRecHandler(true)}
	release := make(chan struct{})
	h.onMsg = func(_ *Conn, data []byte) {
		if string(data) == "slow" {
			<-release
		}
	}
	ts := newTestServer(t, Config{}, h)
	rc := dialRaw(t, ts, nil, nil)
	ts.nextConn(t)
	rc.writeFrame(true, opText, []byte("i1"))
	if _, p := rc.expectFrame(); string(p) != "inline i1" {
		t.Fatalf("got %q", p)
	}
	rc.writeFrame(true, opText, []byte("slow"))
	testutil.WaitFor(t, "slow queued", 10*time.Second, func() bool { return ts.Stats().MessagesRead == 2 })
	rc.writeFrame(true, opText, []byte("i2")) // behind "slow": not inline
	testutil.WaitFor(t, "i2 queued", 10*time.Second, func() bool { return ts.Stats().MessagesRead == 3 })
	close(release)
	for _, want := range []string{"slow", "i2"} {
		if _, p := rc.expectFrame(); string(p) != want {
			t.Fatalf("got %q, want %q", p, want)
		}
	}
	if n := h.inline.Load(); n != 1 {
		t.Fatalf("%d messages taken inline, want 1", n)
	}
	select {
	case m := <-h.msgs:
		if string(m) != "slow" {
			t.Fatalf("OnMessage got %q first", m)
		}
	default:
		t.Fatal("OnMessage did not get slow")
	}
}
