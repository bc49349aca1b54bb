package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/abema/go-mp4"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"roomcast/internal/media/flvtag"
)

// Publisher is the write side of a Stream. All methods except Close must be
// called from the publisher's goroutine.
type Publisher struct {
	s *Stream

	// Owned by the publisher goroutine.
	baseSet   bool
	base      time.Duration // publisher DTS that maps to 0
	lastDTS   time.Duration // last normalised DTS written
	video     *VideoTrack   // current parameters
	hevc      bool
	audioOnly bool
}

// Stream is the stream being published.
func (p *Publisher) Stream() *Stream { return p.s }

// Context is canceled when the publisher must stop: taken over, kicked, or
// the server is shutting down.
func (p *Publisher) Context() context.Context { return p.s.ctx }

// Start publishes the tracks: it builds the metadata and sequence headers,
// lets readers attach, marks the room live and starts observers (HLS). At
// least one track is required; video must be H.264 or H.265 and audio AAC.
func (p *Publisher) Start(t Tracks) error {
	s, m := p.s, p.s.m
	if t.Video == nil && t.Audio == nil {
		return errors.New("publish: no supported track (need H.264/H.265 video or AAC audio)")
	}
	var vcfg, acfg *Frame
	var width, height int
	var fps float64
	if t.Video != nil {
		v := *t.Video
		f, w, h, r, err := videoConfigFrame(&v, 0)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		vcfg, width, height, fps = f, w, h, r
		pv := v // the publisher's working copy; s.tracks gets its own
		p.video, p.hevc = &pv, v.Codec == "h265"
		t.Video = &v
	}
	if t.Audio != nil {
		if t.Audio.Config == nil {
			return errors.New("publish: AAC track without AudioSpecificConfig")
		}
		f, err := audioConfigFrame(t.Audio, 0)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		acfg = f
	}
	p.audioOnly = t.Video == nil
	meta, err := metaFrame(t, width, height, fps)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}

	m.lifeMu.Lock()
	m.mu.Lock()
	current := m.streams[s.room] == s
	m.mu.Unlock()
	if !current {
		m.lifeMu.Unlock()
		return ErrReplaced
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		m.lifeMu.Unlock()
		return ErrReplaced
	}
	s.tracks, s.meta, s.vcfg, s.acfg, s.started = t, meta, vcfg, acfg, true
	s.width.Store(int32(width))
	s.height.Store(int32(height))
	close(s.ready)
	s.mu.Unlock()
	// Observers first (still under lifeMu, so a takeover cannot interleave):
	// the recorder opens the session before the room's live_start message
	// is sequenced, so that message lands in the session's archive.
	m.mu.Lock()
	obs := append([]Observer(nil), m.observers...)
	m.mu.Unlock()
	for _, o := range obs {
		o.StreamStarted(s)
	}
	if !m.live[s.room] { // a takeover keeps the room live without a new live_start
		m.setLive(s, true)
		m.live[s.room] = true
	}
	m.lifeMu.Unlock()
	m.log.Info("stream started", "room", s.room, "remote", s.remote, "video", codecOf(t), "width", width, "height", height)
	return nil
}

func codecOf(t Tracks) string {
	if t.Video == nil {
		return ""
	}
	return t.Video.Codec
}

// Close ends the stream: readers drain and finish, and unless a newer
// publisher took over, the room is marked ended. It is idempotent and safe
// from any goroutine.
func (p *Publisher) Close() { p.s.finish() }

func (s *Stream) finish() {
	s.finishOnce.Do(func() {
		m := s.m
		s.cancel()
		s.end()
		m.lifeMu.Lock()
		m.mu.Lock()
		current := m.streams[s.room] == s
		if current {
			delete(m.streams, s.room)
		}
		m.mu.Unlock()
		if current && m.live[s.room] {
			m.setLive(s, false)
			delete(m.live, s.room)
		}
		m.lifeMu.Unlock()
		m.log.Info("stream ended", "room", s.room, "remote", s.remote, "uptime", time.Since(s.startedAt).Round(time.Millisecond))
	})
}

// norm maps a publisher DTS to stream time: 0 at the first frame,
// monotonic across publisher timestamp resets and jumps.
func (p *Publisher) norm(dts time.Duration) time.Duration {
	if !p.baseSet {
		p.base, p.baseSet = dts, true
	}
	d := dts - p.base
	if d < p.lastDTS-time.Second || d > p.lastDTS+10*time.Second {
		// Publisher clock jumped: continue from where we are.
		p.base = dts - p.lastDTS - 20*time.Millisecond
		d = p.lastDTS + 20*time.Millisecond
	}
	if d < 0 {
		d = 0
	}
	if d > p.lastDTS {
		p.lastDTS = d
	}
	return d
}

// WriteVideo publishes one access unit. A unit made only of parameter sets
// (or carrying changed ones) updates the sequence header for all readers.
func (p *Publisher) WriteVideo(pts, dts time.Duration, au [][]byte) error {
	if p.video == nil || len(au) == 0 {
		return nil
	}
	s := p.s
	hasPic, changed := p.scanParams(au)
	if changed {
		f, w, h, _, err := videoConfigFrame(p.video, p.lastDTS) // in-band or repeated headers carry no usable time
		if err != nil {
			return fmt.Errorf("video parameters: %w", err)
		}
		s.width.Store(int32(w))
		s.height.Store(int32(h))
		s.mu.Lock()
		s.vcfg = f
		v := *p.video
		s.tracks.Video = &v
		s.appendLocked(f)
		s.mu.Unlock()
	}
	if !hasPic {
		return nil
	}
	var key bool
	if p.hevc {
		key = h265.IsRandomAccess(au)
	} else {
		key = h264.IsRandomAccess(au)
	}
	d := p.norm(dts)
	cts := pts - dts
	tag, views := flvtag.VideoFrameTag(uint32(d/time.Millisecond), key, p.hevc, int32(cts/time.Millisecond), au)
	f := &Frame{Kind: KindVideo, Key: key, DTS: d, PTS: d + cts, Tag: tag, AU: views}
	s.bytesIn.Add(uint64(len(tag)))
	s.videoIn.Add(uint64(len(tag)))
	s.videoFrames.Add(1)
	s.m.met.BytesIn.Add(float64(len(tag)))
	s.mu.Lock()
	s.appendLocked(f)
	s.mu.Unlock()
	return nil
}

// WriteAudio publishes one AAC frame.
func (p *Publisher) WriteAudio(pts time.Duration, au []byte) error {
	s := p.s
	if len(au) == 0 {
		return nil
	}
	d := p.norm(pts)
	tag, view := flvtag.AACFrameTag(uint32(d/time.Millisecond), au)
	f := &Frame{Kind: KindAudio, Key: p.audioOnly, DTS: d, PTS: d, Tag: tag, AU: [][]byte{view}}
	s.bytesIn.Add(uint64(len(tag)))
	s.audioIn.Add(uint64(len(tag)))
	s.m.met.BytesIn.Add(float64(len(tag)))
	s.mu.Lock()
	s.appendLocked(f)
	s.mu.Unlock()
	return nil
}

// scanParams reports whether au holds a picture, and updates the current
// parameter sets from in-band ones, reporting a change.
func (p *Publisher) scanParams(au [][]byte) (hasPic, changed bool) {
	v := p.video
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		var dst *[]byte
		if p.hevc {
			switch h265.NALUType((n[0] >> 1) & 0x3F) {
			case h265.NALUType_VPS_NUT:
				dst = &v.VPS
			case h265.NALUType_SPS_NUT:
				dst = &v.SPS
			case h265.NALUType_PPS_NUT:
				dst = &v.PPS
			default:
				if (n[0]>>1)&0x3F < 32 {
					hasPic = true
				}
			}
		} else {
			switch h264.NALUType(n[0] & 0x1F) {
			case h264.NALUTypeSPS:
				dst = &v.SPS
			case h264.NALUTypePPS:
				dst = &v.PPS
			default:
				if t := n[0] & 0x1F; t >= 1 && t <= 5 {
					hasPic = true
				}
			}
		}
		if dst != nil && !bytes.Equal(*dst, n) {
			*dst = append([]byte(nil), n...)
			changed = true
		}
	}
	return hasPic, changed
}

// videoConfigFrame builds the sequence header frame for v and parses its
// SPS for the picture size and frame rate.
func videoConfigFrame(v *VideoTrack, dts time.Duration) (f *Frame, w, h int, fps float64, err error) {
	defer func() {
		if r := recover(); r != nil { // parsers of untrusted SPS must never take the server down
			err = fmt.Errorf("bad parameter sets: %v", r)
		}
	}()
	var body []byte
	var params [][]byte
	switch v.Codec {
	case "h264":
		var sps h264.SPS
		if err := sps.Unmarshal(v.SPS); err != nil {
			return nil, 0, 0, 0, fmt.Errorf("H.264 SPS: %w", err)
		}
		w, h, fps = sps.Width(), sps.Height(), sps.FPS()
		body, err = flvtag.AVCSequenceHeader(v.SPS, v.PPS)
		if err != nil {
			return nil, 0, 0, 0, err
		}
		params = [][]byte{v.SPS, v.PPS}
	case "h265":
		var sps h265.SPS
		if err := sps.Unmarshal(v.SPS); err != nil {
			return nil, 0, 0, 0, fmt.Errorf("H.265 SPS: %w", err)
		}
		w, h, fps = sps.Width(), sps.Height(), sps.FPS()
		rec, err := hvcC(v.VPS, v.SPS, v.PPS, &sps)
		if err != nil {
			return nil, 0, 0, 0, err
		}
		body = flvtag.HEVCSequenceHeader(rec)
		params = [][]byte{v.VPS, v.SPS, v.PPS}
	default:
		return nil, 0, 0, 0, fmt.Errorf("unsupported video codec %q", v.Codec)
	}
	tag := flvtag.TagFromBody(flvtag.TypeVideo, uint32(dts/time.Millisecond), body)
	return &Frame{Kind: KindVideo, Config: true, DTS: dts, PTS: dts, Tag: tag, AU: params}, w, h, fps, nil
}

func hvcC(vps, sps, pps []byte, p *h265.SPS) ([]byte, error) {
	if len(vps) == 0 || len(sps) < 13 || len(pps) == 0 {
		return nil, errors.New("H.265 parameter sets missing")
	}
	box := &mp4.HvcC{
		ConfigurationVersion:        1,
		GeneralProfileIdc:           p.ProfileTierLevel.GeneralProfileIdc,
		GeneralProfileCompatibility: p.ProfileTierLevel.GeneralProfileCompatibilityFlag,
		GeneralConstraintIndicator:  [6]uint8{sps[7], sps[8], sps[9], sps[10], sps[11], sps[12]},
		GeneralLevelIdc:             p.ProfileTierLevel.GeneralLevelIdc,
		Reserved1:                   0b1111,
		Reserved2:                   0b111111,
		Reserved3:                   0b111111,
		ChromaFormatIdc:             uint8(p.ChromaFormatIdc),
		Reserved4:                   0b11111,
		BitDepthLumaMinus8:          uint8(p.BitDepthLumaMinus8),
		Reserved5:                   0b11111,
		BitDepthChromaMinus8:        uint8(p.BitDepthChromaMinus8),
		NumTemporalLayers:           1,
		LengthSizeMinusOne:          3,
		NumOfNaluArrays:             3,
		NaluArrays: []mp4.HEVCNaluArray{
			{NaluType: byte(h265.NALUType_VPS_NUT), NumNalus: 1, Nalus: []mp4.HEVCNalu{{Length: uint16(len(vps)), NALUnit: vps}}},
			{NaluType: byte(h265.NALUType_SPS_NUT), NumNalus: 1, Nalus: []mp4.HEVCNalu{{Length: uint16(len(sps)), NALUnit: sps}}},
			{NaluType: byte(h265.NALUType_PPS_NUT), NumNalus: 1, Nalus: []mp4.HEVCNalu{{Length: uint16(len(pps)), NALUnit: pps}}},
		},
	}
	var buf bytes.Buffer
	if _, err := mp4.Marshal(&buf, box, mp4.Context{}); err != nil {
		return nil, fmt.Errorf("hvcC: %w", err)
	}
	return buf.Bytes(), nil
}

func audioConfigFrame(a *AudioTrack, dts time.Duration) (*Frame, error) {
	asc, err := a.Config.Marshal()
	if err != nil {
		return nil, fmt.Errorf("AAC config: %w", err)
	}
	tag := flvtag.TagFromBody(flvtag.TypeAudio, uint32(dts/time.Millisecond), flvtag.AACSequenceHeader(asc))
	return &Frame{Kind: KindAudio, Config: true, DTS: dts, PTS: dts, Tag: tag, AU: [][]byte{asc}}, nil
}

func metaFrame(t Tracks, w, h int, fps float64) (*Frame, error) {
	m := flvtag.Meta{Width: w, Height: h, FrameRate: fps, Encoder: "roomcast"}
	if t.Video != nil {
		m.VideoCodec = t.Video.Codec
	}
	if t.Audio != nil {
		m.AudioCodec = "aac"
		m.SampleRate = t.Audio.Config.SampleRate
		m.Channels = int(t.Audio.Config.ChannelConfig)
		if m.Channels == 0 {
			m.Channels = t.Audio.Config.ChannelCount //nolint:staticcheck // older configs fill only this
		}
	}
	body, err := flvtag.MetadataBody(m)
	if err != nil {
		return nil, err
	}
	return &Frame{Kind: KindMeta, Config: true, Tag: flvtag.TagFromBody(flvtag.TypeScript, 0, body)}, nil
}
