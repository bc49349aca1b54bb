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

// iovec is a lane's writev vector.
type iovec [maxIov]unix.Iovec

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
			l.iov[k].Base = &b[0]
			l.iov[k].SetLen(len(b))
			want += len(b)
			k++
		}
		if k == 0 { // only empty buffers in this window
			bufs = bufs[min(len(bufs), maxIov):]
			continue
		}
		var n uintptr
		var errno syscall.Errno
		// Control, not Write: the socket is non-blocking and this write must
		// not wait for it, nor heed the deadline the viewer's own blocking
		// writes set. A raw call: no scheduler hand-off for a call that
		// cannot block.
		cerr := v.rc.Control(func(fd uintptr) {
			n, _, errno = syscall.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&l.iov[0])), uintptr(k))
		})
		clear(l.iov[:k])
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
