package bench

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"

	"roomcast/internal/media/flvtag"
)

// flvTag is one tag of a test stream, raw (header, body, previous size).
type flvTag struct {
	typ  byte
	ts   uint32
	key  bool // video keyframe
	seq  bool // AVC or AAC sequence header
	raw  []byte
	body []byte
}

// splitFLV cuts a whole FLV file into its header (with PreviousTagSize0) and
// tags, independently of readFLV.
func splitFLV(t testing.TB, b []byte) (head []byte, tags []flvTag) {
	t.Helper()
	off := int(binary.BigEndian.Uint32(b[5:9]))
	head = b[:off+4]
	for p := off + 4; p+11 <= len(b); {
		size := int(b[p+1])<<16 | int(b[p+2])<<8 | int(b[p+3])
		end := p + 11 + size + 4
		if end > len(b) {
			t.Fatalf("truncated tag at %d", p)
		}
		tg := flvTag{typ: b[p] & 0x1f, ts: uint32(b[p+7])<<24 | uint32(b[p+4])<<16 | uint32(b[p+5])<<8 | uint32(b[p+6]),
			raw: b[p:end], body: b[p+11 : p+11+size]}
		switch {
		case tg.typ == 9 && size > 1:
			tg.seq = tg.body[1] == 0
			tg.key = tg.body[0]>>4 == 1 && tg.body[1] == 1
		case tg.typ == 8 && size > 1:
			tg.seq = tg.body[0]>>4 == 10 && tg.body[1] == 0
		}
		tags = append(tags, tg)
		p = end
	}
	return head, tags
}

// makeTag builds a raw tag with a correct PreviousTagSize.
func makeTag(typ byte, ts uint32, body []byte) []byte {
	b := []byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body)), byte(ts >> 16), byte(ts >> 8), byte(ts), byte(ts >> 24), 0, 0, 0}
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, uint32(len(body)+11))
}

func readTestFLV(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/test.flv")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// statsOf reads stream through readFLV as a viewer would.
func statsOf(t testing.TB, r io.Reader) flvStats {
	t.Helper()
	var st flvStats
	var n atomic.Int64
	if err := readFLV(r, 32<<10, &n, &st, func(flvtag.Tag) {}); err != io.EOF {
		t.Fatalf("readFLV ended with %v", err)
	}
	return st
}

// pieces returns b in random pieces, small or large.
type pieces struct {
	b     []byte
	r     *rand.Rand
	small bool
}

func (p *pieces) Read(out []byte) (int, error) {
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	n := 1 + p.r.IntN(3000)
	if p.small {
		n = 1 + p.r.IntN(12)
	}
	n = copy(out[:min(n, len(out))], p.b)
	p.b = p.b[n:]
	return n, nil
}

func TestFLVStatsFile(t *testing.T) {
	b := readTestFLV(t)
	s := statsOf(t, bytes.NewReader(b))
	if !s.HeaderOK || s.Corrupt != "" || s.Bytes != int64(len(b)) {
		t.Fatalf("stats %+v", s)
	}
	if !s.FirstVideoSeqHdr || !s.FirstFrameKey || !s.KeyframeSeen || !s.FirstAudioSeqHdr || len(s.violations()) != 0 {
		t.Fatalf("stream start %+v, violations %v", s, s.violations())
	}
	_, tags := splitFLV(t, b)
	var video, audio, keys int
	for _, tg := range tags {
		switch tg.typ {
		case 9:
			video++
			if tg.key {
				keys++
			}
		case 8:
			audio++
		}
	}
	if s.Video != video || s.Audio != audio || s.Keyframes != keys || s.Tags != len(tags) || s.Script != 1 {
		t.Fatalf("counted %d video %d audio %d keys %d tags; want %d %d %d %d", s.Video, s.Audio, s.Keyframes, s.Tags, video, audio, keys, len(tags))
	}
	// 4 s of 320x240 testsrc at ~250 kbit/s.
	if k := s.contentKbps(); k < 100 || k > 1000 || s.TSMax-s.TSFirstKey < 3500 {
		t.Fatalf("content %.0f kbit/s over %d ms", k, s.TSMax-s.TSFirstKey)
	}
	// Arriving in any pieces, the same result.
	r := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < 20; round++ {
		if q := statsOf(t, &pieces{b: b, r: r, small: round%2 == 0}); q != s {
			t.Fatalf("split reading differs:\n%+v\n%+v", q, s)
		}
	}
}

func TestFLVStatsViolations(t *testing.T) {
	b := readTestFLV(t)
	head, tags := splitFLV(t, b)
	build := func(keep func(i int, tg flvTag) bool) []byte {
		out := bytes.Clone(head)
		for i, tg := range tags {
			if keep(i, tg) {
				out = append(out, tg.raw...)
			}
		}
		return out
	}
	firstKey := -1
	for i, tg := range tags {
		if tg.key {
			firstKey = i
			break
		}
	}
	cases := map[string][]byte{
		"first video tag not a sequence header": build(func(i int, tg flvTag) bool { return !(tg.typ == 9 && tg.seq) }),
		"first video frame not a keyframe":      build(func(i int, tg flvTag) bool { return !(tg.typ == 9 && i == firstKey) }),
	}
	for want, stream := range cases {
		st := statsOf(t, bytes.NewReader(stream))
		if v := st.violations(); len(v) != 1 || v[0] != want {
			t.Errorf("want [%s], got %v", want, v)
		}
	}
	bad := []byte("NOTFLV\x00\x00\x00\x09\x00\x00\x00\x00")
	if st := statsOf(t, bytes.NewReader(bad)); len(st.violations()) == 0 || st.HeaderOK || st.Bytes != int64(len(bad)) {
		t.Errorf("bad header not reported: %+v", st)
	}
	// A bad tag type: corrupt, and nothing after it is parsed (but counted).
	corrupt := append(append(bytes.Clone(head), 0x77, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 12), b...)
	if st := statsOf(t, bytes.NewReader(corrupt)); st.Corrupt == "" || st.Tags != 0 || st.Bytes != int64(len(corrupt)) {
		t.Errorf("bad tag type: %+v", st)
	}
	stream := func(bodies ...[]byte) []byte {
		out := bytes.Clone(head)
		for i, body := range bodies {
			out = append(out, makeTag(9, uint32(40*i)%100, body)...)
		}
		return out
	}
	// Enhanced RTMP (HEVC): sequence start, then a coded keyframe, then a
	// frame whose timestamp went back.
	st := statsOf(t, bytes.NewReader(stream([]byte{0x90, 'h', 'v', 'c', '1', 1, 2}, []byte{0x91, 'h', 'v', 'c', '1', 0, 0, 0, 9},
		[]byte{0xa3, 'h', 'v', 'c', '1', 9}, []byte{0xa3, 'h', 'v', 'c', '1', 9})))
	if v := st.violations(); len(v) != 0 || !st.KeyframeSeen || st.SeqHeaders != 1 || st.TSBack != 1 {
		t.Errorf("enhanced: %+v %v", st, v)
	}
	// Video info frames and empty tags are skipped.
	st = statsOf(t, bytes.NewReader(stream(nil, []byte{0x57, 0}, []byte{0x17, 0, 0, 0, 0}, []byte{0x17, 1, 0, 0, 0})))
	if v := st.violations(); len(v) != 0 || st.Video != 4 || st.Keyframes != 1 {
		t.Errorf("skips: %+v %v", st, v)
	}
}

// BenchmarkReadFLV measures what a viewer costs the bench client per byte of
// stream: testdata/test.flv (4 s, ~250 kbit/s) read through readFLV from
// memory (as from the HTTP client's buffered body).
func BenchmarkReadFLV(b *testing.B) {
	data := readTestFLV(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var n atomic.Int64
	for b.Loop() {
		var st flvStats
		n.Store(0)
		if err := readFLV(bytes.NewReader(data), 32<<10, &n, &st, func(flvtag.Tag) {}); err != io.EOF || st.Keyframes == 0 {
			b.Fatal(err)
		}
	}
}
