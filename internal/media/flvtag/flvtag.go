// Package flvtag encodes and decodes FLV (Flash Video) tags: the 9-byte file
// header, tag headers, AVC/HEVC/AAC tag bodies (legacy FLV and Enhanced RTMP
// "hvc1" FourCC video) and the AMF0 onMetaData script body.
//
// It is a codec package: it never imports the media hub, so the hub, the
// HTTP-FLV and RTMP servers, tests and the `roomcast bench flv` load generator
// can all share it. The same tag body is an RTMP audio/video/data message
// payload, which is why one pre-muxed body serves both protocols.
//
// Everything in parse.go reads untrusted bytes and has a fuzz target.
package flvtag

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/gortmplib/pkg/amf0"
)

// Tag types.
const (
	TypeAudio  = 8
	TypeVideo  = 9
	TypeScript = 18
)

// HeaderSize is the size of a tag header; PrevSizeLen the size of the
// PreviousTagSize field that follows each tag.
const (
	HeaderSize  = 11
	PrevSizeLen = 4
)

// MaxTagSize bounds the body of a tag we accept when parsing (the FLV size
// field allows 16 MiB).
const MaxTagSize = 1<<24 - 1

// FileHeader returns the 9-byte FLV file header followed by PreviousTagSize0.
func FileHeader(hasVideo, hasAudio bool) []byte {
	flags := byte(0)
	if hasAudio {
		flags |= 0x04
	}
	if hasVideo {
		flags |= 0x01
	}
	return []byte{'F', 'L', 'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0}
}

// PutTagHeader writes an 11-byte tag header into dst.
func PutTagHeader(dst []byte, typ byte, bodySize int, ts uint32) {
	_ = dst[10]
	dst[0] = typ
	dst[1] = byte(bodySize >> 16)
	dst[2] = byte(bodySize >> 8)
	dst[3] = byte(bodySize)
	dst[4] = byte(ts >> 16)
	dst[5] = byte(ts >> 8)
	dst[6] = byte(ts)
	dst[7] = byte(ts >> 24) // TimestampExtended
	dst[8], dst[9], dst[10] = 0, 0, 0
}

// SetTimestamp rewrites the timestamp of a tag header in place.
func SetTimestamp(hdr []byte, ts uint32) {
	_ = hdr[7]
	hdr[4] = byte(ts >> 16)
	hdr[5] = byte(ts >> 8)
	hdr[6] = byte(ts)
	hdr[7] = byte(ts >> 24)
}

// NewTag returns a complete tag — header, a body of bodySize bytes left for
// the caller to fill (tag[HeaderSize:HeaderSize+bodySize]) and the trailing
// PreviousTagSize — in one allocation.
func NewTag(typ byte, ts uint32, bodySize int) []byte {
	tag := make([]byte, HeaderSize+bodySize+PrevSizeLen)
	PutTagHeader(tag, typ, bodySize, ts)
	binary.BigEndian.PutUint32(tag[HeaderSize+bodySize:], uint32(HeaderSize+bodySize))
	return tag
}

// TagFromBody returns a complete tag holding a copy of body.
func TagFromBody(typ byte, ts uint32, body []byte) []byte {
	tag := NewTag(typ, ts, len(body))
	copy(tag[HeaderSize:], body)
	return tag
}

// Body returns the body of a complete tag as built by NewTag.
func Body(tag []byte) []byte { return tag[HeaderSize : len(tag)-PrevSizeLen] }

// Video codec ids of the legacy FLV header and Enhanced RTMP FourCCs.
const (
	CodecAVC  = 7
	CodecHEVC = 12 // legacy, non-standard (used by some Chinese CDNs); we emit Enhanced RTMP instead
)

// FourCCHEVC is the Enhanced RTMP FourCC for H.265.
var FourCCHEVC = [4]byte{'h', 'v', 'c', '1'}

// Enhanced RTMP video packet types.
const (
	exPacketSequenceStart = 0
	exPacketCodedFrames   = 1
	exPacketFramesX       = 3
	exPacketMultitrack    = 6
)

// AVCConfigRecord builds an AVCDecoderConfigurationRecord for one SPS and PPS
// with 4-byte NALU lengths.
func AVCConfigRecord(sps, pps []byte) ([]byte, error) {
	if len(sps) < 4 || len(pps) < 1 || len(sps) > 0xFFFF || len(pps) > 0xFFFF {
		return nil, errors.New("flvtag: bad SPS/PPS length")
	}
	b := make([]byte, 0, 11+len(sps)+len(pps))
	b = append(b, 1, sps[1], sps[2], sps[3], 0xFF, 0xE1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(sps)))
	b = append(b, sps...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(pps)))
	b = append(b, pps...)
	return b, nil
}

// AVCSequenceHeader returns the body of an AVC sequence header video tag.
func AVCSequenceHeader(sps, pps []byte) ([]byte, error) {
	rec, err := AVCConfigRecord(sps, pps)
	if err != nil {
		return nil, err
	}
	return append([]byte{0x17, 0, 0, 0, 0}, rec...), nil
}

// HEVCSequenceHeader returns the body of an Enhanced RTMP HEVC sequence
// start tag around an HEVCDecoderConfigurationRecord.
func HEVCSequenceHeader(hvcC []byte) []byte {
	b := make([]byte, 0, 5+len(hvcC))
	b = append(b, 0x80|1<<4|exPacketSequenceStart)
	b = append(b, FourCCHEVC[:]...)
	return append(b, hvcC...)
}

// AACSequenceHeader returns the body of an AAC sequence header audio tag.
func AACSequenceHeader(asc []byte) []byte {
	return append([]byte{0xAF, 0}, asc...)
}

// nalusSize is the AVCC size of nalus (4-byte length prefixes).
func nalusSize(nalus [][]byte) int {
	n := 0
	for _, u := range nalus {
		n += 4 + len(u)
	}
	return n
}

// VideoFrameTag builds a complete video tag for one access unit in one
// allocation and returns it with the NALUs re-sliced from inside it (so a
// frame's HLS view and FLV view share memory). hevc selects the Enhanced
// RTMP "hvc1" layout; cts is PTS−DTS in milliseconds.
func VideoFrameTag(ts uint32, key, hevc bool, cts int32, nalus [][]byte) (tag []byte, views [][]byte) {
	hdr := 5 // legacy: frame type/codec, packet type, SI24 CTS
	if hevc && cts != 0 {
		hdr = 8 // enhanced: header byte, FourCC, SI24 CTS
	}
	size := hdr + nalusSize(nalus)
	tag = NewTag(TypeVideo, ts, size)
	b := tag[HeaderSize:]
	frameType := byte(2)
	if key {
		frameType = 1
	}
	if hevc {
		pt := byte(exPacketFramesX)
		if cts != 0 {
			pt = exPacketCodedFrames
		}
		b[0] = 0x80 | frameType<<4 | pt
		copy(b[1:5], FourCCHEVC[:])
		if cts != 0 {
			putSI24(b[5:8], cts)
		}
	} else {
		b[0] = frameType<<4 | CodecAVC
		b[1] = 1
		putSI24(b[2:5], cts)
	}
	pos := hdr
	views = make([][]byte, len(nalus))
	for i, u := range nalus {
		binary.BigEndian.PutUint32(b[pos:], uint32(len(u)))
		pos += 4
		copy(b[pos:], u)
		views[i] = b[pos : pos+len(u) : pos+len(u)]
		pos += len(u)
	}
	return tag, views
}

// AACFrameTag builds a complete AAC raw-frame tag and returns it with the
// AU re-sliced from inside it.
func AACFrameTag(ts uint32, au []byte) (tag []byte, view []byte) {
	tag = NewTag(TypeAudio, ts, 2+len(au))
	b := tag[HeaderSize:]
	b[0], b[1] = 0xAF, 1
	copy(b[2:], au)
	return tag, b[2 : 2+len(au) : 2+len(au)]
}

func putSI24(b []byte, v int32) {
	u := uint32(v) & 0xFFFFFF
	b[0], b[1], b[2] = byte(u>>16), byte(u>>8), byte(u)
}

func si24(b []byte) int32 {
	v := int32(uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]))
	if v&0x800000 != 0 {
		v -= 1 << 24
	}
	return v
}

// TSFromMS converts a non-negative millisecond count to an FLV timestamp,
// wrapping at 2^32 as the format does.
func TSFromMS(ms int64) uint32 {
	if ms < 0 {
		return 0
	}
	return uint32(ms)
}

// Error wraps a parse failure with the offset where it happened.
type Error struct {
	Off int64
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("flv: at byte %d: %v", e.Off, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Meta is what we announce in onMetaData. Zero fields are omitted.
type Meta struct {
	Width, Height int
	FrameRate     float64
	VideoCodec    string // "h264" or "h265"
	AudioCodec    string // "aac"
	SampleRate    int
	Channels      int
	Encoder       string
}

// MetadataBody encodes m as an onMetaData script tag body
// ("onMetaData" + ECMA array), the form FLV files and RTMP players expect.
func MetadataBody(m Meta) ([]byte, error) {
	arr := amf0.ECMAArray{}
	add := func(k string, v any) { arr = append(arr, amf0.ObjectEntry{Key: k, Value: v}) }
	if m.Width > 0 && m.Height > 0 {
		add("width", float64(m.Width))
		add("height", float64(m.Height))
	}
	if m.FrameRate > 0 {
		add("framerate", m.FrameRate)
	}
	switch m.VideoCodec {
	case "h264":
		add("videocodecid", float64(CodecAVC))
	case "h265":
		// Enhanced RTMP: the FourCC as a number.
		add("videocodecid", float64(binary.BigEndian.Uint32(FourCCHEVC[:])))
	}
	if m.AudioCodec == "aac" {
		add("audiocodecid", float64(10))
	}
	if m.SampleRate > 0 {
		add("audiosamplerate", float64(m.SampleRate))
	}
	if m.Channels > 0 {
		add("stereo", m.Channels > 1)
	}
	if m.Encoder != "" {
		add("encoder", m.Encoder)
	}
	b, err := amf0.Data{"onMetaData", arr}.Marshal()
	if err != nil {
		return nil, fmt.Errorf("flvtag: metadata: %w", err)
	}
	return b, nil
}

// ScriptBody encodes a script-data tag body: name followed by an AMF0
// object of entries (strings, float64 numbers, bools), such as the quiz's
// onQuizQuestion cue {"activity","n"} that players expose to the page.
func ScriptBody(name string, entries []amf0.ObjectEntry) ([]byte, error) {
	b, err := amf0.Data{name, amf0.Object(entries)}.Marshal()
	if err != nil {
		return nil, fmt.Errorf("flvtag: script %s: %w", name, err)
	}
	return b, nil
}
