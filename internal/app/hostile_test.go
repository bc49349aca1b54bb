package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomcast/internal/auth"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// TestFaultHostileClients (issue 8): one roomcast process under hostile
// clients at once — 5,000 TCP connections that never send a byte, HTTP
// requests whose headers or bodies trickle in, WebSocket viewers that never
// read while the room is busy, oversize and fragmented WebSocket frames, and
// RTMP clients that stop in the middle of the handshake. Meanwhile an
// ordinary client sends and reads as usual. The process's memory stays
// bounded (measured from /proc), the server cuts every hostile connection
// by itself (a viewer that never reads hits its send-queue bound or the
// heartbeat timeout, whichever comes first), and the ordinary client is
// served throughout.
func TestFaultHostileClients(t *testing.T) {
	rtmpPort := redistest.FreePort(t)
	node := redistest.StartNode(t, redistest.Binary(t), "--rtmp", fmt.Sprintf("127.0.0.1:%d", rtmpPort), "--data", t.TempDir(),
		"--secret", testSecret, "--admin-key", testAdminKey, "--rate-limit", "0", "--render-budget", "0", "--tick", "20ms", "--log-level", "error",
		"--queue-bytes", "65536", "--heartbeat", "2s") // small bounds, so the stuck viewers hit them within the test
	s := remote(t, node.URL)
	s.createRoom("h")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	base := node.RSS()

	var peak atomic.Int64
	sampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() { // the process's resident memory, every 50 ms
		defer sampler.Done()
		for {
			if r := node.RSS(); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-sampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	var hostile []net.Conn
	var kinds []string // what each hostile connection does, for the failure message
	kind := ""
	dial := func(addr string) net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		hostile = append(hostile, c)
		kinds = append(kinds, kind)
		return c
	}
	defer func() {
		for _, c := range hostile {
			c.Close()
		}
	}()
	// 5,000 half-open connections: accepted, never a byte sent.
	kind = "idle"
	for i := 0; i < 5000; i++ {
		dial(node.Addr)
	}
	// Headers that never end, and a body that trickles.
	for i := 0; i < 50; i++ {
		kind = "endless headers"
		c := dial(node.Addr)
		fmt.Fprintf(c, "GET /api/rooms/h/messages HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		kind = "trickling body"
		c = dial(node.Addr)
		fmt.Fprintf(c, "POST /api/rooms/h/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":", s.token(fmt.Sprint("slow", i), auth.RoleViewer, 1))
	}
	// RTMP clients that stop after C0 and a piece of C1.
	rtmpAddr := fmt.Sprintf("127.0.0.1:%d", rtmpPort)
	kind = "rtmp half handshake"
	for i := 0; i < 50; i++ {
		c := dial(rtmpAddr)
		_, _ = c.Write(append([]byte{3}, make([]byte, 700)...))
	}
	// WebSocket viewers that never read.
	var stuck []*websocket.Conn
	for i := 0; i < 20; i++ {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws?room=h", nil)
		if err != nil {
			t.Fatal(err)
		}
		stuck = append(stuck, c)
	}
	defer func() {
		for _, c := range stuck {
			c.CloseNow()
		}
	}()
	// Frames too large for --max-frame (16 KiB), whole or in fragments.
	for _, fragmented := range []bool{false, true} {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws?room=h", nil)
		if err != nil {
			t.Fatal(err)
		}
		big := []byte(`{"type":"ping","pad":"` + strings.Repeat("x", 64<<10) + `"}`)
		if fragmented {
			w, err := c.Writer(ctx, websocket.MessageText)
			if err == nil {
				for off := 0; off < len(big) && err == nil; off += 4 << 10 {
					_, err = w.Write(big[off:min(off+4<<10, len(big))])
				}
				_ = w.Close()
			}
		} else {
			_ = c.Write(ctx, websocket.MessageText, big)
		}
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		for err == nil {
			_, _, err = c.Read(rctx)
		}
		rcancel()
		if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Errorf("oversize frame (fragmented %v): connection ended with %v, want 1009", fragmented, err)
		}
		c.CloseNow()
	}

	// The ordinary client meanwhile: a viewer and a sender, 300 messages of
	// 200 characters (the busy room the stuck viewers never read).
	viewer, _ := s.attached(ctx, "room=h&cursor=0")
	sender := s.token("ordinary", auth.RoleViewer, 1)
	var slowest time.Duration
	for i := 0; i < 300; i++ {
		start := time.Now()
		code, raw := s.request(ctx, "POST", "/api/rooms/h/messages", sender, map[string]string{"kind": "chat", "text": fmt.Sprintf("%03d%s", i, strings.Repeat("y", 197))})
		if code != 201 {
			t.Fatalf("ordinary send %d: %d %s", i, code, raw)
		}
		slowest = max(slowest, time.Since(start))
	}
	got := 0
	for got < 300 {
		f, err := viewer.next(ctx, "batch")
		if err != nil {
			t.Fatalf("ordinary viewer after %d messages: %v", got, err)
		}
		got += len(f.Messages)
	}
	if code := s.do("GET", "/api/rooms/h/messages?limit=1", "", nil, nil); code != 200 {
		t.Fatalf("ordinary poll: %d", code)
	}

	// The server cuts every hostile connection by itself (header, body and
	// handshake timeouts, slow-consumer drops).
	// closed reads what the server sent without waiting: one non-blocking
	// read(2) per look, until it says end of stream or an error (closed) or
	// "nothing yet" (open). A 1 ms read deadline answered "open" for a closed
	// connection whenever the test goroutine lost the CPU for a millisecond
	// between setting the deadline and reading (Go checks the deadline
	// first), which a loaded machine does to one of 5,150 sockets every pass.
	closed := func(c net.Conn) bool {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return true
		}
		var b [4096]byte
		for {
			var n int
			var rerr error
			if err := rc.Read(func(fd uintptr) bool {
				n, rerr = syscall.Read(int(fd), b[:])
				return true // never wait for readiness
			}); err != nil {
				return true
			}
			switch {
			case n > 0:
				continue // the server's answer or greeting, then its close
			case errors.Is(rerr, syscall.EAGAIN):
				return false
			default: // 0 bytes: end of stream; or ECONNRESET and the like
				return true
			}
		}
	}
	if !testutil.Eventually(60*time.Second, func() bool {
		for _, c := range hostile {
			if !closed(c) {
				return false
			}
		}
		return true
	}) {
		open := map[string]int{} // by kind, for the message
		for i, c := range hostile {
			if !closed(c) {
				open[kinds[i]]++
			}
		}
		t.Fatalf("timed out waiting for the server to close every hostile TCP connection; still open: %v", open)
	}
	for i, c := range stuck {
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		var err error
		for err == nil {
			_, _, err = c.Read(rctx) // reads what was queued, then the end
		}
		rcancel()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("stuck viewer %d was never dropped", i)
		}
	}
	close(sampling)
	sampler.Wait()
	grew := peak.Load() - base
	t.Logf("RSS %d MiB before, peak %d MiB with 5,000 idle, 100 slow HTTP, 50 half-handshaken RTMP and 20 unread WebSocket connections (+%d MiB); slowest ordinary send %v",
		base>>20, peak.Load()>>20, grew>>20, slowest)
	if grew > 384<<20 {
		t.Errorf("memory grew by %d MiB under hostile clients", grew>>20)
	}
	if slowest > 5*time.Second {
		t.Errorf("an ordinary send took %v under hostile clients", slowest)
	}
}
