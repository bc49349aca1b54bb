package bench

import (
	"io"
	"net"
	"testing"
	"time"
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
	before := time.Now().UnixNano()
	if _, err := srv.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(sc, buf); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixNano()
	if got := sc.arrived(); got < before-int64(time.Millisecond) || got > after {
		t.Fatalf("arrived %d, want within [%d, %d]", got, before, after)
	}
	_ = srv.Close()
	if _, err := sc.Read(buf); err != io.EOF {
		t.Fatalf("after close: %v, want EOF", err)
	}
}
