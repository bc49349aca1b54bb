package bench

import (
	"bytes"
	"errors"
)

// Frame types a scanned frame can have (the "type" of a WebSocket frame; poll
// answers and HTTP replies have none and scan as frameNone).
const (
	frameNone = iota
	frameBatch
	frameOnline
	frameLikes
	frameAck
	frameError
	framePong
	frameOther
)

// benchMark prefixes the text of every message the bench sends; the send
// time in Unix nanoseconds follows, so a receiver computes send→receive
// latency from the frame alone.
const benchMark = "bench:"

// msgInfo is what the bench needs of one message: its seq (0 when absent,
// as for user-scoped messages) and, for bench messages, the send time.
type msgInfo struct {
	seq  uint64
	sent int64
}

// frameInfo is the result of scanning one JSON frame or answer. Byte slices
// point into the scanned buffer and are only valid until it is reused.
type frameInfo struct {
	typ          int
	id           []byte // top-level "id" (acks, errors, send answers)
	code         []byte // "error":{"code":...}
	seq          uint64 // top-level "seq" (acks, send answers)
	hasSeq       bool
	cursor       uint64
	hasCursor    bool
	pollAfterMs  int64
	retryAfterMs int64
	reset        bool
	msgs         []msgInfo // reused between scans
}

func (f *frameInfo) clear() {
	msgs := f.msgs[:0]
	*f = frameInfo{msgs: msgs}
}

var errScan = errors.New("malformed JSON")

// Scanner contexts, one per open container.
const (
	ctxOther = iota
	ctxTop
	ctxMessages
	ctxMessage
	ctxError
)

const maxScanDepth = 64

// scanFrame extracts the fields the bench checks from a roomcast JSON frame
// without decoding it: a single pass that jumps from quote to quote with
// bytes.IndexByte, tracks nesting, and reads only the keys it knows (top
// level: type, id, seq, cursor, poll_after_ms, retry_after_ms, reset; in
// "messages": seq and text; in "error": code). It never allocates once
// f.msgs has grown, does not depend on key order, and ignores look-alike keys
// inside strings or nested objects. It does not validate JSON fully.
func scanFrame(b []byte, f *frameInfo) error {
	f.clear()
	var stack [maxScanDepth]uint8
	depth := 0
	var key []byte // the key whose value comes next, nil in arrays
	i := 0
	for i < len(b) {
		c := b[i]
		switch c {
		case ' ', '\t', '\r', '\n', ',':
			i++
			continue
		case '}', ']':
			if depth == 0 {
				return errScan
			}
			depth--
			key = nil
			i++
			continue
		}
		cur := ctxOther
		if depth > 0 {
			cur = int(stack[depth-1])
		}
		var err error
		if depth > 0 && key == nil && isObjectCtx(stack[depth-1]) {
			// A key is expected.
			if key, i, err = scanKey(b, i); err != nil {
				return err
			}
			continue
		}
		// A value, for key (nil in arrays and at the top).
		k := key
		key = nil
		switch {
		case c == '{' || c == '[':
			if depth == maxScanDepth {
				return errScan
			}
			stack[depth] = f.open(c, depth, cur, k)
			depth++
			i++
		case c == '"':
			i, err = f.stringValue(b, i, cur, k)
		default:
			i, err = f.literalValue(b, i, cur, k)
		}
		if err != nil {
			return err
		}
	}
	if depth != 0 {
		return errScan
	}
	return nil
}

// scanKey reads an object key and its colon at b[i]; it returns the key and
// the index of its value.
func scanKey(b []byte, i int) (key []byte, next int, err error) {
	if b[i] != '"' {
		return nil, 0, errScan
	}
	key, next, err = scanString(b, i)
	if err != nil {
		return nil, 0, err
	}
	next = skipSpace(b, next)
	if next >= len(b) || b[next] != ':' {
		return nil, 0, errScan
	}
	return key, next + 1, nil
}

// open returns the context of a container c opened at depth inside cur as
// the value of key k.
func (f *frameInfo) open(c byte, depth, cur int, k []byte) uint8 {
	next := ctxOther
	switch {
	case depth == 0 && c == '{':
		next = ctxTop
	case cur == ctxTop && c == '[' && string(k) == "messages":
		next = ctxMessages
	case cur == ctxTop && c == '{' && string(k) == "error":
		next = ctxError
	case cur == ctxMessages && c == '{':
		next = ctxMessage
		f.msgs = append(f.msgs, msgInfo{})
	}
	if c == '{' && next == ctxOther {
		next = ctxOtherObject
	}
	return uint8(next)
}

// stringValue reads the string value at b[i] of key k in context cur.
func (f *frameInfo) stringValue(b []byte, i, cur int, k []byte) (int, error) {
	s, next, err := scanString(b, i)
	if err != nil {
		return 0, err
	}
	switch cur {
	case ctxTop:
		switch string(k) {
		case "type":
			f.typ = frameType(s)
		case "id":
			f.id = s
		}
	case ctxMessage:
		if string(k) == "text" && bytes.HasPrefix(s, []byte(benchMark)) {
			if v, ok := parseUint(s[len(benchMark):]); ok {
				f.msgs[len(f.msgs)-1].sent = int64(v)
			}
		}
	case ctxError:
		if string(k) == "code" {
			f.code = s
		}
	}
	return next, nil
}

// literalValue reads the number or literal at b[i] (up to the next
// delimiter) of key k in context cur.
func (f *frameInfo) literalValue(b []byte, i, cur int, k []byte) (int, error) {
	j := i
	for j < len(b) && !isDelim(b[j]) {
		j++
	}
	if j == i {
		return 0, errScan
	}
	tok := b[i:j]
	switch cur {
	case ctxTop:
		switch string(k) {
		case "seq":
			f.seq, f.hasSeq = parseUint(tok)
		case "cursor":
			f.cursor, f.hasCursor = parseUint(tok)
		case "poll_after_ms":
			v, _ := parseUint(tok)
			f.pollAfterMs = int64(v)
		case "retry_after_ms":
			v, _ := parseUint(tok)
			f.retryAfterMs = int64(v)
		case "reset":
			f.reset = string(tok) == "true"
		}
	case ctxMessage:
		if string(k) == "seq" {
			f.msgs[len(f.msgs)-1].seq, _ = parseUint(tok)
		}
	}
	return j, nil
}

// ctxOtherObject marks an object we do not look into (its keys are still
// parsed as keys, so the scanner stays in step).
const ctxOtherObject = 5

func isObjectCtx(c uint8) bool {
	return c == ctxTop || c == ctxMessage || c == ctxError || c == ctxOtherObject
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\r', '\n', ':', '"', '{', '[':
		return true
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// scanString returns the raw (still escaped) contents of the string starting
// at b[i] == '"' and the index just past its closing quote.
func scanString(b []byte, i int) (s []byte, next int, err error) {
	j := i + 1
	// Keys and most values are short: a plain loop beats IndexByte's call.
	for end := min(len(b), j+16); j < end; j++ {
		switch b[j] {
		case '"':
			return b[i+1 : j], j + 1, nil
		case '\\':
			j++
		}
	}
	for j < len(b) {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return nil, 0, errScan
		}
		j += k
		bs := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return b[i+1 : j], j + 1, nil
		}
		j++
	}
	return nil, 0, errScan
}

// parseUint parses a leading run of decimal digits; ok is false when there
// is none or it overflows.
func parseUint[T []byte | string](b T) (v uint64, ok bool) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return v, i > 0
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, len(b) > 0
}

func frameType(s []byte) int {
	switch string(s) {
	case "batch":
		return frameBatch
	case "online":
		return frameOnline
	case "likes":
		return frameLikes
	case "ack":
		return frameAck
	case "error":
		return frameError
	case "pong":
		return framePong
	}
	return frameOther
}
