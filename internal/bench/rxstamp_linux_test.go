package bench

import (
	"io"
	"net"
	"testing"
	"time"

	"roomcast/internal/testutil"
)

// A read through stampConn carries the kernel's receive timestamp of what
// it returned: after the write, not after the read.
func TestStampConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := newStampConn(c)
	if sc == nil {
		t.Fatal("no receive timestamps on a TCP connection")
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// The kernel turns timestamping on asynchronously: the first segments
	// may come without one (and then arrived is 0, not a stale time).
	buf := make([]byte, 1)
	var before, after int64
	testutil.WaitFor(t, "a read with a receive timestamp", 10*time.Second, func() bool {
		before = time.Now().UnixNano()
		if _, err := srv.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(sc, buf); err != nil {
			t.Fatal(err)
		}
		after = time.Now().UnixNano()
		return sc.arrived() != 0
	})
	if got := sc.arrived(); got < before-int64(time.Millisecond) || got > after {
		t.Fatalf("arrived %d, want within [%d, %d]", got, before, after)
	}
	_ = srv.Close()
	if _, err := sc.Read(buf); err != io.EOF {
		t.Fatalf("after close: %v, want EOF", err)
	}
}
