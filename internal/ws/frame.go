package ws

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// Opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes used by this package (RFC 6455 §7.4 plus our 4xxx codes).
const (
	CloseNormal           = 1000
	CloseGoingAway        = 1001
	CloseProtocolError    = 1002
	CloseNoStatus         = 1005 // never sent; reported when the peer's close frame had no code
	CloseAbnormal         = 1006 // never sent; reported when the TCP connection ended without a close frame
	CloseInvalidPayload   = 1007
	ClosePolicyViolation  = 1008
	CloseMessageTooBig    = 1009
	CloseInternalError    = 1011
	CloseHeartbeatTimeout = 4000
	CloseSlowConsumer     = 4008
)

// maxHeaderLen is the longest client frame header: 2 + 8 (length) + 4 (mask).
const maxHeaderLen = 14

// maxControlPayload is the RFC limit for control frame payloads.
const maxControlPayload = 125

// Frame-level protocol errors. errTooBig maps to close 1009, the others to 1002.
var (
	errReservedBits  = errors.New("reserved bits set")
	errBadOpcode     = errors.New("unknown opcode")
	errNotMasked     = errors.New("client frame not masked")
	errControlFrag   = errors.New("fragmented control frame")
	errControlLength = errors.New("control frame longer than 125 bytes")
	errBadLength     = errors.New("invalid payload length")
	errTooBig        = errors.New("message too big")
)

// frame is one parsed frame. payload aliases the parser's input and is still
// masked; call unmask before reading it.
type frame struct {
	fin     bool
	rsv1    bool
	op      byte
	mask    [4]byte
	payload []byte
}

func (f *frame) control() bool { return f.op&0x8 != 0 }

// parseFrame parses the client frame at the start of b. It is a pure function
// of its arguments.
//
// If b holds a whole frame it returns the frame and n, the number of bytes
// the frame occupies (n > 0). If b is too short it returns n == 0 and want,
// the total number of bytes known so far to be needed (want > len(b)); call
// again with at least that many bytes. An error means the stream is invalid
// and the connection must be failed; errTooBig is returned as soon as the
// header announces a payload over maxPayload, before the payload arrives.
//
// allowRSV1 is true when permessage-deflate was negotiated; then RSV1 is
// legal on the first frame of a data message.
func parseFrame(b []byte, maxPayload int, allowRSV1 bool) (f frame, n, want int, err error) {
	if len(b) < 2 {
		return f, 0, 2, nil
	}
	b0, b1 := b[0], b[1]
	f.fin = b0&0x80 != 0
	f.rsv1 = b0&0x40 != 0
	f.op = b0 & 0x0f
	if b0&0x30 != 0 {
		return f, 0, 0, errReservedBits
	}
	switch f.op {
	case opContinuation, opText, opBinary:
		if f.rsv1 && (!allowRSV1 || f.op == opContinuation) {
			return f, 0, 0, errReservedBits
		}
	case opClose, opPing, opPong:
		if f.rsv1 {
			return f, 0, 0, errReservedBits
		}
		if !f.fin {
			return f, 0, 0, errControlFrag
		}
	default:
		return f, 0, 0, errBadOpcode
	}
	if b1&0x80 == 0 {
		return f, 0, 0, errNotMasked
	}
	hl := 2 + 4
	plen := uint64(b1 & 0x7f)
	switch plen {
	case 126:
		hl += 2
	case 127:
		hl += 8
	}
	if f.control() && plen > maxControlPayload {
		return f, 0, 0, errControlLength
	}
	if len(b) < hl {
		return f, 0, hl, nil
	}
	switch plen {
	case 126:
		plen = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		plen = binary.BigEndian.Uint64(b[2:10])
		if plen>>63 != 0 {
			return f, 0, 0, errBadLength
		}
	}
	if plen > uint64(maxPayload) {
		return f, 0, 0, errTooBig
	}
	copy(f.mask[:], b[hl-4:hl])
	total := hl + int(plen)
	if len(b) < total {
		return f, 0, total, nil
	}
	f.payload = b[hl:total:total]
	return f, total, total, nil
}

// unmask XORs b in place with the mask, starting at mask position pos, and
// returns the next mask position.
func unmask(b []byte, mask [4]byte, pos int) int {
	if len(b) == 0 {
		return pos
	}
	// Rotate the key so the word-wide loop can start at b[0].
	var k [4]byte
	for i := range k {
		k[i] = mask[(pos+i)&3]
	}
	key32 := binary.LittleEndian.Uint32(k[:])
	key64 := uint64(key32) | uint64(key32)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], v^key64)
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&3]
	}
	return (pos + len(b)) & 3
}

// serverHeaderLen is the length of an unmasked server frame header for a
// payload of n bytes.
func serverHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// putServerHeader writes an unmasked frame header into b (which must be at
// least serverHeaderLen(n) long) and returns the header length.
func putServerHeader(b []byte, op byte, rsv1 bool, n int) int {
	b0 := 0x80 | op
	if rsv1 {
		b0 |= 0x40
	}
	b[0] = b0
	switch {
	case n <= 125:
		b[1] = byte(n)
		return 2
	case n <= 0xffff:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		return 4
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		return 10
	}
}

// buildFrame returns a new slice holding one complete, unfragmented server
// frame.
func buildFrame(op byte, rsv1 bool, payload []byte) []byte {
	b := make([]byte, serverHeaderLen(len(payload))+len(payload))
	hl := putServerHeader(b, op, rsv1, len(payload))
	copy(b[hl:], payload)
	return b
}

// closePayload builds a close frame body: the code and a reason truncated to
// fit the 125-byte control frame limit without splitting a UTF-8 sequence.
func closePayload(code int, reason string) []byte {
	if code == 0 || code == CloseNoStatus || code == CloseAbnormal {
		return nil
	}
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	b := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	copy(b[2:], reason)
	return b
}

// parseClosePayload validates a received close frame body (RFC 6455 §5.5.1,
// §7.4). It returns CloseNoStatus for an empty body. protoErr is the close
// code to fail the connection with (0 when the body is valid).
func parseClosePayload(p []byte) (code int, reason string, protoErr int) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, "", 0
	case len(p) == 1:
		return 0, "", CloseProtocolError
	}
	code = int(binary.BigEndian.Uint16(p))
	if !validReceivedCloseCode(code) {
		return 0, "", CloseProtocolError
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", CloseInvalidPayload
	}
	return code, string(p[2:]), 0
}

func validReceivedCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
