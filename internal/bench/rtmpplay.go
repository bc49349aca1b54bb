package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync/atomic"

	"github.com/bluenviron/gortmplib"

	"roomcast/internal/media/flvtag"
)

// RTMP players (`bench rtmp`). gortmplib's client does the handshake and
// the connect/createStream/play exchange, as any RTMP player would; the
// stream is then read by rtmpReader, which parses chunk headers and skips
// media payloads (keeping each message's first bytes) instead of decoding
// every message into a fresh allocation: with gortmplib's own reader, a
// thousand players in one bench process could not keep up on this 2-core
// box and the server dropped them as slow. The payload of an RTMP media
// message is the FLV tag body, so the players are judged by the same
// figures as FLV viewers (flvStats).

// handshakeBytes is what the server sends in the plain RTMP handshake
// (S0 + S1 + S2), before the chunk stream starts.
const handshakeBytes = 1 + 1536 + 1536

// recConn records what is read through it while rec is on: the bytes the
// gortmplib client read (and buffered) before playing, which rtmpReader
// then parses from the start of the chunk stream.
type recConn struct {
	net.Conn
	rec []byte
	on  bool
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.on {
		c.rec = append(c.rec, p[:n]...)
	}
	return n, err
}

// dialRTMP connects and plays; it returns once the server answered the
// play command, with the reader of the stream.
func (s *flvScenario) dialRTMP(ctx context.Context, n *atomic.Int64) (*rtmpReader, error) {
	u, err := url.Parse(s.playURL)
	if err != nil {
		return nil, err
	}
	var rc *recConn
	c := &gortmplib.Client{URL: u, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		rc = &recConn{Conn: stamp(conn), on: true} // receive timestamps for forwarding_socket
		return rc, nil
	}}
	ictx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := c.Initialize(ictx); err != nil {
		return nil, err
	}
	rc.on = false
	if len(rc.rec) < handshakeBytes {
		c.Close()
		return nil, errors.New("rtmp: short handshake")
	}
	n.Add(int64(len(rc.rec)))
	src := io.MultiReader(bytes.NewReader(rc.rec[handshakeBytes:]), &countingReader{r: rc.Conn, n: n})
	return &rtmpReader{conn: rc.Conn, br: bufio.NewReaderSize(src, s.readBuf), n: n, chunkSize: 128,
		ackWindow: 2500000, streams: map[uint32]*rtmpChunkStream{}}, nil
}

// rtmpReader reads an RTMP chunk stream (RTMP spec §5.3): basic and message
// headers per chunk, header compression per chunk stream, Set Chunk Size
// and Window Acknowledgement Size honoured, acknowledgements sent.
type rtmpReader struct {
	conn      net.Conn
	br        *bufio.Reader
	n         *atomic.Int64 // bytes received
	chunkSize int
	ackWindow int64
	acked     int64
	streams   map[uint32]*rtmpChunkStream
	hdr       [16]byte
}

type rtmpChunkStream struct {
	ts, delta uint32
	length    int
	typ       byte
	ext       bool // the last header had an extended timestamp
	left      int  // bytes of the current message still to come
	head      []byte
}

// rtmpKeep is how much of each message body is kept: flvtag's longest
// video header, and the 4 bytes of protocol control messages.
const rtmpKeep = 16

// Close closes the connection.
func (r *rtmpReader) Close() { _ = r.conn.Close() }

// next returns the next complete message: its type, timestamp, length
// and first bytes (valid until the next call).
func (r *rtmpReader) next() (typ byte, ts uint32, length int, head []byte, err error) {
	for {
		cs, err := r.chunkHeader()
		if err != nil {
			return 0, 0, 0, nil, err
		}
		k := min(r.chunkSize, cs.left)
		if keep := min(rtmpKeep-len(cs.head), k); keep > 0 {
			start := len(cs.head)
			cs.head = cs.head[:start+keep]
			if _, err := io.ReadFull(r.br, cs.head[start:]); err != nil {
				return 0, 0, 0, nil, err
			}
			k -= keep
		}
		if _, err := r.br.Discard(k); err != nil {
			return 0, 0, 0, nil, err
		}
		cs.left -= min(r.chunkSize, cs.left)
		if err := r.ack(); err != nil {
			return 0, 0, 0, nil, err
		}
		if cs.left > 0 {
			continue
		}
		switch cs.typ {
		case 1: // Set Chunk Size
			if len(cs.head) >= 4 {
				r.chunkSize = max(1, int(binary.BigEndian.Uint32(cs.head)&0x7FFFFFFF))
			}
		case 5: // Window Acknowledgement Size
			if len(cs.head) >= 4 {
				r.ackWindow = int64(binary.BigEndian.Uint32(cs.head))
			}
		}
		return cs.typ, cs.ts, cs.length, cs.head, nil
	}
}

// chunkHeader reads one chunk's headers and returns its chunk stream,
// with left set when the chunk starts a message.
func (r *rtmpReader) chunkHeader() (*rtmpChunkStream, error) {
	b0, err := r.br.ReadByte()
	if err != nil {
		return nil, err
	}
	fmtType, csid := b0>>6, uint32(b0&0x3F)
	switch csid {
	case 0, 1:
		var b [2]byte
		if _, err := io.ReadFull(r.br, b[:csid+1]); err != nil {
			return nil, err
		}
		csid = 64 + uint32(b[0]) + uint32(b[1])<<8
	}
	cs := r.streams[csid]
	if cs == nil {
		if fmtType != 0 {
			return nil, fmt.Errorf("rtmp: chunk stream %d starts with a type-%d header", csid, fmtType)
		}
		cs = &rtmpChunkStream{head: make([]byte, 0, rtmpKeep)}
		r.streams[csid] = cs
	}
	h := r.hdr[:[]int{11, 7, 3, 0}[fmtType]]
	if _, err := io.ReadFull(r.br, h); err != nil {
		return nil, err
	}
	var field uint32
	if fmtType < 3 {
		field = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
		cs.ext = field == 0xFFFFFF
	}
	if fmtType < 2 {
		cs.length = int(h[3])<<16 | int(h[4])<<8 | int(h[5])
		cs.typ = h[6]
	}
	if cs.ext {
		var b [4]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return nil, err
		}
		field = binary.BigEndian.Uint32(b[:])
	}
	if cs.left > 0 { // a continuation chunk
		if fmtType != 3 {
			return nil, fmt.Errorf("rtmp: type-%d header inside a message on chunk stream %d", fmtType, csid)
		}
		return cs, nil
	}
	switch fmtType {
	case 0:
		cs.ts, cs.delta = field, 0
	case 1, 2:
		cs.delta = field
		cs.ts += field
	case 3:
		cs.ts += cs.delta
	}
	cs.left, cs.head = cs.length, cs.head[:0]
	return cs, nil
}

// ack sends an Acknowledgement each window of bytes, as players do.
func (r *rtmpReader) ack() error {
	got := r.n.Load()
	if r.ackWindow <= 0 || got-r.acked < r.ackWindow {
		return nil
	}
	r.acked = got
	m := []byte{2, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(m[12:], uint32(got))
	_, err := r.conn.Write(m)
	return err
}

// readRTMP reads r until it fails (the run closes it), feeding each media
// message to st as an FLV tag head and calling onTag after each.
func readRTMP(r *rtmpReader, st *flvStats, onTag func(flvtag.Tag)) error {
	st.HeaderOK = true // RTMP has no FLV file header
	for {
		typ, ts, length, head, err := r.next()
		if err != nil {
			return err
		}
		switch typ {
		case flvtag.TypeAudio, flvtag.TypeVideo, flvtag.TypeScript:
		default:
			continue
		}
		tag := flvtag.Tag{Type: typ, Timestamp: ts, Body: head, Size: length}
		if err := st.observe(tag); err != nil {
			return err
		}
		onTag(tag)
	}
}

// defaultPlayURL is rtmp://HOST:1935/live/ROOM for the --url host.
func defaultPlayURL(base, room string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("bench: --url: %w", err)
	}
	return "rtmp://" + u.Hostname() + ":1935/live/" + url.PathEscape(room), nil
}
