package bench

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"
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
// tags, independently of flvParser.
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

func TestFLVParserFile(t *testing.T) {
	b := readTestFLV(t)
	var p flvParser
	p.feed(b)
	s := p.st
	if !s.HeaderOK || s.Corrupt != "" || s.BadPrevSize != 0 {
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
	// Fed in any pieces, the same result.
	r := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < 20; round++ {
		var q flvParser
		for rest := b; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(3000))
			if round%2 == 0 {
				n = min(len(rest), 1+r.IntN(12))
			}
			q.feed(rest[:n])
			rest = rest[n:]
		}
		if q.st != s {
			t.Fatalf("split feeding differs:\n%+v\n%+v", q.st, s)
		}
	}
}

func TestFLVParserViolations(t *testing.T) {
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
		var p flvParser
		p.feed(stream)
		v := p.st.violations()
		if len(v) != 1 || v[0] != want {
			t.Errorf("want [%s], got %v", want, v)
		}
	}
	var p flvParser
	p.feed([]byte("NOTFLV\x00\x00\x00\x09\x00\x00\x00\x00"))
	if v := p.st.violations(); len(v) == 0 || p.st.HeaderOK {
		t.Errorf("bad header not reported: %v", v)
	}
	p = flvParser{}
	p.feed(append(bytes.Clone(head), 0x77, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1))
	if p.st.Corrupt == "" {
		t.Error("bad tag type not reported")
	}
	p.feed(b) // a dead parser ignores the rest
	if p.st.Tags != 0 {
		t.Error("parsed after corruption")
	}
	// Enhanced RTMP (HEVC): sequence start, then a coded keyframe.
	p = flvParser{}
	p.feed(head)
	p.feed(makeTag(9, 0, []byte{0x90, 'h', 'v', 'c', '1', 1, 2}))
	p.feed(makeTag(9, 0, []byte{0x91, 'h', 'v', 'c', '1', 0, 0, 0, 9}))
	p.feed(makeTag(9, 40, []byte{0xa3, 'h', 'v', 'c', '1', 9}))
	p.feed(makeTag(9, 20, []byte{0xa3, 'h', 'v', 'c', '1', 9})) // ts back
	if v := p.st.violations(); len(v) != 0 || !p.st.KeyframeSeen || p.st.SeqHeaders != 1 || p.st.TSBack != 1 {
		t.Errorf("enhanced: %+v %v", p.st, v)
	}
	// Video info frames and empty tags are skipped.
	p = flvParser{}
	p.feed(head)
	p.feed(makeTag(9, 0, nil))
	p.feed(makeTag(9, 0, []byte{0x57, 0}))
	p.feed(makeTag(9, 0, []byte{0x17, 0, 0, 0, 0}))
	p.feed(makeTag(9, 0, []byte{0x17, 1, 0, 0, 0}))
	if v := p.st.violations(); len(v) != 0 || p.st.BadPrevSize != 0 {
		t.Errorf("skips: %+v %v", p.st, v)
	}
}

func FuzzFLVParser(f *testing.F) {
	b := readTestFLV(f)
	f.Add(b[:2000], uint16(7))
	f.Add(b[:13], uint16(1))
	f.Add([]byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x09\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x17\x00"), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		var whole flvParser
		whole.feed(data)
		var parts flvParser
		n := int(split%64) + 1
		for rest := data; len(rest) > 0; {
			k := min(n, len(rest))
			parts.feed(rest[:k])
			rest = rest[k:]
		}
		if whole.st != parts.st {
			t.Fatalf("whole and split parses differ:\n%+v\n%+v", whole.st, parts.st)
		}
		if whole.st.Bytes != int64(len(data)) {
			t.Fatal("byte count")
		}
		_ = whole.st.violations()
		_ = whole.st.contentKbps()
	})
}
