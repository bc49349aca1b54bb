package message

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Seal computes and caches m's JSON encoding. After Seal the message must be
// treated as immutable: it is shared by every reader of the room. The
// timeline seals a message once its seq is assigned.
func (m *Message) Seal() { m.enc = m.AppendJSON(make([]byte, 0, 160+len(m.Text))) }

// Encoded returns the JSON encoding of m, sealing it first if needed. It is
// only safe for concurrent use once m has been sealed.
func (m *Message) Encoded() []byte {
	if m.enc == nil {
		m.Seal()
	}
	return m.enc
}

// AppendJSON appends m's JSON encoding to b. It is hand-written because
// messages are encoded on the hot path; the output is identical in meaning to
// encoding/json's, with <, > and & escaped so it is safe inside HTML.
func (m *Message) AppendJSON(b []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, m.Seq, 10)
	b = append(b, `,"id":`...)
	b = AppendString(b, m.ID)
	b = append(b, `,"room":`...)
	b = AppendString(b, m.Room)
	b = append(b, `,"kind":`...)
	b = AppendString(b, string(m.Kind))
	b = append(b, `,"scope":`...)
	b = AppendString(b, string(m.Scope))
	if m.To != "" {
		b = append(b, `,"to":`...)
		b = AppendString(b, m.To)
	}
	if m.User != nil {
		b = append(b, `,"user":{"id":`...)
		b = AppendString(b, m.User.ID)
		b = append(b, `,"name":`...)
		b = AppendString(b, m.User.Name)
		b = append(b, `,"level":`...)
		b = strconv.AppendInt(b, int64(m.User.Level), 10)
		b = append(b, '}')
	}
	if m.Text != "" {
		b = append(b, `,"text":`...)
		b = AppendString(b, m.Text)
	}
	if m.Gift != nil {
		b = append(b, `,"gift":{"id":`...)
		b = AppendString(b, m.Gift.ID)
		if m.Gift.Name != "" {
			b = append(b, `,"name":`...)
			b = AppendString(b, m.Gift.Name)
		}
		b = append(b, `,"value_cents":`...)
		b = strconv.AppendInt(b, m.Gift.ValueCents, 10)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(m.Gift.Count), 10)
		b = append(b, '}')
	}
	b = append(b, `,"priority":`...)
	b = strconv.AppendInt(b, int64(m.Priority), 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, m.TS, 10)
	if m.Ref != "" {
		b = append(b, `,"ref":`...)
		b = AppendString(b, m.Ref)
	}
	if m.VideoMS != nil {
		b = append(b, `,"video_ms":`...)
		b = strconv.AppendInt(b, *m.VideoMS, 10)
	}
	if len(m.Data) > 0 && json.Valid(m.Data) {
		b = append(b, `,"data":`...)
		b = append(b, m.Data...)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// <, >, &, U+2028 and U+2029 are escaped.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
