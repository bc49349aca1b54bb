package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"roomcast/internal/media/flvtag"
)

// A viewer's timestamps are rebased by the server; the match finds the
// base from its first keyframe and measures each frame against the
// publisher's send time of that frame.
func TestFwdSendsMatch(t *testing.T) {
	var p fwdSends
	ms := int64(time.Millisecond)
	// Two passes of the same two keyframes (sizes 900 and 700), audio in
	// between; sent at 1000 + ts ms.
	for pass := uint32(0); pass < 2; pass++ {
		for _, k := range []struct {
			typ  byte
			ts   uint32
			key  bool
			size int
		}{{flvtag.TypeVideo, 0, true, 900}, {flvtag.TypeAudio, 10, false, 20}, {flvtag.TypeVideo, 33, false, 100},
			{flvtag.TypeVideo, 1000, true, 700}, {flvtag.TypeAudio, 1010, false, 20}, {flvtag.TypeVideo, 1033, false, 100}} {
			ts := pass*2000 + k.ts
			p.sent(fwdKey{k.typ, ts}, (1000+int64(ts))*ms, k.key, k.size)
		}
	}
	// The viewer joined in the second pass at the keyframe of size 700
	// (absolute ts 3000, sent at 4000 ms), so B_v = 3000; frames arrive 5,
	// 7 and 40 ms after they were sent.
	v := &fwdRec{keySet: true, keyTS: 0, keySize: 700, keyAt: 4001 * ms}
	v.s = []fwdSample{
		{at: (4000 + 5) * ms, ts: 0, typ: flvtag.TypeVideo},
		{at: (4010 + 7) * ms, ts: 10, typ: flvtag.TypeAudio},
		{at: (4033 + 40) * ms, ts: 33, typ: flvtag.TypeVideo},
		{at: 5000 * ms, ts: 500, typ: flvtag.TypeVideo}, // never sent
	}
	lost := &fwdRec{keySet: true, keySize: 123, keyAt: 4001 * ms, s: []fwdSample{{at: 1, typ: flvtag.TypeVideo}}}
	r := p.summary([]*fwdRec{v, lost, {}})
	if r.consideredViewers != 2 || r.unmatchedViewers != 1 || r.unmatchedTags != 1 || r.h.Count() != 3 {
		t.Fatalf("considered %d, unmatched viewers %d tags %d, counted %d", r.consideredViewers, r.unmatchedViewers, r.unmatchedTags, r.h.Count())
	}
	if lo, hi := r.h.Quantile(0), r.h.Quantile(1); lo < 4900*time.Microsecond || lo > 5100*time.Microsecond || hi < 39*time.Millisecond || hi > 41*time.Millisecond {
		t.Fatalf("delays from %v to %v, want 5 ms to 40 ms", lo, hi)
	}
}

// The publisher's chunks read back, through gortmplib's chunk reader, as
// the messages it meant: a body longer than a chunk, and an extended
// timestamp. The message stream id is 1 written little-endian, as ffmpeg
// writes it (gortmplib reads the field big-endian).
func TestRTMPChunksReadBack(t *testing.T) {
	big := bytes.Repeat([]byte{0x17, 1, 0, 0, 0, 0xAB}, 30000) // 180,000 bytes: three chunks
	var buf []byte
	buf = rtmpChunks(buf, flvtag.TypeVideo, 40, big)
	buf = rtmpChunks(buf, flvtag.TypeAudio, 0x1000000, []byte{0xAF, 1, 2, 3})
	src := bytes.NewReader(buf)
	r := rawmessage.NewReader(src, bytecounter.NewReader(src), func(uint32) error { return nil })
	if err := r.SetChunkSize(pubChunkSize); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		typ  byte
		ts   time.Duration
		body []byte
	}{{flvtag.TypeVideo, 40 * time.Millisecond, big}, {flvtag.TypeAudio, 0x1000000 * time.Millisecond, []byte{0xAF, 1, 2, 3}}} {
		m, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != want.typ || m.Timestamp != want.ts || m.MessageStreamID != 1<<24 || !bytes.Equal(m.Body, want.body) {
			t.Fatalf("read type %d ts %v stream %d body %d bytes; want type %d ts %v body %d bytes",
				m.Type, m.Timestamp, m.MessageStreamID, len(m.Body), want.typ, want.ts, len(want.body))
		}
	}
}
