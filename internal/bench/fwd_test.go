package bench

import (
	"bufio"
	"bytes"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/message"
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
		{at: (4000 + 5) * ms, kat: (4000 + 2) * ms, ts: 0, typ: flvtag.TypeVideo},
		{at: (4010 + 7) * ms, kat: (4010 + 30) * ms, ts: 10, typ: flvtag.TypeAudio}, // kernel after the read: a clock error
		{at: (4033 + 40) * ms, ts: 33, typ: flvtag.TypeVideo},                       // no timestamp
		{at: 5000 * ms, ts: 500, typ: flvtag.TypeVideo},                             // never sent
	}
	lost := &fwdRec{keySet: true, keySize: 123, keyAt: 4001 * ms, s: []fwdSample{{at: 1, typ: flvtag.TypeVideo}}}
	r := p.summary([]*fwdRec{v, lost, {}})
	if r.consideredViewers != 2 || r.unmatchedViewers != 1 || r.unmatchedTags != 1 || r.h.Count() != 3 {
		t.Fatalf("considered %d, unmatched viewers %d tags %d, counted %d", r.consideredViewers, r.unmatchedViewers, r.unmatchedTags, r.h.Count())
	}
	if r.sock.Count() != 1 || r.sockLate != 1 || r.sock.Quantile(1) < 1900*time.Microsecond || r.sock.Quantile(1) > 2100*time.Microsecond {
		t.Fatalf("socket arrival: %d counted (max %v), %d clock errors; want 1 of 2 ms and 1", r.sock.Count(), r.sock.Quantile(1), r.sockLate)
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

// rtmpReader reads what gortmplib's writer sends, header compression and
// a changed chunk size included, as the messages written.
func TestRTMPReaderReadsGortmplib(t *testing.T) {
	var buf bytes.Buffer
	w := message.NewWriter(&buf, bytecounter.NewWriter(&buf), false)
	type sent struct {
		typ  byte
		ts   uint32
		size int
		head []byte
	}
	var want []sent
	au := bytes.Repeat([]byte{9}, 300)
	msgs := []message.Message{&message.SetChunkSize{Value: 100}}
	for i := range 6 {
		ts := time.Duration(i*33) * time.Millisecond
		msgs = append(msgs,
			&message.Video{ChunkStreamID: 6, MessageStreamID: 1, Codec: message.CodecH264, IsKeyFrame: i == 0,
				Type: message.VideoTypeAU, DTS: ts, AU: au},
			&message.Audio{ChunkStreamID: 4, MessageStreamID: 1, Codec: message.CodecMPEG4Audio, Rate: message.AudioRate44100,
				Depth: message.AudioDepth16, IsStereo: true, AACType: message.AudioAACTypeAU, DTS: ts + 10*time.Millisecond, AU: []byte{1, 2, 3}})
		key := byte(0x27)
		if i == 0 {
			key = 0x17
		}
		want = append(want, sent{flvtag.TypeVideo, uint32(i * 33), 305, append([]byte{key, 1, 0, 0, 0}, au[:11]...)},
			sent{flvtag.TypeAudio, uint32(i*33 + 10), 5, []byte{0xAF, 1, 1, 2, 3}})
	}
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	var n atomic.Int64
	r := &rtmpReader{br: bufio.NewReader(&buf), n: &n, chunkSize: 128, streams: map[uint32]*rtmpChunkStream{}}
	var got []sent
	for {
		typ, ts, length, head, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if typ == flvtag.TypeVideo || typ == flvtag.TypeAudio {
			got = append(got, sent{typ, ts, length, bytes.Clone(head)})
		}
	}
	if r.chunkSize != 100 || len(got) != len(want) {
		t.Fatalf("chunk size %d, %d media messages; want 100, %d", r.chunkSize, len(got), len(want))
	}
	for i := range want {
		if got[i].typ != want[i].typ || got[i].ts != want[i].ts || got[i].size != want[i].size || !bytes.Equal(got[i].head, want[i].head) {
			t.Fatalf("message %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
