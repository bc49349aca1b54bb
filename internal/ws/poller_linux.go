//go:build linux

package ws

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// poller is one epoll instance watched by one goroutine (pollLoop). An
// eventfd registered in it wakes the loop for shutdown.
//
// Connections are registered level-triggered with EPOLLIN|EPOLLRDHUP once
// started, plus EPOLLOUT only while they have queued bytes, so an idle
// connection costs the kernel's epoll item and nothing in Go but its Conn.
// The event's data carries fd and generation; pollLoop maps them to the
// Conn through the Server's fd table and ignores events for a Conn that
// has since been closed (and its fd perhaps reused).
type poller struct {
	epfd int
	efd  int

	// Owned by pollLoop.
	scratch []byte
	rn      int
	rerr    error
	rfn     func(fd uintptr) bool
}

// scratchSize is how much one read takes from a socket.
const scratchSize = 64 << 10

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd), Pad: 0}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(efd)
		return nil, fmt.Errorf("epoll_ctl add eventfd: %w", err)
	}
	p := &poller{epfd: epfd, efd: efd, scratch: make([]byte, scratchSize)}
	p.rfn = func(fd uintptr) bool {
		// Non-blocking, so made raw like the writes: no need to tell the
		// scheduler about a syscall that cannot block.
		r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p.scratch[0])), uintptr(len(p.scratch)))
		p.rn, p.rerr = int(r), nil
		if e != 0 {
			p.rn, p.rerr = -1, e
		}
		return true // never park in the runtime poller
	}
	return p, nil
}

func epollEvents(interest int) uint32 {
	var ev uint32
	if interest&interestRead != 0 {
		ev |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if interest&interestWrite != 0 {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// add registers c with no interest; EPOLLERR and EPOLLHUP still report.
func (p *poller) add(c *Conn) error {
	ev := unix.EpollEvent{Events: 0, Fd: int32(c.fd), Pad: int32(c.gen)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev)
}

// modify and remove are called with c.mu held and c not yet torn down, so
// c.fd is still open and still c's (teardown removes before closing).
func (p *poller) modify(c *Conn, interest int) error {
	ev := unix.EpollEvent{Events: epollEvents(interest), Fd: int32(c.fd), Pad: int32(c.gen)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
}

func (p *poller) remove(c *Conn) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
}

func (p *poller) wake() error {
	var one = [8]byte{1} // eventfd counter increment, native (little) endian
	_, err := unix.Write(p.efd, one[:])
	if errors.Is(err, unix.EAGAIN) {
		err = nil // counter saturated: a wake-up is pending anyway
	}
	return err
}

// close releases the epoll and eventfd descriptors; pollLoop must have
// returned.
func (p *poller) close() error {
	return errors.Join(unix.Close(p.epfd), unix.Close(p.efd))
}

// detach takes the socket out of the Go runtime's poller: a duplicate of
// its descriptor becomes the connection's (nc is closed, which removes the
// original from the runtime's epoll and closes it; the socket lives on in
// the duplicate, so nothing is sent). Only pollLoop's epoll watches it
// then: the runtime's netpoll no longer wakes for each packet that
// arrives and each write the peer acknowledges (~20 % of the server's
// CPU when every frame gets a reply). nc keeps answering RemoteAddr.
func detach(nc net.Conn, rc syscall.RawConn) (syscall.RawConn, int, error) {
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, -1, fmt.Errorf("dup: %w", err)
	}
	if derr != nil {
		return nil, -1, fmt.Errorf("dup: %w", derr)
	}
	if err := nc.Close(); err != nil {
		_ = unix.Close(fd)
		return nil, -1, fmt.Errorf("close the original: %w", err)
	}
	return &rawFD{fd: fd}, fd, nil
}

// rawFD is a detached socket as a syscall.RawConn: Read, Write and
// Control run their callback once (the socket is non-blocking) unless it
// was closed; Close waits for a callback in progress, so the descriptor
// number is never used after it may have been reused.
type rawFD struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

var errFDClosed = errors.New("ws: socket closed")

// lock holds r.mu and returns the descriptor, or fails (unlocked) when
// it was closed.
func (r *rawFD) lock() (uintptr, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, errFDClosed
	}
	return uintptr(r.fd), nil
}

func (r *rawFD) Control(f func(fd uintptr)) error {
	fd, err := r.lock()
	if err == nil {
		f(fd)
		r.mu.Unlock()
	}
	return err
}

func (r *rawFD) Read(f func(fd uintptr) bool) error {
	fd, err := r.lock()
	if err == nil {
		f(fd)
		r.mu.Unlock()
	}
	return err
}

func (r *rawFD) Write(f func(fd uintptr) bool) error { return r.Read(f) }

// CloseWrite half-closes the socket (our FIN after our close frame).
func (r *rawFD) CloseWrite() error {
	var err error
	if cerr := r.Control(func(fd uintptr) { err = unix.Shutdown(int(fd), unix.SHUT_WR) }); cerr != nil {
		return cerr
	}
	return err
}

func (r *rawFD) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return unix.Close(r.fd)
}

// pollLoop is the poller goroutine.
func (s *Server) pollLoop() {
	defer s.bg.Done()
	p := s.p
	events := make([]unix.EpollEvent, 256)
	batch := make([]*Conn, len(events))
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			s.log.Error("ws: epoll_wait failed; poller stopping", "err", err)
			return
		}
		s.mu.RLock()
		for i := range n {
			if fd := int(events[i].Fd); fd != p.efd {
				batch[i] = s.lookupLocked(fd, uint32(events[i].Pad))
			}
		}
		s.mu.RUnlock()
		for i := range n {
			ev := events[i].Events
			if int(events[i].Fd) == p.efd {
				var buf [8]byte
				_, _ = unix.Read(p.efd, buf[:])
				if s.stopping.Load() {
					return
				}
				continue
			}
			c := batch[i]
			batch[i] = nil
			if c == nil {
				continue
			}
			if ev&unix.EPOLLOUT != 0 {
				c.onWritable()
			}
			if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				p.onReadable(c, ev)
			}
		}
	}
}

// onReadable reads once (level-triggered epoll reports again if more is
// waiting) and feeds the bytes to the parser.
func (p *poller) onReadable(c *Conn, ev uint32) {
	if !c.started.Load() {
		// Not reading yet; but a dead socket would be reported forever.
		if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.closeWith(causeClient, CloseAbnormal, "connection lost", closeHard)
		}
		return
	}
	p.rn, p.rerr = 0, nil
	if err := c.rc.Read(p.rfn); err != nil {
		return // closed under us; teardown has run or is running
	}
	n, err := p.rn, p.rerr
	p.rerr = nil
	switch {
	case n > 0:
		c.lastRead.Store(c.s.clock.Load())
		c.feed(p.scratch[:n])
	case err == nil: // EOF
		c.closeWith(causeClient, CloseAbnormal, "connection closed", closeHard)
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
	default:
		c.s.log.Debug("ws: read failed", "remote", c.remote, "err", err)
		c.closeWith(causeClient, CloseAbnormal, "read error", closeHard)
	}
}

// sysWrite makes one non-blocking write. A full socket is not an error: it
// returns how much was written (maybe 0). It runs with c.mu held and the
// connection not torn down, so c.fd is open and c's (teardownLocked closes
// it under c.mu): the write goes straight to the socket, without the
// RawConn's lock and callback per write. The socket is non-blocking, so the
// call is made raw: no need to tell the scheduler about a syscall that
// cannot block.
func (c *Conn) sysWrite(b []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return writeResult(int(r), errnoErr(e), nil)
}

// sysWritev writes the first frames of bufs (none empty) with one writev,
// setting c.wiovLen to the bytes it tried. Same conditions as sysWrite.
func (c *Conn) sysWritev(bufs [][]byte) (int, error) {
	iov := iovPool.Get().(*[maxIov]unix.Iovec)
	k := 0
	c.wiovLen = 0
	for _, b := range bufs[:min(len(bufs), maxIov)] {
		iov[k].Base = &b[0]
		iov[k].SetLen(len(b))
		c.wiovLen += len(b)
		k++
	}
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(c.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
	clear(iov[:k])
	iovPool.Put(iov)
	return writeResult(int(r), errnoErr(e), nil)
}

// errnoErr is e as an error (nil for 0).
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// maxIov bounds the frames one writev takes.
const maxIov = 64

var iovPool = sync.Pool{New: func() any { return new([maxIov]unix.Iovec) }}

func writeResult(n int, werr, rawErr error) (int, error) {
	if rawErr != nil {
		return 0, rawErr
	}
	if werr != nil {
		if errors.Is(werr, unix.EAGAIN) || errors.Is(werr, unix.EINTR) {
			return 0, nil
		}
		return 0, werr
	}
	return max(n, 0), nil
}

// sysDiscardInput reads and drops what the peer sent that we have not read
// (bounded), so that closing the socket sends FIN rather than RST.
func (c *Conn) sysDiscardInput() {
	buf := discardPool.Get().(*[4096]byte)
	defer discardPool.Put(buf)
	for range 16 {
		n := 0
		err := c.rc.Read(func(fd uintptr) bool {
			n, _ = unix.Read(int(fd), buf[:])
			return true
		})
		if err != nil || n <= 0 {
			return
		}
	}
}

var discardPool = sync.Pool{New: func() any { return new([4096]byte) }}
