package ws

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseFrame(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	huge := bytes.Repeat([]byte("y"), 70000)
	tests := []struct {
		name    string
		in      []byte
		max     int
		rsv1    bool
		wantErr error
		op      byte
		fin     bool
		payload []byte
	}{
		{name: "text", in: clientFrame(true, false, opText, []byte("hello")), max: 1000, op: opText, fin: true, payload: []byte("hello")},
		{name: "empty binary", in: clientFrame(true, false, opBinary, nil), max: 1000, op: opBinary, fin: true, payload: []byte{}},
		{name: "16-bit length", in: clientFrame(false, false, opBinary, long), max: 1000, op: opBinary, payload: long},
		{name: "64-bit length", in: clientFrame(true, false, opBinary, huge), max: 1 << 20, op: opBinary, fin: true, payload: huge},
		{name: "ping", in: clientFrame(true, false, opPing, []byte("p")), max: 10, op: opPing, fin: true, payload: []byte("p")},
		{name: "too big", in: clientFrame(true, false, opText, long), max: 299, wantErr: errTooBig},
		{name: "rsv1 without deflate", in: clientFrame(true, true, opText, []byte("a")), max: 10, wantErr: errReservedBits},
		{name: "rsv1 with deflate", in: clientFrame(true, true, opText, []byte("a")), max: 10, rsv1: true, op: opText, fin: true, payload: []byte("a")},
		{name: "rsv1 on continuation", in: clientFrame(true, true, opContinuation, []byte("a")), max: 10, rsv1: true, wantErr: errReservedBits},
		{name: "rsv1 on ping", in: clientFrame(true, true, opPing, nil), max: 10, rsv1: true, wantErr: errReservedBits},
		{name: "rsv2", in: []byte{0x80 | 0x20 | opText, 0x80, 0, 0, 0, 0}, max: 10, wantErr: errReservedBits},
		{name: "bad opcode", in: clientFrame(true, false, 0x3, nil), max: 10, wantErr: errBadOpcode},
		{name: "unmasked", in: []byte{0x81, 0x01, 'a'}, max: 10, wantErr: errNotMasked},
		{name: "fragmented ping", in: clientFrame(false, false, opPing, nil), max: 10, wantErr: errControlFrag},
		{name: "long close", in: clientFrame(true, false, opClose, long[:126]), max: 1000, wantErr: errControlLength},
		{name: "length msb", in: []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, max: 10, wantErr: errBadLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, _, err := parseFrame(tt.in, tt.max, tt.rsv1)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || n != len(tt.in) {
				t.Fatalf("n=%d err=%v, want n=%d", n, err, len(tt.in))
			}
			unmask(f.payload, f.mask, 0)
			if f.op != tt.op || f.fin != tt.fin || !bytes.Equal(f.payload, tt.payload) {
				t.Fatalf("got op=%x fin=%v payload=%q", f.op, f.fin, f.payload)
			}
			// Every strict prefix asks for more, with a growing estimate.
			prevWant := 0
			for i := range len(tt.in) {
				_, n, want, err := parseFrame(tt.in[:i], tt.max, tt.rsv1)
				if err != nil || n != 0 || want <= i || want > len(tt.in) || want < prevWant {
					t.Fatalf("prefix %d: n=%d want=%d err=%v", i, n, want, err)
				}
				prevWant = want
			}
		})
	}
}

func TestUnmask(t *testing.T) {
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	for n := range 40 {
		for pos := range 4 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := bytes.Clone(b)
			for i := range want {
				want[i] ^= mask[(pos+i)&3]
			}
			if next := unmask(b, mask, pos); next != (pos+n)&3 {
				t.Fatalf("next pos %d", next)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("n=%d pos=%d: %x want %x", n, pos, b, want)
			}
		}
	}
}

func TestServerHeader(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		f := buildFrame(opBinary, false, make([]byte, n))
		if len(f) != serverHeaderLen(n)+n {
			t.Fatalf("n=%d: len %d", n, len(f))
		}
		// Re-parse as if masked with a zero key.
		hl := serverHeaderLen(n)
		m := append(append(append([]byte{}, f[:hl]...), 0, 0, 0, 0), f[hl:]...)
		m[1] |= 0x80
		fr, got, _, err := parseFrame(m, 1<<21, false)
		if err != nil || got != len(m) || len(fr.payload) != n || !fr.fin || fr.op != opBinary {
			t.Fatalf("n=%d: reparse n=%d err=%v", n, got, err)
		}
	}
}

func TestClosePayload(t *testing.T) {
	if p := closePayload(CloseNoStatus, "x"); p != nil {
		t.Fatalf("1005 must send an empty body, got %x", p)
	}
	long := bytes.Repeat([]byte("é"), 100) // 200 bytes
	p := closePayload(4001, string(long))
	if len(p) > maxControlPayload {
		t.Fatalf("close payload %d bytes", len(p))
	}
	code, reason, perr := parseClosePayload(p)
	if perr != 0 || code != 4001 || len(reason) != 122 {
		t.Fatalf("code=%d reason len=%d perr=%d", code, len(reason), perr)
	}
	for _, tc := range []struct {
		in   []byte
		perr int
	}{
		{[]byte{3}, CloseProtocolError},
		{[]byte{0x03, 0xed}, CloseProtocolError},        // 1005 may not be sent
		{[]byte{0x03, 0xe8, 0xff}, CloseInvalidPayload}, // bad UTF-8 reason
		{[]byte{0x0b, 0xb8, 'o', 'k'}, 0},               // 3000
		{[]byte{0x13, 0x88}, CloseProtocolError},        // 5000
		{[]byte{0x03, 0xf3}, 0},                         // 1011
		{[]byte{0x03, 0xf8}, CloseProtocolError},        // 1016
	} {
		if _, _, perr := parseClosePayload(tc.in); perr != tc.perr {
			t.Errorf("%x: perr %d, want %d", tc.in, perr, tc.perr)
		}
	}
}

// FuzzParse checks parseFrame never panics, never reads out of bounds, and
// is consistent: a complete frame parses the same from any buffer that
// starts with it, and every shorter prefix asks for more bytes.
func FuzzParse(f *testing.F) {
	f.Add(clientFrame(true, false, opText, []byte("hello")), 100, false)
	f.Add(clientFrame(false, true, opBinary, bytes.Repeat([]byte("z"), 200)), 1000, true)
	f.Add(clientFrame(true, false, opClose, []byte{3, 232, 'b', 'y', 'e'}), 100, false)
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, 1<<20, false)
	f.Fuzz(func(t *testing.T, data []byte, max int, rsv1 bool) {
		if max < 0 || max > 1<<20 {
			return
		}
		fr, n, want, err := parseFrame(data, max, rsv1)
		if err != nil {
			if n != 0 {
				t.Fatalf("error with n=%d", n)
			}
			return
		}
		if n == 0 {
			if want <= len(data) {
				t.Fatalf("incomplete but want=%d <= len=%d", want, len(data))
			}
			return
		}
		if n > len(data) || want != n {
			t.Fatalf("n=%d want=%d len=%d", n, want, len(data))
		}
		if len(fr.payload) > max {
			t.Fatalf("payload %d > max %d", len(fr.payload), max)
		}
		if fr.control() && (len(fr.payload) > maxControlPayload || !fr.fin) {
			t.Fatalf("bad control frame accepted")
		}
		if hl := n - len(fr.payload); hl < 6 || hl > maxHeaderLen {
			t.Fatalf("header length %d", hl)
		}
		fr2, n2, _, err2 := parseFrame(data[:n], max, rsv1)
		if err2 != nil || n2 != n || !bytes.Equal(fr2.payload, fr.payload) || fr2.mask != fr.mask {
			t.Fatalf("reparse differs")
		}
		for i := 0; i < n; i += 1 + i/8 {
			_, pn, pwant, perr := parseFrame(data[:i], max, rsv1)
			if perr != nil || pn != 0 || pwant <= i || pwant > n {
				t.Fatalf("prefix %d of %d: n=%d want=%d err=%v", i, n, pn, pwant, perr)
			}
		}
		p := bytes.Clone(fr.payload)
		unmask(p, fr.mask, 0)
		unmask(p, fr.mask, 0)
		if !bytes.Equal(p, fr.payload) {
			t.Fatalf("unmask is not an involution")
		}
	})
}

func BenchmarkParseFrame(b *testing.B) {
	frame := clientFrame(true, false, opText, bytes.Repeat([]byte("a"), 120))
	buf := make([]byte, len(frame))
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		copy(buf, frame)
		f, n, _, err := parseFrame(buf, 1<<14, false)
		if err != nil || n != len(buf) {
			b.Fatal(n, err)
		}
		unmask(f.payload, f.mask, 0)
	}
}

func BenchmarkNewPrepared(b *testing.B) {
	payload := bytes.Repeat([]byte(`{"type":"chat","text":"hello world"},`), 6)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		_ = NewPrepared(payload, true)
	}
}

func BenchmarkPreparedCompressed(b *testing.B) {
	payload := bytes.Repeat([]byte(`{"type":"chat","text":"hello world"},`), 6)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		_ = NewPrepared(payload, true).compressedFrame()
	}
}
