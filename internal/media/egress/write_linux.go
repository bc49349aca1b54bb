package egress

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawWrites: lanes write straight to sockets on this platform.
const rawWrites = true

// maxIov bounds the buffers one writev takes.
const maxIov = 1024

// iovec is a lane's writev vector and the call that writes it, made once
// per lane so that a write allocates nothing (a closure per call would).
type iovec struct {
	v     [maxIov]unix.Iovec
	k     int // entries of v to write
	n     uintptr
	errno syscall.Errno
	call  func(fd uintptr)
}

// writev writes the first k entries of v to fd (a non-blocking socket: a
// raw call, no scheduler hand-off for a call that cannot block).
func (w *iovec) writev(fd uintptr) {
	w.n, _, w.errno = syscall.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.v[0])), uintptr(w.k))
}

// try writes bufs to v's socket without blocking, and returns what the
// socket did not take (nil when all went); busy: another writer held it.
func (l *lane) try(v *viewer, bufs net.Buffers) (rest net.Buffers, busy bool, err error) {
	if v.mu != nil {
		if !v.mu.TryLock() {
			return bufs, true, nil // another writer has the socket: the viewer's goroutine waits for it
		}
		defer v.mu.Unlock()
	}
	for len(bufs) > 0 {
		k, want := 0, 0
		for _, b := range bufs[:min(len(bufs), maxIov)] {
			if len(b) == 0 {
				continue
			}
			l.iov.v[k].Base = &b[0]
			l.iov.v[k].SetLen(len(b))
			want += len(b)
			k++
		}
		if k == 0 { // only empty buffers in this window
			bufs = bufs[min(len(bufs), maxIov):]
			continue
		}
		if l.iov.call == nil {
			l.iov.call = l.iov.writev
		}
		l.iov.k = k
		// Control, not Write: the socket is non-blocking and this write must
		// not wait for it, nor heed the deadline the viewer's own blocking
		// writes set.
		cerr := v.rc.Control(l.iov.call)
		n, errno := l.iov.n, l.iov.errno
		clear(l.iov.v[:k])
		switch {
		case cerr != nil:
			return bufs, false, cerr
		case errno == syscall.EAGAIN || errno == syscall.EINTR:
			return bufs, false, nil
		case errno != 0:
			return bufs, false, &net.OpError{Op: "writev", Net: "tcp", Err: errno}
		}
		bufs = consume(bufs, int(n))
		if int(n) < want {
			return bufs, false, nil
		}
	}
	return nil, false, nil
}
