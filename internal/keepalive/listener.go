package keepalive

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// Listener wraps the HTTP server's listener (Server.Listener makes it):
// Accept returns the connections the wrapped listener accepts and those the
// Server hands back (wrapped so that net/http reads first the bytes the
// Server had already read). Close closes the wrapped listener, ends its
// accept goroutine and closes connections handed back after it.
type Listener struct {
	net.Listener
	s        *Server // its back channel; its lnDone, closed by Close
	accepted chan accepted
	ended    chan struct{} // closed when the accept goroutine returns
}

type accepted struct {
	c   net.Conn
	err error
}

// Listener wraps ln, the listener net/http serves, so that connections
// handed back reach net/http; call it once. It starts the accept goroutine,
// which the Listener's Close ends.
func (s *Server) Listener(ln net.Listener) *Listener {
	l := &Listener{Listener: ln, s: s, accepted: make(chan accepted), ended: make(chan struct{})}
	s.listening.Store(true)
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	defer close(l.ended)
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- accepted{c, err}:
		case <-l.s.lnDone:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept returns the next new or handed-back connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.s.back:
		return c, nil
	case a := <-l.accepted:
		return a.c, a.err
	case <-l.s.lnDone:
		return nil, net.ErrClosed
	}
}

// Close closes the wrapped listener and waits for the accept goroutine.
func (l *Listener) Close() error {
	var err error
	l.s.lnOnce.Do(func() {
		close(l.s.lnDone)
		err = l.Listener.Close()
		<-l.ended
	})
	return err
}

// handBack gives c, whose first bytes are read, to the Listener's next
// Accept; without a Listener, or after its Close, it closes c.
func (s *Server) handBack(c net.Conn, read []byte) {
	if !s.listening.Load() {
		_ = c.Close()
		return
	}
	if len(read) > 0 {
		c = &replayConn{Conn: c, pending: read}
	}
	select {
	case s.back <- c:
	case <-s.lnDone:
		_ = c.Close()
	}
}

// replayConn is a handed-back connection: Read returns the bytes the Server
// had read before the socket's. It keeps the socket's raw access
// (SyscallConn, SetWriteBuffer) for the WebSocket and media paths, which
// net/http hands the connection to after reading the request — by then
// pending is drained (a request head is all a client sends before an
// answer); while it is not, raw access is refused rather than skip it.
type replayConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil // the read buffer behind it is free
		}
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// drained reports whether every replayed byte has been read.
func (c *replayConn) drained() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) == 0
}

// errPending refuses raw socket access while replayed bytes are unread.
var errPending = errors.New("keepalive: connection has unread replayed bytes")

// SyscallConn gives the socket's raw access once the replayed bytes are read.
func (c *replayConn) SyscallConn() (syscall.RawConn, error) {
	if !c.drained() {
		return nil, errPending
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("keepalive: connection has no raw socket")
	}
	return sc.SyscallConn()
}

// SetWriteBuffer sets the socket's send buffer (SO_SNDBUF).
func (c *replayConn) SetWriteBuffer(n int) error {
	wb, ok := c.Conn.(interface{ SetWriteBuffer(int) error })
	if !ok {
		return errors.New("keepalive: connection has no send buffer to set")
	}
	return wb.SetWriteBuffer(n)
}
