package ws

import (
	"encoding/binary"
	"sync"
)

// Prepared is one or more messages framed once and sent to many
// connections. It is immutable after creation and safe for concurrent use;
// connections queue references to its bytes, never copies.
type Prepared struct {
	frame []byte // header + payload of each message, back to back, uncompressed

	once   sync.Once
	cframe []byte // permessage-deflate frames, or frame when not smaller
}

// minDeflate is the payload size below which compression is not tried.
const minDeflate = 64

func dataOp(text bool) byte {
	if text {
		return opText
	}
	return opBinary
}

// NewPrepared frames payload (copied) as one text or binary message.
func NewPrepared(payload []byte, text bool) *Prepared {
	return &Prepared{frame: buildFrame(dataOp(text), false, payload)}
}

// NewPreparedBatch frames each payload (copied) as its own text or binary
// message, back to back in one buffer, so one Send delivers them all with a
// single write. The client sees len(payloads) separate messages. Use it to
// flush a batch of queued room messages at once: the syscall, not the
// framing, is the cost of a delivery.
func NewPreparedBatch(payloads [][]byte, text bool) *Prepared {
	n := 0
	for _, p := range payloads {
		n += serverHeaderLen(len(p)) + len(p)
	}
	b := make([]byte, n)
	off := 0
	for _, p := range payloads {
		off += putServerHeader(b[off:], dataOp(text), false, len(p))
		off += copy(b[off:], p)
	}
	return &Prepared{frame: b}
}

// Len is the size of the uncompressed frames on the wire.
func (p *Prepared) Len() int { return len(p.frame) }

// compressedFrame returns the frames for compressed connections, computing
// them the first time they are needed.
func (p *Prepared) compressedFrame() []byte {
	p.once.Do(p.compress)
	return p.cframe
}

// compress deflates each message of p.frame on its own (no context
// takeover), keeping a message uncompressed where deflate does not shrink it.
func (p *Prepared) compress() {
	out := make([]byte, 0, len(p.frame)/2+16)
	for rest := p.frame; len(rest) > 0; {
		op, hl, n := splitServerFrame(rest)
		payload := rest[hl : hl+n]
		whole := rest[:hl+n]
		rest = rest[hl+n:]
		if n < minDeflate {
			out = append(out, whole...)
			continue
		}
		d := deflateMessage(payload)
		if serverHeaderLen(len(d))+len(d) >= len(whole) {
			out = append(out, whole...)
			continue
		}
		var h [10]byte
		out = append(out, h[:putServerHeader(h[:], op, true, len(d))]...)
		out = append(out, d...)
	}
	if len(out) >= len(p.frame) {
		p.cframe = p.frame
		return
	}
	p.cframe = out
}

// splitServerFrame decodes a header written by putServerHeader.
func splitServerFrame(b []byte) (op byte, hl, n int) {
	op = b[0] & 0x0f
	switch l := b[1] & 0x7f; l {
	case 126:
		return op, 4, int(binary.BigEndian.Uint16(b[2:]))
	case 127:
		return op, 10, int(binary.BigEndian.Uint64(b[2:]))
	default:
		return op, 2, int(l)
	}
}
