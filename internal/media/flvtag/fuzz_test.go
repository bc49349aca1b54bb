package flvtag

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// Fuzz targets for everything in parse.go. CI runs each briefly, e.g.
//
//	go test -run '^$' -fuzz FuzzReader -fuzztime 10s ./internal/media/flvtag
//	go test -run '^$' -fuzz FuzzParseMetadata -fuzztime 10s ./internal/media/flvtag
//	go test -run '^$' -fuzz FuzzParseBodies -fuzztime 10s ./internal/media/flvtag

// FuzzReader feeds arbitrary bytes to the tag reader and the body parsers:
// no panic, bounded memory, and every accepted tag re-encodes to the same
// bytes.
func FuzzReader(f *testing.F) {
	s := sampleStream(f)
	f.Add(s)
	f.Add(s[:20])
	f.Add([]byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x09\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		r.MaxSize = 1 << 20
		// head reads the same bytes keeping only each body's first bytes
		// (skipping the rest with bufio's Discard): it must see the same
		// tags and fail at the same offset.
		head := NewReader(bufio.NewReaderSize(bytes.NewReader(data), 64))
		head.MaxSize = r.MaxSize
		if _, err := r.ReadFileHeader(); err != nil {
			return
		}
		_, _ = head.ReadFileHeader()
		for range 1000 {
			tag, err := r.ReadTag()
			htag, herr := head.ReadTagHead(16)
			if (err == nil) != (herr == nil) || r.Offset() != head.Offset() {
				t.Fatalf("ReadTag %v at %d, ReadTagHead %v at %d", err, r.Offset(), herr, head.Offset())
			}
			if err != nil {
				var fe *Error
				if !errors.Is(err, io.EOF) && !errors.As(err, &fe) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if htag.Type != tag.Type || htag.Timestamp != tag.Timestamp || htag.Size != len(tag.Body) || tag.Size != len(tag.Body) ||
				!bytes.Equal(htag.Body, tag.Body[:min(16, len(tag.Body))]) {
				t.Fatalf("ReadTagHead %+v differs from ReadTag %+v", htag, tag)
			}
			if len(tag.Body) > r.MaxSize {
				t.Fatalf("body of %d bytes beyond MaxSize", len(tag.Body))
			}
			re := TagFromBody(tag.Type, tag.Timestamp, tag.Body)
			if !bytes.Equal(Body(re), tag.Body) {
				t.Fatal("re-encoded body differs")
			}
			switch tag.Type {
			case TypeVideo:
				if vi, err := ParseVideo(tag.Body); err == nil && !vi.SeqHeader {
					_, _ = SplitAVCC(vi.Payload)
				}
			case TypeAudio:
				_, _ = ParseAudio(tag.Body)
			case TypeScript:
				_, _ = ParseMetadata(tag.Body)
			}
		}
	})
}

// FuzzParseMetadata: AMF0 onMetaData decoding never panics.
func FuzzParseMetadata(f *testing.F) {
	md, _ := MetadataBody(Meta{Width: 1, Height: 2, FrameRate: 3, VideoCodec: "h265", AudioCodec: "aac", SampleRate: 48000, Channels: 1, Encoder: "x"})
	f.Add(md)
	f.Add([]byte{0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 0x08, 0, 0, 0, 1, 0, 1, 'a', 0x0a, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMetadata(data)
		if err == nil && m == nil {
			t.Fatal("nil metadata without error")
		}
	})
}

// FuzzParseBodies: video/audio tag headers and AVCC splitting never panic
// and never return slices outside the input.
func FuzzParseBodies(f *testing.F) {
	tag, _ := VideoFrameTag(0, true, false, 5, [][]byte{{0x65, 1}, {0x41}})
	f.Add(Body(tag))
	tag, _ = VideoFrameTag(0, false, true, 0, [][]byte{{0x26, 1}})
	f.Add(Body(tag))
	f.Add(AACSequenceHeader([]byte{0x12, 0x10}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if vi, err := ParseVideo(data); err == nil {
			if len(vi.Payload) > len(data) {
				t.Fatal("payload longer than input")
			}
			nalus, err := SplitAVCC(vi.Payload)
			if err == nil {
				n := 0
				for _, u := range nalus {
					n += 4 + len(u)
				}
				if n != len(vi.Payload) {
					t.Fatalf("NALUs cover %d of %d bytes", n, len(vi.Payload))
				}
			}
		}
		if ai, err := ParseAudio(data); err == nil && len(ai.Payload) > len(data) {
			t.Fatal("audio payload longer than input")
		}
	})
}
