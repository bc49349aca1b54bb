package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// Kind is what a Frame carries.
type Kind uint8

// Frame kinds.
const (
	KindVideo Kind = iota + 1
	KindAudio
	KindMeta // onMetaData script tag
)

// Frame is one unit of media, muxed once by the publisher's goroutine and
// then shared, read-only, by every reader of the stream. Never modify a
// Frame or the bytes it points to.
type Frame struct {
	Kind Kind
	// Config marks a sequence header (or metadata): codec parameters rather
	// than a picture or sound. AU then holds the parameter sets (H.264:
	// SPS, PPS; H.265: VPS, SPS, PPS) or the AAC AudioSpecificConfig.
	Config bool
	// Key marks a random access point: an IDR picture, or any audio frame of
	// an audio-only stream. A GOP starts at a key frame.
	Key bool
	DTS time.Duration // since the first frame of the publish session
	PTS time.Duration
	// Tag is the complete FLV tag — 11-byte header whose timestamp is DTS
	// in ms, the body (which is also the RTMP message payload) and the
	// 4-byte PreviousTagSize. Writers that rebase timestamps rewrite a copy
	// of the header, never this slice.
	Tag []byte
	// AU is the video access unit as NALUs, or the one AAC frame; the
	// slices point into Tag.
	AU [][]byte

	seq     uint64    // position in the stream's ring
	cue     any       // a KindCue frame's Cue
	arrived time.Time // when it was appended (Pacer holds from the oldest unsent frame's)
}

// Tracks describe what a publisher sends.
type Tracks struct {
	Video *VideoTrack // nil: no video
	Audio *AudioTrack // nil: no audio
}

// VideoTrack is an H.264 or H.265 track with its parameter sets.
type VideoTrack struct {
	Codec string // "h264" or "h265"
	VPS   []byte // H.265 only
	SPS   []byte
	PPS   []byte
}

// AudioTrack is an AAC track.
type AudioTrack struct {
	Config *mpeg4audio.AudioSpecificConfig
}

// Stream is one publish session of one room: the hub between a publisher
// and its readers. It keeps a bounded ring of recent frames (which is also
// the GOP cache: new readers start at the latest key frame in it) and the
// current sequence headers. Each reader has its own cursor into the ring
// (read by one goroutine at a time); appending never waits for a reader.
type Stream struct {
	// Static after construction.
	room      string
	m         *Manager
	id        uint64
	remote    string
	startedAt time.Time
	ctx       context.Context    // the publisher's; canceled to kick it
	cancel    context.CancelFunc // kicks the publisher (takeover, Kick, Close)
	ready     chan struct{}      // closed when started or ended
	ringCap   int
	ringMax   int // bytes

	finishOnce sync.Once

	mu        sync.RWMutex
	started   bool          // guarded by mu
	ended     bool          // guarded by mu
	tracks    Tracks        // guarded by mu
	meta      *Frame        // current onMetaData; guarded by mu
	vcfg      *Frame        // current video sequence header; guarded by mu
	acfg      *Frame        // current audio sequence header; guarded by mu
	ring      []*Frame      // ring[seq%ringCap]; guarded by mu
	head      uint64        // seq of the next frame; guarded by mu
	tail      uint64        // seq of the oldest retained frame; guarded by mu
	ringBytes int           // bytes of retained tags; guarded by mu
	gop       uint64        // seq of the latest key frame, valid if gopOK; guarded by mu
	gopOK     bool          // guarded by mu
	lastDTS   time.Duration // DTS of the newest frame; guarded by mu
	signal    chan struct{} // closed and replaced on every append; guarded by mu
	// flush is closed and replaced when a key frame or FlushBytes arrive:
	// paced writers (Pacer) write at once instead of holding frames,
	// so a GOP's start reaches viewers without the pacing delay while the
	// small frames in between still go out batched. Guarded by mu.
	flush     chan struct{}
	unflushed int // bytes appended since flush was last closed; guarded by mu
	readers   map[*Reader]struct{}
	hls       map[string]time.Time // HLS client → last request; guarded by mu

	width, height atomic.Int32
	bytesIn       atomic.Uint64
	videoIn       atomic.Uint64
	audioIn       atomic.Uint64
	videoFrames   atomic.Uint64
	bytesOut      atomic.Uint64
	dropped       atomic.Uint64

	statsMu sync.Mutex // guards the meters
	inRate  meter
	outRate meter
	fps     meter
}

// Room is the room id the stream belongs to.
func (s *Stream) Room() string { return s.room }

// ID is the session id, unique within the process.
func (s *Stream) ID() uint64 { return s.id }

// StartedAt is when the publisher was accepted.
func (s *Stream) StartedAt() time.Time { return s.startedAt }

// Tracks returns the tracks (zero before the stream started).
func (s *Stream) Tracks() Tracks {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tracks
}

// Done is closed when the publisher is told to stop.
func (s *Stream) Done() <-chan struct{} { return s.ctx.Done() }

// appendLocked adds f to the ring, evicting the oldest frames to stay
// within the frame and byte bounds, and wakes the readers.
func (s *Stream) appendLocked(f *Frame) {
	for s.head > s.tail && (s.head-s.tail >= uint64(s.ringCap) || s.ringBytes+len(f.Tag) > s.ringMax) {
		i := s.tail % uint64(s.ringCap)
		s.ringBytes -= len(s.ring[i].Tag)
		s.ring[i] = nil
		s.tail++
	}
	if s.gopOK && s.gop < s.tail {
		s.gopOK = false // the GOP is larger than the ring: no cache until the next key frame
	}
	f.seq, f.arrived = s.head, time.Now()
	s.ring[s.head%uint64(s.ringCap)] = f
	s.head++
	s.ringBytes += len(f.Tag)
	if f.Key {
		s.gop, s.gopOK = f.seq, true
	}
	if f.Kind != KindMeta && f.Kind != KindCue && f.DTS > s.lastDTS {
		s.lastDTS = f.DTS
	}
	close(s.signal)
	s.signal = make(chan struct{})
	if s.unflushed += len(f.Tag); f.Key || s.unflushed >= FlushBytes {
		close(s.flush)
		s.flush, s.unflushed = make(chan struct{}), 0
	}
}

// FlushBytes is how many queued bytes make paced writers write at once: one
// write of this size amortizes its syscall as well as a timer tick would.
const FlushBytes = 64 << 10

// at returns the frame at seq; the caller holds mu and checks the bounds.
func (s *Stream) at(seq uint64) *Frame { return s.ring[seq%uint64(s.ringCap)] }

// end marks the stream ended; readers drain what is left and get ErrEnded.
func (s *Stream) end() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.ended = true
	close(s.signal)
	s.signal = make(chan struct{})
	close(s.flush)
	s.flush = make(chan struct{})
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
	return true
}

// NoteHLSClient records an HLS request from client (for viewer counts).
func (s *Stream) NoteHLSClient(client string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hls == nil {
		s.hls = map[string]time.Time{}
	}
	if _, ok := s.hls[client]; !ok && len(s.hls) >= maxHLSClients {
		s.pruneHLSLocked(now)
		if len(s.hls) >= maxHLSClients {
			return
		}
	}
	s.hls[client] = now
}

const (
	maxHLSClients = 100000
	hlsClientTTL  = 15 * time.Second
)

func (s *Stream) pruneHLSLocked(now time.Time) int {
	for k, t := range s.hls {
		if now.Sub(t) > hlsClientTTL {
			delete(s.hls, k)
		}
	}
	return len(s.hls)
}

// LastDTS is the DTS of the newest audio or video frame: how far the
// stream has come since its first frame (the session clock reads it).
func (s *Stream) LastDTS() time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastDTS
}

// Buffered reports the frames and tag bytes the ring holds (bounded by
// Config.RingFrames and Config.RingBytes).
func (s *Stream) Buffered() (frames, bytes int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int(s.head - s.tail), s.ringBytes
}

// Readers is the number of attached readers (internal ones included).
func (s *Stream) Readers() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.readers)
}

// Ended reports whether the publisher has gone.
func (s *Stream) Ended() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ended
}

// Backlog is what a stream's shared writer needs to know about the frames
// appended since it last wrote (package egress).
type Backlog struct {
	Head   uint64    // seq of the next frame to be appended
	Oldest time.Time // arrival of the oldest frame at or after from (zero if none)
	// Urgent: those frames hold a key frame or FlushBytes: write at once.
	Urgent bool
	Ended  bool
	Signal <-chan struct{} // closed on the next append (or the end)
	Flush  <-chan struct{} // closed on the next key frame or FlushBytes (or the end)
}

// Backlog reports the frames appended at or after seq from.
func (s *Stream) Backlog(from uint64) Backlog {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := Backlog{Head: s.head, Ended: s.ended, Signal: s.signal, Flush: s.flush}
	from = max(from, s.tail)
	if from < s.head {
		b.Oldest = s.at(from).arrived
		n := 0
		for seq := from; seq < s.head && !b.Urgent; seq++ {
			f := s.at(seq)
			n += len(f.Tag)
			b.Urgent = f.Key || n >= FlushBytes
		}
	}
	return b
}
