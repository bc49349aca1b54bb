// Package ws is roomcast's WebSocket connection layer. Its one job is to
// hold many mostly idle WebSocket connections cheaply and write
// pre-encoded frames to them fast. It knows nothing of rooms, users or
// auth; a Handler gets each connection's messages and its close.
//
// # Design
//
// RFC 6455 (handshake and framing) and RFC 7692 (permessage-deflate) are
// implemented here; no third-party WebSocket code is used.
//
// Idle cost. A goroutine plus bufio buffers per connection costs ~10 KiB
// or more; here an idle connection is a Conn (a few hundred bytes), its
// net.TCPConn, one epoll registration and its kernel socket
// (TestIdleConnMemory measures ~0.8 KiB of Go heap and ~2 KiB of RSS per
// idle connection, and no goroutine). Upgrade
// writes the 101 response straight to the hijacked socket and drops the
// http server's bufio.ReadWriter (keeping only bytes it had already
// buffered). Buffers exist only while needed: the bytes of an incomplete
// frame, a fragmented message being assembled, queued outgoing frames, and
// messages waiting for the Handler.
//
// Reading (Linux). One poller goroutine owns an epoll instance
// (level-triggered; EPOLLIN|EPOLLRDHUP once Start is called, EPOLLOUT only
// while a connection has queued bytes) and an eventfd that wakes it for
// shutdown. On readiness it reads once into a shared 64 KiB scratch buffer
// and parses frames in place (parseFrame is a pure function, fuzzed by
// FuzzParse). Control frames are answered at once; complete data messages
// are copied out, validated (UTF-8, size, inflation limit) and queued per
// connection (at most Config.MaxPending). A handler goroutine drains a
// connection only while it has queued messages, calling the Handler for
// them one at a time, so Handler calls may block without stalling the
// poller; handler goroutines are kept for a while after their burst
// (handlerIdle) and handed the next connection with messages, so a
// message does not cost a new goroutine and its stack growth. At the
// upgrade the socket leaves the Go runtime's poller (a duplicate
// descriptor; the net.Conn is closed), so only the poller's epoll watches
// it and the runtime's netpoll does not wake for its packets; every read
// and write goes through a RawConn-like rawFD with a callback that never
// waits, whose lock guards against the socket being closed (and its
// number reused) during the call.
// Other systems compile but NewServer reports that it needs Linux.
//
// Writing. NewPrepared frames a payload once (NewPreparedBatch frames
// several messages into one buffer, so one write delivers them all); its
// deflated form is built at most once, on first use by a compressed
// connection (compression is negotiated with no context takeover in either
// direction, so the same bytes suit every connection). Send tries one non-blocking write from the
// caller's goroutine when nothing is queued; the rest is queued by
// reference (no copy) and the poller flushes the queue on EPOLLOUT with
// writev. Send never blocks: past Config.QueueBytes queued the connection
// is closed with 4008 "slow consumer" and Send returns ErrSlow.
//
// Heartbeats. One sweeper goroutine pings every connection once per
// Config.Heartbeat, closes with 4000 any from which nothing was read for
// two periods, and finishes graceful closes whose peer never answered. It
// also advances the coarse clock that reads are stamped with.
//
// Closing. A close queues a close frame, flushes, half-closes and waits
// (bounded) for the peer's close frame or EOF; teardown then removes the
// epoll registration before closing the socket, unregisters the Conn and
// schedules Handler.OnClose, exactly once, after any queued messages.
//
// # Ownership
//
// Conn fields are owned as follows:
//   - set in Upgrade and then read-only: s, nc, rc, fd, gen, compressed, remote,
//     subprotocol;
//   - owned by the poller goroutine (by Start before it publishes
//     started): in, inWant, frag, fragOp, fragRSV1;
//   - guarded by c.mu: connection state, the write queue (wq, queued),
//     registered epoll interest, close cause/code/reason, and the write
//     callback's scratch fields;
//   - guarded by c.qmu: the pending message queue and drain state;
//   - atomic: value, lastRead, started, closing, deadline.
//
// Lock order: c.mu, then Server.mu or c.qmu. Server.mu guards the fd
// table and is never held while taking a c.mu.
package ws
