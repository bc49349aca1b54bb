package ws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Server. Zero fields take the defaults noted.
type Config struct {
	// MaxMessage is the largest data message accepted from a client, after
	// decompression (default 16 KiB). Larger messages close the connection
	// with 1009.
	MaxMessage int
	// QueueBytes bounds the unflushed bytes queued per connection (default
	// 1 MiB). A send past it closes the connection with 4008.
	QueueBytes int
	// SendBuffer sets each socket's kernel send buffer (SO_SNDBUF) in bytes;
	// 0 keeps the kernel's autotuning. A small value bounds kernel memory
	// per viewer and makes slow consumers show up in QueueBytes sooner.
	SendBuffer int
	// MaxPending bounds a connection's received messages waiting for
	// Handler.OnMessage (default 16). Past it the connection is closed with
	// 1008 "too many pending".
	MaxPending int
	// Heartbeat is the ping period (default 25s). A connection from which
	// nothing was read for two periods is closed with 4000.
	Heartbeat time.Duration
	// Compression enables permessage-deflate when the client offers it.
	Compression bool
	// CheckOrigin approves the handshake request's Origin; nil allows all.
	CheckOrigin func(*http.Request) bool
	// Logger receives diagnostics (default slog.Default()).
	Logger *slog.Logger
}

// Handler receives a connection's events. For one Conn the calls are
// sequential, never concurrent, and never on the poller goroutine (only
// InlineHandler.OnMessageInline, if implemented, runs there), so they
// may block (a slow handler only delays that connection, whose pending
// messages are bounded by Config.MaxPending).
type Handler interface {
	// OnMessage is called with each complete data message, in order. data
	// is not reused by the package; the handler may keep it.
	OnMessage(c *Conn, data []byte)
	// OnClose is called exactly once, after the connection is closed and
	// after every OnMessage for it. code and reason are those of the close:
	// the peer's close frame (1005 if it had no code), 1006 if the
	// connection dropped without one, or the code the server closed with.
	OnClose(c *Conn, code int, reason string)
}

// InlineHandler may be implemented by a Handler that answers some messages
// at once, on the poller goroutine, saving the hand-over to a handler
// goroutine (for refusals decided from memory, such as a token bucket's).
type InlineHandler interface {
	// OnMessageInline is offered each complete data message of a
	// connection none of whose messages is waiting for or in OnMessage,
	// so taking it keeps the connection's order. It returns true if it
	// handled data, which then never reaches OnMessage. It runs on the
	// poller goroutine: it must not block, and must not keep data (the
	// read buffer, reused).
	OnMessageInline(c *Conn, data []byte) bool
}

// Stats are cumulative counters (Conns is current).
type Stats struct {
	Conns    int64  // connections open now
	Accepted uint64 // successful upgrades

	ClosedSlow      uint64 // 4008: write queue over QueueBytes
	ClosedHeartbeat uint64 // 4000: nothing read for two heartbeat periods
	ClosedProtocol  uint64 // 1002, 1007, 1008, 1009: the client broke the protocol or limits
	ClosedClient    uint64 // the client closed, or its connection failed
	ClosedServer    uint64 // Conn.Close or Shutdown

	FramesWritten uint64 // buffers completely written: one per Send, SendText or control frame (a batch Prepared counts once)
	BytesWritten  uint64
	WriteSyscalls uint64 // write/writev calls, direct and queued
	QueuedFlushes uint64 // writev calls by the poller for queued bytes
	MessagesRead  uint64 // data messages queued for the Handler
}

type counters struct {
	accepted      atomic.Uint64
	closed        [causeHeartbeat + 1]atomic.Uint64
	_             [64]byte // keep the write-path counters on their own line
	framesWritten atomic.Uint64
	bytesWritten  atomic.Uint64
	writeSyscalls atomic.Uint64
	queuedFlushes atomic.Uint64
	messagesRead  atomic.Uint64
}

// Server owns the poller, the heartbeat sweeper and every upgraded Conn.
type Server struct {
	cfg        Config
	h          Handler
	inline     InlineHandler // h, if it implements it
	log        *slog.Logger
	p          *poller
	closeGrace time.Duration
	pingFrame  []byte

	mu     sync.RWMutex
	conns  []*Conn // guarded by mu: registered conns indexed by fd
	closed bool    // guarded by mu: Shutdown has begun

	nconns atomic.Int64
	gen    atomic.Uint32
	clock  atomic.Int64 // coarse unix nanoseconds, advanced by the sweeper
	stats  counters

	stopping     atomic.Bool
	stop         chan struct{}
	work         chan *Conn     // unbuffered: hands a connection to an idle handler goroutine
	bg           sync.WaitGroup // poller and sweeper
	handlers     sync.WaitGroup // handler goroutines (handlerLoop)
	shutdownOnce sync.Once
	done         chan struct{} // closed when Shutdown has finished
}

const (
	defaultMaxMessage = 16 << 10
	defaultQueueBytes = 1 << 20
	defaultMaxPending = 16
	defaultHeartbeat  = 25 * time.Second
	maxCloseGrace     = 3 * time.Second
)

// NewServer validates cfg, fills defaults and starts the poller and
// heartbeat goroutines. Stop them with Shutdown or Close.
func NewServer(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("ws: nil Handler")
	}
	if cfg.MaxMessage < 0 || cfg.QueueBytes < 0 || cfg.MaxPending < 0 || cfg.Heartbeat < 0 {
		return nil, errors.New("ws: negative Config value")
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = defaultMaxMessage
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = defaultQueueBytes
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = defaultMaxPending
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = defaultHeartbeat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p, err := newPoller()
	if err != nil {
		return nil, fmt.Errorf("ws: new server: %w", err)
	}
	s := &Server{
		cfg:        cfg,
		h:          h,
		log:        cfg.Logger,
		p:          p,
		closeGrace: min(cfg.Heartbeat, maxCloseGrace),
		pingFrame:  buildFrame(opPing, false, nil),
		stop:       make(chan struct{}),
		work:       make(chan *Conn),
		done:       make(chan struct{}),
	}
	s.inline, _ = h.(InlineHandler)
	s.clock.Store(time.Now().UnixNano())
	s.bg.Add(2)
	go s.pollLoop()
	go s.sweep()
	return s, nil
}

// Len is the number of open connections.
func (s *Server) Len() int { return int(s.nconns.Load()) }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	return Stats{
		Conns:           s.nconns.Load(),
		Accepted:        st.accepted.Load(),
		ClosedSlow:      st.closed[causeSlow].Load(),
		ClosedHeartbeat: st.closed[causeHeartbeat].Load(),
		ClosedProtocol:  st.closed[causeProtocol].Load(),
		ClosedClient:    st.closed[causeClient].Load(),
		ClosedServer:    st.closed[causeServer].Load(),
		FramesWritten:   st.framesWritten.Load(),
		BytesWritten:    st.bytesWritten.Load(),
		WriteSyscalls:   st.writeSyscalls.Load(),
		QueuedFlushes:   st.queuedFlushes.Load(),
		MessagesRead:    st.messagesRead.Load(),
	}
}

var errShuttingDown = errors.New("ws: server shutting down")

// register adds c to the fd table and the poller (with no interest yet).
func (s *Server) register(c *Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errShuttingDown
	}
	if c.fd >= len(s.conns) {
		n := max(2*len(s.conns), c.fd+1, 1024)
		conns := make([]*Conn, n)
		copy(conns, s.conns)
		s.conns = conns
	}
	if err := s.p.add(c); err != nil {
		return fmt.Errorf("ws: epoll add fd %d: %w", c.fd, err)
	}
	s.conns[c.fd] = c
	s.nconns.Add(1)
	s.stats.accepted.Add(1)
	return nil
}

// unregister removes c from the table and counts its close. Called once per
// registered Conn, from teardownLocked, before the socket is closed.
func (s *Server) unregister(c *Conn) {
	s.mu.Lock()
	if c.fd < len(s.conns) && s.conns[c.fd] == c {
		s.conns[c.fd] = nil
	}
	s.mu.Unlock()
	s.nconns.Add(-1)
	s.stats.closed[c.cause].Add(1)
}

// lookup returns the conn registered under fd with generation gen; the
// caller holds s.mu.RLock.
func (s *Server) lookupLocked(fd int, gen uint32) *Conn {
	if fd < 0 || fd >= len(s.conns) {
		return nil
	}
	if c := s.conns[fd]; c != nil && c.gen == gen {
		return c
	}
	return nil
}

// snapshot appends every registered conn to buf.
func (s *Server) snapshot(buf []*Conn) []*Conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.conns {
		if c != nil {
			buf = append(buf, c)
		}
	}
	return buf
}

// sweep is the one heartbeat goroutine: it advances the coarse clock, pings
// every connection once per period, closes those silent for two periods,
// and ends graceful closes whose peer never answered.
func (s *Server) sweep() {
	defer s.bg.Done()
	period := s.cfg.Heartbeat
	tick := min(max(period/4, 5*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	nextPing := time.Now().Add(period).UnixNano()
	var buf []*Conn
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			n := now.UnixNano()
			s.clock.Store(n)
			ping := n >= nextPing
			if ping {
				nextPing = n + int64(period)
			}
			buf = s.snapshot(buf[:0])
			for i, c := range buf {
				buf[i] = nil
				if d := c.deadline.Load(); d != 0 {
					c.expire(n)
					continue
				}
				if c.closing.Load() {
					continue
				}
				if n-c.lastRead.Load() > 2*int64(period) {
					c.closeWith(causeHeartbeat, CloseHeartbeatTimeout, "heartbeat timeout", closeGraceful)
					continue
				}
				if ping {
					// A failed ping closes the conn itself.
					_ = c.sendFrame(s.pingFrame, false)
				}
			}
		}
	}
}

// Shutdown closes every connection with 1001 "going away" (after one
// non-blocking attempt to flush what is queued), rejects new upgrades,
// stops the poller and sweeper and waits for them and for every pending
// Handler call (OnClose included). If ctx ends first it returns ctx's error;
// the remaining Handler calls still finish in the background.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(s.beginShutdown)
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ws: shutdown: %w", ctx.Err())
	}
}

// Close is Shutdown without a deadline.
func (s *Server) Close() error { return s.Shutdown(context.Background()) }

func (s *Server) beginShutdown() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for _, c := range s.snapshot(nil) {
		c.closeWith(causeServer, CloseGoingAway, "going away", closeFlush)
	}
	s.stopping.Store(true)
	close(s.stop)
	if err := s.p.wake(); err != nil {
		s.log.Error("ws: wake poller", "err", err)
	}
	go func() {
		s.bg.Wait()
		if err := s.p.close(); err != nil {
			s.log.Warn("ws: close poller", "err", err)
		}
		s.handlers.Wait()
		close(s.done)
	}()
}
