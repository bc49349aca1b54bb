//go:build !linux

package egress

import "net"

// rawWrites: lanes write straight to sockets on this platform. Elsewhere
// every viewer writes on its own goroutine.
const rawWrites = false

type iovec struct{}

func (l *lane) try(v *viewer, bufs net.Buffers) (net.Buffers, bool, error) { return bufs, true, nil }
