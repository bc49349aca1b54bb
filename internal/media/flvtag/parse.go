package flvtag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/bluenviron/gortmplib/pkg/amf0"
)

// Parsing. Every function here reads bytes from the network (or from a file
// someone handed us) and is covered by a fuzz target in fuzz_test.go.

// ErrNotFLV is returned by ReadFileHeader for input that is not FLV.
var ErrNotFLV = errors.New("flv: not an FLV stream")

// FileInfo is what the FLV file header says.
type FileInfo struct {
	Version  byte
	HasVideo bool
	HasAudio bool
}

// Tag is one parsed tag. Body aliases the Reader's buffer and is valid until
// the next ReadTag call.
type Tag struct {
	Type      byte
	Timestamp uint32 // milliseconds, with the extended byte applied
	StreamID  uint32
	Body      []byte
	Size      int // the body's size: len(Body), except after ReadTagHead
}

// Reader reads FLV tags from a byte stream with a bounded buffer.
type Reader struct {
	r       io.Reader
	off     int64
	buf     []byte
	scratch []byte // skip's; nil until needed
	hdr     [HeaderSize + PrevSizeLen]byte
	MaxSize int // largest accepted body; 0 means MaxTagSize
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Offset is the number of bytes consumed so far.
func (r *Reader) Offset() int64 { return r.off }

func (r *Reader) readFull(b []byte) error {
	n, err := io.ReadFull(r.r, b)
	r.off += int64(n)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || (errors.Is(err, io.EOF) && n > 0) {
			return &Error{Off: r.off, Err: io.ErrUnexpectedEOF}
		}
		return err
	}
	return nil
}

// skip consumes n bytes without keeping them: with the reader's own Discard
// (a *bufio.Reader's) when it has one, else through a small scratch buffer
// (allocated once per Reader).
func (r *Reader) skip(n int) error {
	if d, ok := r.r.(interface{ Discard(int) (int, error) }); ok {
		k, err := d.Discard(n)
		r.off += int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return &Error{Off: r.off, Err: io.ErrUnexpectedEOF}
			}
			return err
		}
		return nil
	}
	if r.scratch == nil {
		r.scratch = make([]byte, 4096)
	}
	for n > 0 {
		k := min(n, len(r.scratch))
		if err := r.readFull(r.scratch[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// ReadFileHeader reads the FLV file header and PreviousTagSize0.
func (r *Reader) ReadFileHeader() (FileInfo, error) {
	var h [9]byte
	if err := r.readFull(h[:]); err != nil {
		return FileInfo{}, err
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return FileInfo{}, ErrNotFLV
	}
	dataOff := binary.BigEndian.Uint32(h[5:9])
	if dataOff < 9 || dataOff > 1024 {
		return FileInfo{}, &Error{Off: 5, Err: fmt.Errorf("bad data offset %d", dataOff)}
	}
	if skip := int(dataOff) - 9; skip > 0 {
		if err := r.readFull(make([]byte, skip)); err != nil {
			return FileInfo{}, err
		}
	}
	var prev [4]byte
	if err := r.readFull(prev[:]); err != nil {
		return FileInfo{}, err
	}
	return FileInfo{Version: h[3], HasAudio: h[4]&0x04 != 0, HasVideo: h[4]&0x01 != 0}, nil
}

// ReadTag reads the next tag and the PreviousTagSize after it. io.EOF means
// the stream ended cleanly at a tag boundary.
func (r *Reader) ReadTag() (Tag, error) { return r.readTag(-1) }

// ReadTagHead is ReadTag for a client that watches a stream without
// decoding it: Body holds only the first keep bytes of the tag's body (enough
// for ParseVideo and ParseAudio: 16), and the rest is skipped without being
// buffered, so a viewer's memory does not grow with its keyframes. Size is
// the whole body's size.
func (r *Reader) ReadTagHead(keep int) (Tag, error) { return r.readTag(max(keep, 0)) }

// readTag reads a tag keeping keep bytes of its body (all of it if keep < 0).
func (r *Reader) readTag(keep int) (Tag, error) {
	if err := r.readFull(r.hdr[:HeaderSize]); err != nil {
		return Tag{}, err
	}
	h := r.hdr[:HeaderSize]
	typ := h[0] & 0x1F
	if h[0]&0x20 != 0 {
		return Tag{}, &Error{Off: r.off - HeaderSize, Err: errors.New("encrypted (filtered) tags are not supported")}
	}
	size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	maxSize := r.MaxSize
	if maxSize <= 0 || maxSize > MaxTagSize {
		maxSize = MaxTagSize
	}
	if size > maxSize {
		return Tag{}, &Error{Off: r.off - HeaderSize, Err: fmt.Errorf("tag of %d bytes exceeds limit %d", size, maxSize)}
	}
	ts := uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6]) | uint32(h[7])<<24
	sid := uint32(h[8])<<16 | uint32(h[9])<<8 | uint32(h[10])
	if keep < 0 || keep > size {
		keep = size
	}
	if cap(r.buf) < keep {
		r.buf = make([]byte, keep)
	}
	body := r.buf[:keep]
	err := r.readFull(body)
	if err == nil && keep < size {
		err = r.skip(size - keep)
	}
	if err == nil {
		err = r.readFull(r.hdr[HeaderSize:])
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = &Error{Off: r.off, Err: io.ErrUnexpectedEOF}
		}
		return Tag{}, err
	}
	if prev := binary.BigEndian.Uint32(r.hdr[HeaderSize:]); prev != uint32(HeaderSize+size) {
		return Tag{}, &Error{Off: r.off - PrevSizeLen, Err: fmt.Errorf("PreviousTagSize %d, want %d", prev, HeaderSize+size)}
	}
	return Tag{Type: typ, Timestamp: ts, StreamID: sid, Body: body, Size: size}, nil
}

// VideoInfo describes a video tag body.
type VideoInfo struct {
	Codec     string // "h264", "h265" or "other"
	Key       bool   // frame type 1 (keyframe)
	SeqHeader bool   // AVC sequence header / Enhanced RTMP SequenceStart
	EndOfSeq  bool
	Command   bool  // frame type 5: video info or command frame, no picture
	Frame     bool  // carries coded pictures (not a header, end or command)
	CTS       int32 // composition time offset, ms
	Payload   []byte
}

// ParseVideo decodes the header of a video tag body (legacy AVC/HEVC or
// Enhanced RTMP).
func ParseVideo(b []byte) (VideoInfo, error) {
	if len(b) < 1 {
		return VideoInfo{}, errors.New("flv: empty video tag")
	}
	frameType := (b[0] >> 4) & 0x07
	if b[0]&0x80 != 0 { // Enhanced RTMP
		pt := b[0] & 0x0F
		if len(b) < 5 {
			return VideoInfo{}, errors.New("flv: short enhanced video tag")
		}
		vi := VideoInfo{Key: frameType == 1, Command: frameType == 5, Codec: "other"}
		if [4]byte(b[1:5]) == FourCCHEVC {
			vi.Codec = "h265"
		} else if string(b[1:5]) == "avc1" {
			vi.Codec = "h264"
		}
		rest := b[5:]
		switch pt {
		case exPacketSequenceStart:
			vi.SeqHeader = true
		case exPacketCodedFrames:
			vi.Frame = true
			if vi.Codec == "h264" || vi.Codec == "h265" {
				if len(rest) < 3 {
					return VideoInfo{}, errors.New("flv: short enhanced coded frames")
				}
				vi.CTS = si24(rest)
				rest = rest[3:]
			}
		case 2:
			vi.EndOfSeq = true
		case exPacketFramesX, exPacketMultitrack:
			vi.Frame = true
		}
		vi.Frame = vi.Frame && !vi.Command
		vi.Payload = rest
		return vi, nil
	}
	codec := b[0] & 0x0F
	vi := VideoInfo{Key: frameType == 1, Command: frameType == 5, Codec: "other"}
	switch codec {
	case CodecAVC:
		vi.Codec = "h264"
	case CodecHEVC:
		vi.Codec = "h265"
	default:
		vi.Frame = !vi.Command
		vi.Payload = b[1:]
		return vi, nil
	}
	if len(b) < 5 {
		return VideoInfo{}, errors.New("flv: short AVC video tag")
	}
	switch b[1] {
	case 0:
		vi.SeqHeader = true
	case 1:
		vi.Frame = !vi.Command
	case 2:
		vi.EndOfSeq = true
	}
	vi.CTS = si24(b[2:5])
	vi.Payload = b[5:]
	return vi, nil
}

// SplitAVCC splits a length-prefixed (4-byte) NALU payload. It allocates
// only the returned slice headers.
func SplitAVCC(p []byte) ([][]byte, error) {
	var out [][]byte
	for len(p) > 0 {
		if len(p) < 4 {
			return nil, errors.New("flv: truncated NALU length")
		}
		n := binary.BigEndian.Uint32(p)
		p = p[4:]
		if uint64(n) > uint64(len(p)) {
			return nil, errors.New("flv: NALU longer than tag")
		}
		out = append(out, p[:n])
		p = p[n:]
	}
	return out, nil
}

// AudioInfo describes an audio tag body.
type AudioInfo struct {
	Codec     string // "aac", "mp3" or "other"
	SeqHeader bool
	Payload   []byte
}

// ParseAudio decodes the header of an audio tag body.
func ParseAudio(b []byte) (AudioInfo, error) {
	if len(b) < 1 {
		return AudioInfo{}, errors.New("flv: empty audio tag")
	}
	switch b[0] >> 4 {
	case 10:
		if len(b) < 2 {
			return AudioInfo{}, errors.New("flv: short AAC tag")
		}
		return AudioInfo{Codec: "aac", SeqHeader: b[1] == 0, Payload: b[2:]}, nil
	case 2:
		return AudioInfo{Codec: "mp3", Payload: b[1:]}, nil
	}
	return AudioInfo{Codec: "other", Payload: b[1:]}, nil
}

// Metadata is the decoded onMetaData object: keys to float64, bool, string
// or nested values as AMF0 decodes them.
type Metadata map[string]any

// Number returns a numeric field, or 0.
func (m Metadata) Number(k string) float64 {
	v, _ := m[k].(float64)
	return v
}

// ParseMetadata decodes a script tag body: "onMetaData" (optionally preceded
// by "@setDataFrame") followed by an ECMA array or object.
func ParseMetadata(b []byte) (Metadata, error) {
	if len(b) > 64<<10 { // also bounds AMF0 nesting depth (recursion)
		return nil, errors.New("flv: metadata larger than 64 KiB")
	}
	d, err := amf0.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("flv: metadata AMF0: %w", err)
	}
	if len(d) > 0 {
		if s, ok := d[0].(string); ok && s == "@setDataFrame" {
			d = d[1:]
		}
	}
	if len(d) < 2 {
		return nil, errors.New("flv: metadata: want name and object")
	}
	if s, ok := d[0].(string); !ok || s != "onMetaData" {
		return nil, fmt.Errorf("flv: script tag %v is not onMetaData", d[0])
	}
	var entries []amf0.ObjectEntry
	switch o := d[1].(type) {
	case amf0.ECMAArray:
		entries = o
	case amf0.Object:
		entries = o
	default:
		return nil, fmt.Errorf("flv: onMetaData value is %T", d[1])
	}
	m := make(Metadata, len(entries))
	for _, e := range entries {
		m[e.Key] = e.Value
	}
	return m, nil
}
