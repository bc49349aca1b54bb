package bench

import "fmt"

// flvStats is what flvParser learned of one FLV stream. It is comparable, so
// that feeding a stream whole or in pieces can be checked to give the same.
type flvStats struct {
	Bytes    int64 // bytes fed
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
	BadPrevSize  int    // PreviousTagSize fields that do not match
	Corrupt      string // why parsing stopped, if it did
	lastVideoTS  uint32
	prevTagSize  uint32
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

// flvParser parses FLV tags from a byte stream fed in arbitrary pieces. It
// looks only at tag headers and the first bytes of each body and skips the
// media payloads, so it costs next to nothing per byte.
type flvParser struct {
	state  int
	need   int // bytes still wanted by the current state
	buf    [11]byte
	n      int // bytes gathered in buf
	peek   [5]byte
	pn     int
	pwant  int
	tagTyp byte
	tagLen int
	tagTS  uint32
	st     flvStats
}

const (
	flvHeader = iota
	flvSkipHeader
	flvPrevSize
	flvTagHeader
	flvBody
	flvDead
)

// feed parses the next piece of the stream.
func (p *flvParser) feed(b []byte) {
	p.st.Bytes += int64(len(b))
	for len(b) > 0 {
		switch p.state {
		case flvDead:
			return
		case flvHeader, flvPrevSize, flvTagHeader:
			want := 11
			switch p.state {
			case flvHeader:
				want = 9
			case flvPrevSize:
				want = 4
			}
			k := copy(p.buf[p.n:want], b)
			p.n += k
			b = b[k:]
			if p.n < want {
				return
			}
			p.n = 0
			p.unit()
		case flvSkipHeader:
			k := min(p.need, len(b))
			p.need -= k
			b = b[k:]
			if p.need == 0 {
				p.state = flvPrevSize
			}
		case flvBody:
			if p.pn < p.pwant {
				k := copy(p.peek[p.pn:p.pwant], b)
				p.pn += k
				p.need -= k
				b = b[k:]
				if p.pn == p.pwant {
					p.classify()
				}
			}
			k := min(p.need, len(b))
			p.need -= k
			b = b[k:]
			if p.need == 0 {
				p.endTag()
			}
		}
	}
}

// unit handles a complete header, previous-tag-size or tag header in buf.
func (p *flvParser) unit() {
	switch p.state {
	case flvHeader:
		b := p.buf[:9]
		if b[0] != 'F' || b[1] != 'L' || b[2] != 'V' || b[3] != 1 {
			p.dead(fmt.Sprintf("bad FLV header % x", b))
			return
		}
		off := int(b[5])<<24 | int(b[6])<<16 | int(b[7])<<8 | int(b[8])
		if off < 9 || off > 1<<16 {
			p.dead(fmt.Sprintf("bad FLV header size %d", off))
			return
		}
		p.st.HeaderOK = true
		p.need = off - 9
		p.state = flvSkipHeader
		if p.need == 0 {
			p.state = flvPrevSize
		}
	case flvPrevSize:
		v := uint32(p.buf[0])<<24 | uint32(p.buf[1])<<16 | uint32(p.buf[2])<<8 | uint32(p.buf[3])
		if v != p.st.prevTagSize {
			p.st.BadPrevSize++
		}
		p.state = flvTagHeader
	case flvTagHeader:
		b := p.buf[:11]
		p.tagTyp = b[0] & 0x1f
		if b[0]&0xc0 != 0 || (p.tagTyp != 8 && p.tagTyp != 9 && p.tagTyp != 18) {
			p.dead(fmt.Sprintf("bad tag type 0x%02x after %d tags", b[0], p.st.Tags))
			return
		}
		p.tagLen = int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		p.tagTS = uint32(b[7])<<24 | uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
		p.st.Tags++
		p.pn = 0
		p.pwant = min(p.tagLen, len(p.peek))
		if p.tagTyp != 9 && p.tagTyp != 8 {
			p.pwant = 0
		}
		p.need = p.tagLen
		p.state = flvBody
		if p.pwant == 0 {
			p.classify()
		}
		if p.need == 0 {
			p.endTag()
		}
	}
}

func (p *flvParser) dead(why string) {
	p.st.Corrupt = why
	p.state = flvDead
}

// classify looks at a tag once the first bytes of its body are known.
func (p *flvParser) classify() {
	pk := p.peek[:p.pn]
	switch p.tagTyp {
	case 18:
		p.st.Script++
	case 8:
		p.st.Audio++
		if !p.st.FirstAudioSeen && len(pk) > 0 {
			p.st.FirstAudioSeen = true
			p.st.FirstAudioSeqHdr = pk[0]>>4 != 10 || (len(pk) > 1 && pk[1] == 0)
		}
	case 9:
		p.st.Video++
		if len(pk) == 0 {
			return
		}
		var frameType byte
		var seqHdr, frame bool
		if pk[0]&0x80 != 0 { // Enhanced RTMP ExVideoTagHeader
			frameType = (pk[0] >> 4) & 7
			switch pk[0] & 0x0f {
			case 0, 5: // SequenceStart, MPEG2TSSequenceStart
				seqHdr = true
			case 1, 3, 6: // CodedFrames, CodedFramesX, Multitrack
				frame = true
			}
		} else {
			frameType = pk[0] >> 4
			switch pk[0] & 0x0f {
			case 7, 12, 13: // AVC, and the legacy ids some servers use for HEVC/AV1
				if len(pk) > 1 {
					seqHdr = pk[1] == 0
					frame = pk[1] == 1
				}
			default:
				frame = true
			}
		}
		if frameType == 5 { // video info / command frame
			return
		}
		if !p.st.FirstVideoSeen {
			p.st.FirstVideoSeen = true
			p.st.FirstVideoSeqHdr = seqHdr
		}
		if seqHdr {
			p.st.SeqHeaders++
			return
		}
		if !frame {
			return
		}
		key := frameType == 1
		if !p.st.FirstFrameSeen {
			p.st.FirstFrameSeen = true
			p.st.FirstFrameKey = key
		} else if p.tagTS < p.st.lastVideoTS {
			p.st.TSBack++
		}
		p.st.lastVideoTS = p.tagTS
		if key {
			p.st.Keyframes++
			if !p.st.KeyframeSeen {
				p.st.KeyframeSeen = true
				p.st.TSFirstKey = p.tagTS
				p.st.TSMax = p.tagTS
			}
		}
	}
}

func (p *flvParser) endTag() {
	if p.st.KeyframeSeen {
		p.st.ContentBytes += int64(p.tagLen) + 15
		if p.tagTS > p.st.TSMax && p.tagTS-p.st.TSMax < 1<<30 {
			p.st.TSMax = p.tagTS
		}
	}
	p.st.prevTagSize = uint32(p.tagLen) + 11
	p.state = flvPrevSize
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
