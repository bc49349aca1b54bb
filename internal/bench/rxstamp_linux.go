package bench

import (
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// stampConn is a viewer's TCP connection that asks the kernel for receive
// timestamps (SO_TIMESTAMPNS) and keeps the one of its latest read: when the
// newest segment that read returned reached the socket (0 if that read had
// none: the kernel turns timestamping on asynchronously, so the first
// segments after the option is set may come without). A tag parsed after
// that read arrived no later than it, so arrival times taken from it are
// never earlier than the truth, and they leave out how long the load
// generator took to get round to reading (fwd.go).
type stampConn struct {
	net.Conn
	rc   syscall.RawConn
	oob  []byte
	last atomic.Int64 // Unix ns of the latest read's newest segment; 0 if none
}

// newStampConn wraps c, or returns nil if c cannot give timestamps.
func newStampConn(c net.Conn) *stampConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return nil
	}
	return &stampConn{Conn: c, rc: rc, oob: make([]byte, unix.CmsgSpace(16))}
}

func (c *stampConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n, oobn int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), p, c.oob, 0)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	var at int64 // 0 (unknown) unless this read carries a timestamp: never an older read's
	if msgs, perr := unix.ParseSocketControlMessage(c.oob[:oobn]); perr == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
				nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
				at = sec*1e9 + nsec
			}
		}
	}
	c.last.Store(at)
	return n, nil
}

// arrived is the latest read's receive timestamp (Unix ns), 0 if none.
func (c *stampConn) arrived() int64 {
	if c == nil {
		return 0
	}
	return c.last.Load()
}

// stamp wraps c for receive timestamps when it can, else returns c.
func stamp(c net.Conn) net.Conn {
	if sc := newStampConn(c); sc != nil {
		return sc
	}
	return c
}
