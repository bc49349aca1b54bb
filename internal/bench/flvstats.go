package bench

import (
	"bufio"
	"fmt"
	"io"
	"sync/atomic"

	"roomcast/internal/media/flvtag"
)

// flvStats is what one viewer learned of its FLV stream. The stream is
// parsed by the codec package (flvtag.Reader.ReadTagHead: tag headers and
// the first bytes of each body, media payloads skipped unbuffered); this
// only keeps the figures and stream-start checks the bench reports. It is
// comparable, so that reading a stream whole or in pieces can be checked to
// give the same.
type flvStats struct {
	Bytes    int64 // bytes read
	HeaderOK bool  // "FLV" signature, version 1
	Tags     int
	Video    int
	Audio    int
	Script   int

	// Stream start: the first video tag must be a sequence header, and the
	// first coded video frame after it a keyframe.
	FirstVideoSeen   bool
	FirstVideoSeqHdr bool
	FirstFrameSeen   bool
	FirstFrameKey    bool
	FirstAudioSeen   bool
	FirstAudioSeqHdr bool // AAC sequence header (or not AAC)

	SeqHeaders   int
	Keyframes    int
	KeyframeSeen bool   // a keyframe has arrived (time to first keyframe)
	TSFirstKey   uint32 // media time of the first keyframe, ms
	TSMax        uint32 // highest media time since then, ms
	ContentBytes int64  // tag bytes since the first keyframe (for the content bitrate)
	TSBack       int    // video frames whose timestamp went backwards
	Corrupt      string // why parsing stopped, if it did
	lastVideoTS  uint32
}

// flvHeadKeep is how much of each tag body a viewer keeps: enough for
// flvtag.ParseVideo's longest header (Enhanced RTMP with a composition time).
const flvHeadKeep = 16

// readFLV reads one viewer's stream from r, in reads of bufSize bytes,
// until it ends, keeping st and counting every byte in n as it arrives;
// onTag runs after each tag. A stream found corrupt is read on to its end
// (its bytes still count) but no longer parsed. It returns what ended the
// stream (io.EOF: a clean end).
func readFLV(r io.Reader, bufSize int, n *atomic.Int64, st *flvStats, onTag func(flvtag.Tag)) error {
	cr := &countingReader{r: r, n: n}
	defer func() { st.Bytes = n.Load() }()
	// The tag reader reads a few bytes at a time; the buffer turns that into
	// one read of the connection per bufSize, and skips media payloads
	// without copying them.
	fr := flvtag.NewReader(bufio.NewReaderSize(cr, bufSize))
	info, err := fr.ReadFileHeader()
	if err == nil && info.Version != 1 {
		err = fmt.Errorf("FLV version %d", info.Version)
	}
	st.HeaderOK = err == nil
	for err == nil {
		var tag flvtag.Tag
		if tag, err = fr.ReadTagHead(flvHeadKeep); err == nil {
			if err = st.observe(tag); err == nil {
				onTag(tag)
			}
		}
	}
	if cr.err != nil { // the connection ended (cleanly or not)
		return cr.err
	}
	st.Corrupt = err.Error()
	if _, err := io.Copy(io.Discard, cr); err != nil { // what the buffer holds was counted
		return err
	}
	return io.EOF
}

// countingReader counts the bytes read through it and keeps the first error
// of the reader under it (telling a broken connection from a corrupt
// stream).
type countingReader struct {
	r   io.Reader
	n   *atomic.Int64
	err error
}

func (c *countingReader) Read(b []byte) (int, error) {
	k, err := c.r.Read(b)
	c.n.Add(int64(k))
	if err != nil && c.err == nil {
		c.err = err
	}
	return k, err
}

// observe takes the next tag into the stats.
func (s *flvStats) observe(tag flvtag.Tag) error {
	switch tag.Type {
	case flvtag.TypeScript:
		s.Script++
	case flvtag.TypeAudio:
		s.Audio++
		if !s.FirstAudioSeen && len(tag.Body) > 0 {
			ai, err := flvtag.ParseAudio(tag.Body)
			s.FirstAudioSeen = true
			s.FirstAudioSeqHdr = err == nil && (ai.Codec != "aac" || ai.SeqHeader)
		}
	case flvtag.TypeVideo:
		s.Video++
		s.video(tag)
	default:
		return fmt.Errorf("bad tag type 0x%02x after %d tags", tag.Type, s.Tags)
	}
	s.Tags++
	if s.KeyframeSeen {
		s.ContentBytes += int64(tag.Size) + flvtag.HeaderSize + flvtag.PrevSizeLen
		if tag.Timestamp > s.TSMax && tag.Timestamp-s.TSMax < 1<<30 {
			s.TSMax = tag.Timestamp
		}
	}
	return nil
}

// video checks the stream start and counts keyframes; command frames and
// tags too short to parse are skipped.
func (s *flvStats) video(tag flvtag.Tag) {
	vi, err := flvtag.ParseVideo(tag.Body)
	if err != nil || vi.Command {
		return
	}
	if !s.FirstVideoSeen {
		s.FirstVideoSeen = true
		s.FirstVideoSeqHdr = vi.SeqHeader
	}
	if vi.SeqHeader {
		s.SeqHeaders++
		return
	}
	if !vi.Frame {
		return
	}
	if !s.FirstFrameSeen {
		s.FirstFrameSeen = true
		s.FirstFrameKey = vi.Key
	} else if tag.Timestamp < s.lastVideoTS {
		s.TSBack++
	}
	s.lastVideoTS = tag.Timestamp
	if vi.Key {
		s.Keyframes++
		if !s.KeyframeSeen {
			s.KeyframeSeen = true
			s.TSFirstKey = tag.Timestamp
			s.TSMax = tag.Timestamp
		}
	}
}

// violations lists the stream-start problems of one viewer's stream.
func (s *flvStats) violations() []string {
	var v []string
	switch {
	case s.Bytes == 0:
		return nil
	case !s.HeaderOK:
		v = append(v, "bad FLV header")
	}
	if s.FirstVideoSeen && !s.FirstVideoSeqHdr {
		v = append(v, "first video tag not a sequence header")
	}
	if s.FirstFrameSeen && !s.FirstFrameKey {
		v = append(v, "first video frame not a keyframe")
	}
	if s.Corrupt != "" {
		v = append(v, "corrupt FLV")
	}
	return v
}

// contentKbps is the stream's bitrate as carried (bytes per media second),
// in kbit/s; 0 until a second of media has been seen.
func (s *flvStats) contentKbps() float64 {
	span := float64(s.TSMax-s.TSFirstKey) / 1000
	if !s.KeyframeSeen || span < 1 {
		return 0
	}
	return float64(s.ContentBytes) * 8 / 1000 / span
}
