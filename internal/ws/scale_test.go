//go:build linux

package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"roomcast/internal/testutil"
)

// TestManyConnsSamePrepared sends the same Prepared messages to 2,000
// connections.
func TestManyConnsSamePrepared(t *testing.T) {
	const n, msgs = 2000, 5
	ts := newTestServer(t, Config{}, newRecHandler(false))
	clients := make([]*rawClient, n)
	conns := make([]*Conn, n)
	for i := range clients {
		clients[i] = dialRaw(t, ts, nil, nil)
		conns[i] = ts.nextConn(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, rc := range clients {
		wg.Go(func() {
			for i := range msgs {
				_, op, p, err := rc.readFrame()
				if err == nil && (op != opText || string(p) != "broadcast "+strconv.Itoa(i)) {
					err = fmt.Errorf("msg %d: op %x %q", i, op, p)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range msgs {
		p := NewPrepared([]byte("broadcast "+strconv.Itoa(i)), true)
		for _, c := range conns {
			if err := c.Send(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := ts.Stats(); st.FramesWritten < n*msgs || st.Conns != n {
		t.Fatalf("stats %+v", st)
	}
}

// setSndBuf shrinks a server socket's send buffer so a test fills it fast.
func setSndBuf(t testing.TB, c *Conn, size int) {
	t.Helper()
	err := c.rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSlowConsumerClosed(t *testing.T) {
	h := newRecHandler(false)
	ts := newTestServer(t, Config{QueueBytes: 64 << 10}, h)

	const fast = 3
	var readers [fast]countingReader
	var wg sync.WaitGroup
	fastConns := make([]*Conn, fast)
	for i := range fast {
		rc := dialRaw(t, ts, nil, nil)
		fastConns[i] = ts.nextConn(t)
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := rc.br.Read(buf)
				readers[i].add(n)
				if err != nil {
					return
				}
			}
		})
	}
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		})
	}}
	slowNC, err := d.Dial("tcp", ts.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slowNC.Close()
	if _, err := io.WriteString(slowNC, handshakeRequest("x", nil)); err != nil {
		t.Fatal(err)
	}
	slow := ts.nextConn(t)
	setSndBuf(t, slow, 4096)

	p := NewPrepared(bytes.Repeat([]byte("x"), 8<<10), false)
	sent := 0
	var slowErr error
	for sent < 10000 && slowErr == nil {
		for _, c := range fastConns {
			if err := c.Send(p); err != nil {
				t.Fatalf("fast conn: %v", err)
			}
		}
		slowErr = slow.Send(p)
		sent++
		if sent%64 == 0 {
			time.Sleep(time.Millisecond) // let the fast readers keep up
		}
	}
	if !errors.Is(slowErr, ErrSlow) {
		t.Fatalf("slow conn after %d sends: %v", sent, slowErr)
	}
	if err := slow.Send(p); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after slow close: %v", err)
	}
	ev := h.waitClose(t)
	if ev.c != slow || ev.code != CloseSlowConsumer || ev.reason != "slow consumer" {
		t.Fatalf("OnClose %+v", ev)
	}
	// The others keep receiving, everything.
	for range 10 {
		for _, c := range fastConns {
			if err := c.Send(p); err != nil {
				t.Fatal(err)
			}
		}
		sent++
	}
	want := int64(sent * len(p.frame))
	for i := range readers {
		testutil.WaitFor(t, "fast readers", 10*time.Second, func() bool { return readers[i].get() >= want })
	}
	if st := ts.Stats(); st.ClosedSlow != 1 || st.Conns != fast {
		t.Fatalf("stats %+v", st)
	}
	for _, c := range fastConns {
		c.Close(CloseNormal, "")
	}
	wg.Wait()
}

func TestHeartbeat(t *testing.T) {
	h := newRecHandler(false)
	ts := newTestServer(t, Config{Heartbeat: 400 * time.Millisecond}, h) // generous: CI machines are loaded

	// A live client answers pings (coder/websocket does while reading).
	cc := dialCoder(t, ts, nil)
	live := ts.nextConn(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readDone := make(chan error, 1)
	go func() { _, _, err := cc.Read(ctx); readDone <- err }()

	// A silent one gets pings, then 4000.
	rc := dialRaw(t, ts, nil, nil)
	silent := ts.nextConn(t)
	pings := 0
	for {
		_, op, p, err := rc.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		if op == opPing {
			pings++
			continue
		}
		if op != opClose || readCloseCode(p) != CloseHeartbeatTimeout {
			t.Fatalf("op %x %q", op, p)
		}
		break
	}
	if pings == 0 {
		t.Fatal("no ping before the timeout")
	}
	ev := h.waitClose(t)
	if ev.c != silent || ev.code != CloseHeartbeatTimeout || ev.reason != "heartbeat timeout" {
		t.Fatalf("OnClose %+v", ev)
	}
	time.Sleep(1600 * time.Millisecond) // 4 periods
	if live.closing.Load() {
		t.Fatal("live client was closed")
	}
	if st := ts.Stats(); st.ClosedHeartbeat != 1 || st.Conns != 1 {
		t.Fatalf("stats %+v", st)
	}
	cancel()
	<-readDone
}

func readCloseCode(p []byte) int {
	if len(p) < 2 {
		return CloseNoStatus
	}
	return int(p[0])<<8 | int(p[1])
}

func TestShutdown(t *testing.T) {
	h := newRecHandler(false)
	ts := newTestServer(t, Config{}, h)
	const raw, coder = 20, 5
	var raws []*rawClient
	for range raw {
		raws = append(raws, dialRaw(t, ts, nil, nil))
	}
	var coders []*websocket.Conn
	for range coder {
		coders = append(coders, dialCoder(t, ts, nil))
	}
	testutil.WaitFor(t, "conns", 10*time.Second, func() bool { return ts.Len() == raw+coder })
	// Something queued must be flushed before the close frame.
	for range raw + coder {
		c := ts.nextConn(t)
		if err := c.SendText([]byte("last words")); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ts.Len() != 0 {
		t.Fatalf("Len %d after shutdown", ts.Len())
	}
	for _, rc := range raws {
		if op, p := rc.expectFrame(); op != opText || string(p) != "last words" {
			t.Fatalf("got %x %q", op, p)
		}
		if code, reason := rc.expectClose(); code != CloseGoingAway || reason != "going away" {
			t.Fatalf("close %d %q", code, reason)
		}
		rc.expectEOF()
	}
	for _, cc := range coders {
		if _, p, err := cc.Read(ctx); err != nil || string(p) != "last words" {
			t.Fatalf("coder read %q %v", p, err)
		}
		_, _, err := cc.Read(ctx)
		if websocket.CloseStatus(err) != CloseGoingAway {
			t.Fatalf("coder close: %v", err)
		}
	}
	for range raw + coder {
		if ev := h.waitClose(t); ev.code != CloseGoingAway {
			t.Fatalf("OnClose %+v", ev)
		}
	}
	if st := ts.Stats(); st.ClosedServer != raw+coder {
		t.Fatalf("stats %+v", st)
	}
	if err := ts.Shutdown(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestShutdownWaitsForHandlers(t *testing.T) {
	h := newRecHandler(false)
	release := make(chan struct{})
	started := make(chan struct{})
	h.onMsg = func(*Conn, []byte) { close(started); <-release }
	ts := newTestServer(t, Config{}, h)
	rc := dialRaw(t, ts, nil, nil)
	rc.writeFrame(true, opText, []byte("block"))
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a blocked handler: %v", err)
	}
	close(release)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := h.waitClose(t); ev.code != CloseGoingAway {
		t.Fatalf("OnClose %+v", ev)
	}
}

// TestSendDoesNotAllocate guards the broadcast hot path.
func TestSendDoesNotAllocate(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(fmt.Sprintf("compressed=%v", compressed), func(t *testing.T) {
			ts := newTestServer(t, Config{Compression: compressed}, newRecHandler(false))
			var hdr map[string][]string
			if compressed {
				hdr = map[string][]string{"Sec-WebSocket-Extensions": {"permessage-deflate"}}
			}
			rc := dialRaw(t, ts, hdr, nil)
			c := ts.nextConn(t)
			if c.Compressed() != compressed {
				t.Fatal("negotiation")
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = io.Copy(io.Discard, rc.nc)
			}()
			p := NewPrepared([]byte(strings.Repeat(`{"t":"chat","text":"hi"}`, 8)), true)
			allocs := testing.AllocsPerRun(500, func() {
				if err := c.Send(p); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("Send allocates %.1f times per call", allocs)
			}
			rc.nc.Close()
			<-done
		})
	}
}

// dialSyscall makes a client connection with bare syscalls (no Go netFD or
// goroutine), so the heap measured is the server's alone.
func dialSyscall(t testing.TB, addr *net.TCPAddr) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte(handshakeRequest(addr.String(), nil))); err != nil {
		t.Fatal(err)
	}
	var resp []byte
	buf := make([]byte, 512)
	for !bytes.Contains(resp, []byte("\r\n\r\n")) {
		n, err := unix.Read(fd, buf)
		if err != nil || n == 0 {
			t.Fatalf("read handshake: %d %v", n, err)
		}
		resp = append(resp, buf[:n]...)
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101")) {
		t.Fatalf("handshake: %q", resp)
	}
	return fd
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestIdleConnMemory measures the Go memory one idle, started connection
// keeps on the server.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 connections")
	}
	const n = 2000
	ts := newTestServer(t, Config{}, newRecHandler(false))
	addr := ts.hs.Listener.Addr().(*net.TCPAddr)
	fds := make([]int, 0, n+1)
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	fds = append(fds, dialSyscall(t, addr)) // warm up pools and the fd table
	<-ts.conns
	var before, after runtime.MemStats
	runtime.GC()
	debug.FreeOSMemory()
	runtime.ReadMemStats(&before)
	rssBefore, gBefore := rssBytes(), runtime.NumGoroutine()
	for range n {
		fds = append(fds, dialSyscall(t, addr))
		<-ts.conns // Conns stay referenced by the server table only
	}
	testutil.WaitFor(t, "conns", 10*time.Second, func() bool { return ts.Len() == n+1 })
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	debug.FreeOSMemory() // return the handshakes' garbage, so RSS shows what stays
	runtime.ReadMemStats(&after)
	heap := float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / n
	stack := float64(int64(after.StackInuse)-int64(before.StackInuse)) / n
	rss := float64(rssBytes()-rssBefore) / n
	goroutines := runtime.NumGoroutine() - gBefore
	t.Logf("per idle conn: heap %.0f B, stack %.0f B, process RSS %.0f B (client side is bare fds); goroutines +%d for %d conns",
		heap, stack, rss, goroutines, n)
	if heap+stack > 4096 {
		t.Errorf("idle conn costs %.0f B of Go heap+stack; budget 4 KiB", heap+stack)
	}
	if !raceEnabled && rss > 10<<10 {
		t.Errorf("idle conn costs %.0f B of RSS; budget 10 KiB", rss)
	}
	if goroutines > 10 {
		t.Errorf("%d goroutines for %d idle conns", goroutines, n)
	}
}

// BenchmarkSend broadcasts one Prepared to N live loopback connections per
// iteration; reader goroutines drain the clients, and the timer stops only
// once every byte has arrived. Metrics are per delivered message:
//   - ns/msg: wall time, including the in-process readers' work;
//   - send-cpu-ns/msg: CPU time of the sending thread inside Send (user +
//     kernel; on loopback the kernel's receive processing runs in the
//     sender's write, so this overstates what a real NIC costs);
//   - syscalls/msg, flushes/msg: from Stats.
//
// batch>1 sends NewPreparedBatch of that many messages: one write delivers
// them all.
func BenchmarkSend(b *testing.B) {
	for _, tc := range []struct{ conns, size, batch int }{
		{1000, 100, 1},
		{1000, 1000, 1},
		{1000, 100, 2},
		{1000, 100, 8},
	} {
		b.Run(fmt.Sprintf("conns=%d/size=%d/batch=%d", tc.conns, tc.size, tc.batch), func(b *testing.B) {
			benchSend(b, tc.conns, tc.size, tc.batch)
		})
	}
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

func benchSend(b *testing.B, n, size, batch int) {
	ts := newTestServer(b, Config{}, newRecHandler(false))
	conns := make([]*Conn, n)
	var received atomic.Int64
	var wg sync.WaitGroup
	ncs := make([]net.Conn, n)
	for i := range n {
		rc := dialRaw(b, ts, nil, nil)
		conns[i] = ts.nextConn(b)
		ncs[i] = rc.nc
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				k, err := rc.br.Read(buf)
				received.Add(int64(k))
				if err != nil {
					return
				}
			}
		})
	}
	payloads := make([][]byte, batch)
	for i := range payloads {
		payloads[i] = bytes.Repeat([]byte("m"), size)
	}
	p := NewPreparedBatch(payloads, true)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st0 := ts.Stats()
	var cpu time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c0 := threadCPU()
		for _, c := range conns {
			if err := c.Send(p); err != nil {
				b.Fatal(err)
			}
		}
		cpu += threadCPU() - c0
	}
	want := int64(b.N) * int64(n) * int64(p.Len())
	for received.Load() < want {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	st := ts.Stats()
	msgs := float64(b.N) * float64(n) * float64(batch)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/msgs, "ns/msg")
	b.ReportMetric(float64(cpu.Nanoseconds())/msgs, "send-cpu-ns/msg")
	b.ReportMetric(float64(st.WriteSyscalls-st0.WriteSyscalls)/msgs, "syscalls/msg")
	b.ReportMetric(float64(st.QueuedFlushes-st0.QueuedFlushes)/msgs, "flushes/msg")
	for _, nc := range ncs {
		nc.Close()
	}
	wg.Wait()
}

// TestConcurrentSendsQueued has several goroutines send to one connection
// whose socket buffer is tiny, so most bytes go through the queue and the
// poller's writev flushes (including partial writes). Every message must
// arrive whole, and each sender's messages in order.
func TestConcurrentSendsQueued(t *testing.T) {
	ts := newTestServer(t, Config{QueueBytes: 64 << 20}, newRecHandler(false))
	rc := dialRaw(t, ts, nil, nil)
	c := ts.nextConn(t)
	setSndBuf(t, c, 4096)
	const senders, perSender = 4, 300
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range perSender {
				size := 8 + r.IntN(3000)
				if i%50 == 0 {
					size = 70000
				}
				msg := make([]byte, size)
				binary.BigEndian.PutUint32(msg, uint32(g))
				binary.BigEndian.PutUint32(msg[4:], uint32(i))
				for j := 8; j < size; j++ {
					msg[j] = byte(g + i + j)
				}
				var err error
				if i%3 == 0 {
					err = c.SendText(bytes.ToValidUTF8(msg, nil)) // exercises the other path
					if err == nil {
						continue
					}
				} else {
					err = c.Send(NewPrepared(msg, false))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := make([]int, senders)
	for got := 0; got < senders*perSender; got++ {
		if got%100 == 0 {
			time.Sleep(2 * time.Millisecond) // read slowly, so the queue builds up
		}
		_, op, p, err := rc.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		if op == opText {
			continue // ToValidUTF8 may have rewritten the header bytes
		}
		g, i := int(binary.BigEndian.Uint32(p)), int(binary.BigEndian.Uint32(p[4:]))
		for next[g]%3 == 0 {
			next[g]++
		}
		if i != next[g] {
			t.Fatalf("sender %d: got msg %d, want %d", g, i, next[g])
		}
		next[g]++
		for j := 8; j < len(p); j++ {
			if p[j] != byte(g+i+j) {
				t.Fatalf("sender %d msg %d corrupt at %d", g, i, j)
			}
		}
	}
	wg.Wait()
	if st := ts.Stats(); st.QueuedFlushes == 0 {
		t.Fatalf("queue path not exercised: %+v", st)
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestNoFDLeak checks every socket, the epoll fd and the eventfd are closed
// after client closes, server closes and Shutdown.
func TestNoFDLeak(t *testing.T) {
	before := openFDs(t)
	func() {
		h := newRecHandler(false)
		s, err := NewServer(Config{Logger: quietLogger}, h)
		if err != nil {
			t.Fatal(err)
		}
		ts := &testServer{Server: s, conns: make(chan *Conn, 100)}
		ts.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, err := s.Upgrade(w, r); err == nil {
				c.Start()
				ts.conns <- c
			}
		}))
		defer ts.hs.Close()
		var clients []*rawClient
		byAddr := map[string]*rawClient{}
		for range 30 {
			rc := dialRaw(t, ts, nil, nil)
			clients = append(clients, rc)
			byAddr[rc.nc.LocalAddr().String()] = rc
		}
		for i := range 30 {
			c := ts.nextConn(t)
			rc := byAddr[c.RemoteAddr().String()]
			switch i % 3 {
			case 0:
				c.Close(CloseNormal, "server closes")
				rc.expectClose()
				rc.writeFrame(true, opClose, []byte{0x03, 0xe8})
			case 1:
				rc.nc.Close() // client vanishes
			}
		}
		testutil.WaitFor(t, "closes", 10*time.Second, func() bool { return s.Len() == 10 })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, rc := range clients {
			rc.nc.Close()
		}
	}()
	testutil.WaitFor(t, "fds released", 10*time.Second, func() bool { return openFDs(t) <= before })
}
