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
