//go:build !linux

package ws

import (
	"errors"
	"net"
	"syscall"
)

// The connection layer needs epoll; on other systems NewServer fails, but
// the package still compiles so that code using it builds everywhere.

var errUnsupported = errors.New("ws: the epoll connection layer requires linux")

type poller struct{}

func newPoller() (*poller, error)            { return nil, errUnsupported }
func (p *poller) add(*Conn) error            { return errUnsupported }
func (p *poller) modify(*Conn, int) error    { return errUnsupported }
func (p *poller) remove(*Conn) error         { return errUnsupported }
func (p *poller) wake() error                { return errUnsupported }
func (p *poller) close() error               { return errUnsupported }
func (s *Server) pollLoop()                  { s.bg.Done() }
func (c *Conn) sysWrite([]byte) (int, error) { return 0, errUnsupported }
func (c *Conn) sysWritev([][]byte) (int, error) {
	return 0, errUnsupported
}
func (c *Conn) sysDiscardInput() {}
func detach(_ net.Conn, rc syscall.RawConn) (syscall.RawConn, int, error) {
	return rc, -1, errUnsupported
}
