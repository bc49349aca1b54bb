package rtmp

import (
	"errors"
	"fmt"
	"time"

	"github.com/abema/go-mp4"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"roomcast/internal/media/hub"
)

// Probing: we start the stream as soon as the sequence headers the
// publisher announced (in @setDataFrame/onMetaData) have arrived, or after
// probeMax of media, or probeMsgs messages, whichever comes first.
const (
	probeMax  = 2 * time.Second
	probeMsgs = 600
)

// ingest turns RTMP messages into hub frames for one publisher.
type ingest struct {
	pub *hub.Publisher

	video       *hub.VideoTrack
	audio       *hub.AudioTrack
	wantVideo   bool // metadata announced video
	wantAudio   bool
	sawMeta     bool
	audioIgnore bool // a non-AAC audio track: dropped (logged once)
}

var errUnsupportedVideo = errors.New("unsupported video codec (need H.264 or H.265)")

// probe reads until the tracks are known and returns the messages read so
// far, to be replayed after Start.
func (in *ingest) probe(read func() (message.Message, error)) ([]message.Message, error) {
	var pending []message.Message
	var first, last time.Duration
	haveTS := false
	for {
		msg, err := read()
		if err != nil {
			return nil, err
		}
		var ts time.Duration
		isMedia := true
		switch m := msg.(type) {
		case *message.DataAMF0:
			in.metadata(m)
			isMedia = false
		case *message.Video:
			ts = m.DTS
			if m.Type == message.VideoTypeConfig {
				if err := in.videoConfig(m); err != nil {
					return nil, err
				}
			}
		case *message.VideoExSequenceStart:
			if err := in.videoExConfig(m); err != nil {
				return nil, err
			}
		case *message.VideoExCodedFrames:
			ts = m.DTS
		case *message.VideoExFramesX:
			ts = m.DTS
		case *message.Audio:
			ts = m.DTS
			in.audioConfig(m)
		case *message.AudioExSequenceStart:
			if m.FourCC == message.FourCCMP4A && m.AACConfig != nil {
				in.audio = &hub.AudioTrack{Config: m.AACConfig}
			} else {
				in.audioIgnore = true
			}
		case *message.AudioExCodedFrames:
			ts = m.DTS
		case *message.CommandAMF0:
			if m.Name == "deleteStream" || m.Name == "FCUnpublish" || m.Name == "closeStream" {
				return nil, errors.New("publisher left while probing")
			}
			isMedia = false
		default:
			isMedia = false
		}
		if isMedia {
			pending = append(pending, msg)
			if !haveTS {
				first, haveTS = ts, true
			}
			last = ts
		}
		videoOK := in.video != nil || (in.sawMeta && !in.wantVideo)
		audioOK := in.audio != nil || (in.sawMeta && !in.wantAudio) || in.audioIgnore
		if videoOK && audioOK && (in.sawMeta || (in.video != nil && in.audio != nil)) {
			return pending, nil
		}
		if (haveTS && last-first >= probeMax) || len(pending) >= probeMsgs {
			if in.video == nil && in.audio == nil {
				return nil, errors.New("no H.264/H.265 or AAC sequence header within the probe window")
			}
			return pending, nil
		}
	}
}

func (in *ingest) metadata(m *message.DataAMF0) {
	p := m.Payload
	if len(p) > 0 && p[0] == "@setDataFrame" {
		p = p[1:]
	}
	if len(p) < 2 || p[0] != "onMetaData" {
		return
	}
	obj, ok := objectOf(p[1])
	if !ok {
		return
	}
	in.sawMeta = true
	if v, ok := obj.Get("videocodecid"); ok && v != nil && v != float64(0) && v != "" {
		in.wantVideo = true
	}
	if v, ok := obj.Get("audiocodecid"); ok && v != nil && v != float64(0) && v != "" {
		in.wantAudio = true
	}
}

func (in *ingest) videoConfig(m *message.Video) error {
	switch m.Codec {
	case message.CodecH264:
		c := m.AVCConfig
		if c == nil || len(c.SequenceParameterSets) < 1 || len(c.PictureParameterSets) < 1 {
			return errors.New("H.264 sequence header without SPS/PPS")
		}
		if in.video == nil {
			in.video = &hub.VideoTrack{Codec: "h264", SPS: c.SequenceParameterSets[0].NALUnit, PPS: c.PictureParameterSets[0].NALUnit}
		}
	case message.CodecH265:
		return in.hevcConfig(m.HEVCConfig)
	}
	return nil
}

func (in *ingest) videoExConfig(m *message.VideoExSequenceStart) error {
	switch m.FourCC {
	case message.FourCCAVC:
		c := m.AVCConfig
		if c == nil || len(c.SequenceParameterSets) < 1 || len(c.PictureParameterSets) < 1 {
			return errors.New("H.264 sequence start without SPS/PPS")
		}
		if in.video == nil {
			in.video = &hub.VideoTrack{Codec: "h264", SPS: c.SequenceParameterSets[0].NALUnit, PPS: c.PictureParameterSets[0].NALUnit}
		}
		return nil
	case message.FourCCHEVC:
		return in.hevcConfig(m.HEVCConfig)
	}
	return errUnsupportedVideo
}

func (in *ingest) hevcConfig(c *mp4.HvcC) error {
	if c == nil {
		return errors.New("H.265 sequence header without hvcC")
	}
	vps, sps, pps := hevcParams(c)
	if vps == nil || sps == nil || pps == nil {
		return errors.New("H.265 sequence header without VPS/SPS/PPS")
	}
	if in.video == nil {
		in.video = &hub.VideoTrack{Codec: "h265", VPS: vps, SPS: sps, PPS: pps}
	}
	return nil
}

func hevcParams(c *mp4.HvcC) (vps, sps, pps []byte) {
	for _, a := range c.NaluArrays {
		for _, n := range a.Nalus {
			if len(n.NALUnit) == 0 {
				continue
			}
			switch (n.NALUnit[0] >> 1) & 0x3F {
			case 32:
				vps = n.NALUnit
			case 33:
				sps = n.NALUnit
			case 34:
				pps = n.NALUnit
			}
		}
	}
	return vps, sps, pps
}

func (in *ingest) audioConfig(m *message.Audio) {
	if m.Codec != message.CodecMPEG4Audio {
		in.audioIgnore = true
		return
	}
	if m.AACType == message.AudioAACTypeConfig && m.AACConfig != nil && in.audio == nil {
		in.audio = &hub.AudioTrack{Config: m.AACConfig}
	}
}

// tracks returns what the probe found.
func (in *ingest) tracks() hub.Tracks {
	return hub.Tracks{Video: in.video, Audio: in.audio}
}

// handle feeds one message to the hub after Start.
func (in *ingest) handle(msg message.Message) error {
	switch m := msg.(type) {
	case *message.Video:
		if in.video == nil || (m.Codec == message.CodecH265) != (in.video.Codec == "h265") {
			return nil
		}
		switch m.Type {
		case message.VideoTypeConfig:
			return in.paramsUpdate(m.DTS, m.AVCConfig, m.HEVCConfig)
		case message.VideoTypeAU:
			return in.videoAU(m.DTS+m.PTSDelta, m.DTS, m.AU)
		}
	case *message.VideoExSequenceStart:
		if in.video == nil {
			return nil
		}
		return in.paramsUpdate(0, m.AVCConfig, m.HEVCConfig)
	case *message.VideoExCodedFrames:
		if in.video != nil && in.matches(m.FourCC) {
			return in.videoAU(m.DTS+m.PTSDelta, m.DTS, m.Payload)
		}
	case *message.VideoExFramesX:
		if in.video != nil && in.matches(m.FourCC) {
			return in.videoAU(m.DTS, m.DTS, m.Payload)
		}
	case *message.Audio:
		if in.audio != nil && m.Codec == message.CodecMPEG4Audio && m.AACType == message.AudioAACTypeAU {
			return in.pub.WriteAudio(m.DTS, m.AU)
		}
	case *message.AudioExCodedFrames:
		if in.audio != nil && m.FourCC == message.FourCCMP4A {
			return in.pub.WriteAudio(m.DTS, m.Payload)
		}
	}
	return nil
}

func (in *ingest) matches(fcc message.FourCC) bool {
	return (fcc == message.FourCCHEVC && in.video.Codec == "h265") || (fcc == message.FourCCAVC && in.video.Codec == "h264")
}

func (in *ingest) videoAU(pts, dts time.Duration, avcc []byte) error {
	var au h264.AVCC
	if err := au.Unmarshal(avcc); err != nil {
		if errors.Is(err, h264.ErrAVCCNoNALUs) {
			return nil
		}
		return fmt.Errorf("video AVCC: %w", err)
	}
	return in.pub.WriteVideo(pts, dts, au)
}

// paramsUpdate forwards new parameter sets as an access unit made only of
// them; the hub notices the change and emits a new sequence header.
func (in *ingest) paramsUpdate(dts time.Duration, avc *mp4.AVCDecoderConfiguration, hevc *mp4.HvcC) error {
	switch {
	case avc != nil && in.video.Codec == "h264":
		if len(avc.SequenceParameterSets) < 1 || len(avc.PictureParameterSets) < 1 {
			return nil
		}
		return in.pub.WriteVideo(dts, dts, [][]byte{avc.SequenceParameterSets[0].NALUnit, avc.PictureParameterSets[0].NALUnit})
	case hevc != nil && in.video.Codec == "h265":
		vps, sps, pps := hevcParams(hevc)
		if vps == nil || sps == nil || pps == nil {
			return nil
		}
		return in.pub.WriteVideo(dts, dts, [][]byte{vps, sps, pps})
	}
	return nil
}
