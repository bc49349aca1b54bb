package gateway

import (
	"unsafe"

	"roomcast/internal/ws"
)

// The JSON answer and grab frames (issues 12 and 13) are the hot client
// frames: one per answer or tap. They are decoded here without
// encoding/json and without allocating. The fast decoder takes a strict
// subset of JSON — one flat object with exactly-spelled keys among type,
// id, activity, n, option, rain and taps; strings without escapes; integers
// without fraction or exponent — and decodes it to what json.Unmarshal
// would. Anything else (another frame type, an escape, an unknown or
// differently cased key, null, a float) goes to encoding/json, so the
// answers to every frame stay what they were.

// fastFrame is an answer or grab frame as the fast decoder reads it. Its
// strings alias the message, which the ws package never reuses.
type fastFrame struct {
	typ, id, activity                 string
	n, option, rain, taps             int
	hasN, hasOption, hasRain, hasTaps bool
}

// onFastFrame handles data if it is an answer or grab frame the fast
// decoder takes, and reports whether it did.
func (g *WSHandler) onFastFrame(c *ws.Conn, st *wsState, data []byte) bool {
	var f fastFrame
	if !f.parse(data) {
		return false
	}
	if len(f.id) > 64 {
		f.id = f.id[:64]
	}
	switch f.typ {
	case "answer":
		g.frames.answer.Inc()
		var n, option *int
		if f.hasN {
			n = &f.n
		}
		if f.hasOption {
			option = &f.option
		}
		g.onAnswer(c, st, f.id, f.activity, n, option)
	case "grab":
		g.frames.grab.Inc()
		var rain, taps *int
		if f.hasRain {
			rain = &f.rain
		}
		if f.hasTaps {
			taps = &f.taps
		}
		g.onGrab(c, st, f.id, f.activity, rain, taps)
	default:
		return false
	}
	return true
}

// parse decodes b into f; false means "not for the fast path" (nothing
// about b's validity).
func (f *fastFrame) parse(b []byte) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return false // {}: no type; let encoding/json answer it
	}
	for {
		key, j, ok := scanString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		if i, ok = f.value(b, i, key); !ok {
			return false
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
			continue
		case '}':
			return skipWS(b, i+1) == len(b) && (f.typ == "answer" || f.typ == "grab")
		default:
			return false
		}
	}
}

// value reads key's value at b[i] into f and returns the index after it.
func (f *fastFrame) value(b []byte, i int, key string) (int, bool) {
	var str *string
	var num *int
	var has *bool
	switch key {
	case "type":
		str = &f.typ
	case "id":
		str = &f.id
	case "activity":
		str = &f.activity
	case "n":
		num, has = &f.n, &f.hasN
	case "option":
		num, has = &f.option, &f.hasOption
	case "rain":
		num, has = &f.rain, &f.hasRain
	case "taps":
		num, has = &f.taps, &f.hasTaps
	default:
		return 0, false
	}
	var ok bool
	if str != nil {
		*str, i, ok = scanString(b, i)
	} else {
		*num, i, ok = scanInt(b, i)
		*has = ok
	}
	return i, ok
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads a JSON string without escapes or control characters
// at b[i] and returns it (aliasing b) and the index after it. The message
// is valid UTF-8 already (the ws package checks text messages).
func scanString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	start := i + 1
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			if j == start {
				return "", j + 1, true
			}
			return unsafe.String(&b[start], j-start), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

// scanInt reads a JSON integer (no fraction, no exponent, at most 9
// digits) at b[i].
func scanInt(b []byte, i int) (int, int, bool) {
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	v := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 10 {
		v = v*10 + int(b[i]-'0')
		i++
	}
	n := i - start
	if n == 0 || n > 9 || (n > 1 && b[start] == '0') {
		return 0, 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, 0, false
	}
	if neg {
		v = -v
	}
	return v, i, true
}
