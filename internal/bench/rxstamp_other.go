//go:build !linux

package bench

import "net"

// stampConn gives no receive timestamps on this platform.
type stampConn struct{ net.Conn }

func (c *stampConn) arrived() int64 { return 0 }

func stamp(c net.Conn) net.Conn { return c }
