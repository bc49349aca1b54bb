package flvtag

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/bluenviron/gortmplib/pkg/amf0"
)

var (
	sps = []byte{0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x23, 0xc5, 0x0a, 0xa8}
	pps = []byte{0x68, 0xce, 0x0f, 0xc8}
)

// sampleStream is a small valid FLV stream used by the tests and as the
// fuzz seed.
func sampleStream(t testing.TB) []byte {
	var b bytes.Buffer
	b.Write(FileHeader(true, true))
	md, err := MetadataBody(Meta{Width: 320, Height: 240, FrameRate: 30, VideoCodec: "h264", AudioCodec: "aac", SampleRate: 44100, Channels: 2, Encoder: "roomcast"})
	if err != nil {
		t.Fatal(err)
	}
	b.Write(TagFromBody(TypeScript, 0, md))
	seq, err := AVCSequenceHeader(sps, pps)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(TagFromBody(TypeVideo, 0, seq))
	b.Write(TagFromBody(TypeAudio, 0, AACSequenceHeader([]byte{0x12, 0x10})))
	tag, _ := VideoFrameTag(0, true, false, 0, [][]byte{{0x65, 1, 2, 3}, {0x06, 9}})
	b.Write(tag)
	tag, _ = AACFrameTag(23, []byte{7, 7, 7})
	b.Write(tag)
	tag, _ = VideoFrameTag(0x01234567, false, false, -40, [][]byte{{0x41, 1}})
	b.Write(tag)
	tag, _ = VideoFrameTag(66, true, true, 33, [][]byte{{0x26, 1, 5}})
	b.Write(tag)
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	r := NewReader(bytes.NewReader(sampleStream(t)))
	fi, err := r.ReadFileHeader()
	if err != nil || !fi.HasAudio || !fi.HasVideo || fi.Version != 1 {
		t.Fatalf("header %+v %v", fi, err)
	}
	tag, err := r.ReadTag()
	if err != nil || tag.Type != TypeScript {
		t.Fatalf("meta tag %v %v", tag, err)
	}
	md, err := ParseMetadata(tag.Body)
	if err != nil || md.Number("width") != 320 || md.Number("framerate") != 30 || md["stereo"] != true || md["encoder"] != "roomcast" {
		t.Fatalf("metadata %v %v", md, err)
	}
	tag, _ = r.ReadTag()
	vi, err := ParseVideo(tag.Body)
	if err != nil || !vi.SeqHeader || vi.Codec != "h264" {
		t.Fatalf("avc seq %+v %v", vi, err)
	}
	tag, _ = r.ReadTag()
	ai, err := ParseAudio(tag.Body)
	if err != nil || !ai.SeqHeader || ai.Codec != "aac" {
		t.Fatalf("aac seq %+v %v", ai, err)
	}
	tag, _ = r.ReadTag()
	vi, _ = ParseVideo(tag.Body)
	nalus, err := SplitAVCC(vi.Payload)
	if !vi.Key || err != nil || len(nalus) != 2 || nalus[1][1] != 9 {
		t.Fatalf("key frame %+v %v %v", vi, nalus, err)
	}
	tag, _ = r.ReadTag()
	if tag.Timestamp != 23 || tag.Type != TypeAudio {
		t.Fatalf("audio tag %+v", tag)
	}
	tag, _ = r.ReadTag()
	vi, _ = ParseVideo(tag.Body)
	if tag.Timestamp != 0x01234567 || vi.Key || vi.CTS != -40 {
		t.Fatalf("extended timestamp / negative cts: ts=%x %+v", tag.Timestamp, vi)
	}
	tag, _ = r.ReadTag()
	vi, _ = ParseVideo(tag.Body)
	if vi.Codec != "h265" || !vi.Key || vi.CTS != 33 || !bytes.Equal(vi.Payload, []byte{0, 0, 0, 3, 0x26, 1, 5}) {
		t.Fatalf("enhanced hevc %+v", vi)
	}
	if _, err := r.ReadTag(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

func TestTruncatedAndCorrupt(t *testing.T) {
	s := sampleStream(t)
	for _, n := range []int{5, 14, 30, len(s) - 1} {
		r := NewReader(bytes.NewReader(s[:n]))
		var err error
		if _, err = r.ReadFileHeader(); err == nil {
			for err == nil {
				_, err = r.ReadTag()
			}
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: %v, want ErrUnexpectedEOF", n, err)
		}
	}
	bad := append([]byte(nil), s...)
	bad[len(bad)-1]++ // PreviousTagSize mismatch
	r := NewReader(bytes.NewReader(bad))
	_, _ = r.ReadFileHeader()
	var err error
	for err == nil {
		_, err = r.ReadTag()
	}
	if errors.Is(err, io.EOF) {
		t.Fatal("corrupt PreviousTagSize not detected")
	}
	if _, err := NewReader(bytes.NewReader([]byte("GIF89a...."))).ReadFileHeader(); !errors.Is(err, ErrNotFLV) {
		t.Fatalf("not FLV: %v", err)
	}
	r = NewReader(bytes.NewReader(s))
	r.MaxSize = 10
	_, _ = r.ReadFileHeader()
	if _, err := r.ReadTag(); err == nil {
		t.Fatal("MaxSize not enforced")
	}
}

func TestSetDataFrameMetadata(t *testing.T) {
	b, _ := amf0.Data{"@setDataFrame", "onMetaData", amf0.Object{{Key: "width", Value: float64(640)}}}.Marshal()
	md, err := ParseMetadata(b)
	if err != nil || md.Number("width") != 640 {
		t.Fatalf("%v %v", md, err)
	}
	b, _ = amf0.Data{"onCuePoint", amf0.Object{}}.Marshal()
	if _, err := ParseMetadata(b); err == nil {
		t.Fatal("non-metadata script accepted")
	}
}

func BenchmarkVideoFrameTag(b *testing.B) {
	nalus := [][]byte{make([]byte, 10_000)}
	nalus[0][0] = 0x41
	b.ReportAllocs()
	for b.Loop() {
		VideoFrameTag(1234, false, false, 0, nalus)
	}
}

// TestVideoKinds: ParseVideo tells coded pictures from sequence headers,
// ends of sequence and command frames, legacy and Enhanced RTMP alike.
func TestVideoKinds(t *testing.T) {
	cases := []struct {
		body                 []byte
		key, seq, frame, cmd bool
	}{
		{[]byte{0x17, 0, 0, 0, 0}, true, true, false, false},
		{[]byte{0x17, 1, 0, 0, 0}, true, false, true, false},
		{[]byte{0x27, 1, 0, 0, 0}, false, false, true, false},
		{[]byte{0x27, 2, 0, 0, 0}, false, false, false, false},
		{[]byte{0x57, 0, 0, 0, 0}, false, true, false, true},
		{[]byte{0x22, 9}, false, false, true, false}, // Sorenson H.263: no AVC header
		{[]byte{0x90, 'h', 'v', 'c', '1', 1}, true, true, false, false},
		{[]byte{0x91, 'h', 'v', 'c', '1', 0, 0, 0, 9}, true, false, true, false},
		{[]byte{0xa3, 'h', 'v', 'c', '1', 9}, false, false, true, false},
		{[]byte{0xd3, 'h', 'v', 'c', '1', 9}, false, false, false, true},
	}
	for _, c := range cases {
		vi, err := ParseVideo(c.body)
		if err != nil || vi.Key != c.key || vi.SeqHeader != c.seq || vi.Frame != c.frame || vi.Command != c.cmd {
			t.Errorf("% x: %+v %v", c.body, vi, err)
		}
	}
}

// TestReadTagHead: a tag read by its head keeps the first bytes of its body,
// reports its size and leaves the reader at the next tag.
func TestReadTagHead(t *testing.T) {
	var stream []byte
	stream = append(stream, FileHeader(true, false)...)
	big := TagFromBody(TypeVideo, 40, append([]byte{0x17, 1, 0, 0, 0}, make([]byte, 5000)...))
	stream = append(stream, big...)
	stream = append(stream, TagFromBody(TypeAudio, 41, []byte{0xaf, 0})...)
	r := NewReader(bytes.NewReader(stream))
	if _, err := r.ReadFileHeader(); err != nil {
		t.Fatal(err)
	}
	tag, err := r.ReadTagHead(16)
	if err != nil || tag.Type != TypeVideo || tag.Timestamp != 40 || tag.Size != 5005 || len(tag.Body) != 16 {
		t.Fatalf("video head %+v %v", tag, err)
	}
	tag, err = r.ReadTagHead(16)
	if err != nil || tag.Type != TypeAudio || tag.Size != 2 || !bytes.Equal(tag.Body, []byte{0xaf, 0}) {
		t.Fatalf("audio head %+v %v", tag, err)
	}
	if _, err := r.ReadTagHead(16); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}
