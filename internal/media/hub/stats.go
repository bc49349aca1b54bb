package hub

import (
	"fmt"
	"sort"
	"time"
)

// Info is a live stream's statistics (M7), as served by
// GET /api/rooms/{id}/stream.
type Info struct {
	Room       string    `json:"room"`
	Live       bool      `json:"live"`
	Codec      string    `json:"codec"`       // video: "h264", "h265" or "" (audio only)
	AudioCodec string    `json:"audio_codec"` // "aac" or ""
	Resolution string    `json:"resolution"`  // "1280x720"
	Width      int       `json:"width"`
	Height     int       `json:"height"`
	FPS        float64   `json:"fps"`         // measured video frames per second
	SampleRate int       `json:"sample_rate"` // audio Hz
	Channels   int       `json:"channels"`
	BitrateIn  int64     `json:"bitrate_in"`  // bits/s received from the publisher
	BitrateOut int64     `json:"bitrate_out"` // bits/s sent to all viewers
	BytesIn    uint64    `json:"bytes_in"`
	BytesOut   uint64    `json:"bytes_out"`
	Viewers    Viewers   `json:"viewers"`
	Uptime     float64   `json:"uptime"` // seconds since the publisher connected
	StartedAt  time.Time `json:"started_at"`
	Dropped    uint64    `json:"dropped_frames"` // frames skipped by lagging viewers
}

// Viewers counts viewers per protocol. HLS has no connection, so it counts
// distinct clients (address and user agent) seen in the last 15 s.
type Viewers struct {
	RTMP  int `json:"rtmp"`
	FLV   int `json:"flv"`
	HLS   int `json:"hls"`
	Total int `json:"total"`
}

// meter turns a growing counter into a rate over windows of ≥ 2 s.
type meter struct {
	t    time.Time
	v    uint64
	rate float64
	set  bool
}

func (m *meter) update(now time.Time, v uint64, start time.Time) float64 {
	if m.t.IsZero() {
		m.t, m.v = start, 0
	}
	dt := now.Sub(m.t).Seconds()
	if dt >= 2 || !m.set {
		if dt > 0 {
			m.rate = float64(v-m.v) / dt
			m.set = true
		}
		if dt >= 2 {
			m.t, m.v = now, v
		}
	}
	return m.rate
}

// Info returns the stream's statistics.
func (s *Stream) Info() Info {
	now := time.Now()
	s.mu.Lock()
	t := s.tracks
	live := s.started && !s.ended
	var v Viewers
	for r := range s.readers {
		switch r.proto {
		case ProtoRTMP:
			v.RTMP++
		case ProtoFLV:
			v.FLV++
		}
	}
	if s.hls != nil {
		v.HLS = s.pruneHLSLocked(now)
	}
	s.mu.Unlock()
	v.Total = v.RTMP + v.FLV + v.HLS
	in, out, frames := s.bytesIn.Load(), s.bytesOut.Load(), s.videoFrames.Load()
	s.statsMu.Lock()
	rin := s.inRate.update(now, in, s.startedAt)
	rout := s.outRate.update(now, out, s.startedAt)
	fps := s.fps.update(now, frames, s.startedAt)
	s.statsMu.Unlock()

	info := Info{
		Room: s.room, Live: live, Width: int(s.width.Load()), Height: int(s.height.Load()),
		FPS: float64(int(fps*100+0.5)) / 100, BitrateIn: int64(rin * 8), BitrateOut: int64(rout * 8),
		BytesIn: in, BytesOut: out, Viewers: v, StartedAt: s.startedAt.UTC(),
		Uptime: float64(now.Sub(s.startedAt).Milliseconds()) / 1000, Dropped: s.dropped.Load(),
	}
	if t.Video != nil {
		info.Codec = t.Video.Codec
	}
	if info.Width > 0 {
		info.Resolution = fmt.Sprintf("%dx%d", info.Width, info.Height)
	}
	if t.Audio != nil {
		info.AudioCodec = "aac"
		info.SampleRate = t.Audio.Config.SampleRate
		info.Channels = int(t.Audio.Config.ChannelConfig)
	}
	return info
}

// Info returns room's stream statistics; false (and an Info with only Room
// set, Live false) when the room is not live.
func (m *Manager) Info(room string) (Info, bool) {
	s := m.Stream(room)
	if s == nil {
		return Info{Room: room}, false
	}
	info := s.Info()
	return info, info.Live
}

// Session is one publisher or player, for livego's /stat/livestat.
type Session struct {
	Room       string
	Publisher  bool
	Protocol   string // rtmp for publishers; rtmp, flv for players
	Remote     string
	ID         uint64 // stream session id
	Since      time.Time
	VideoBytes uint64
	AudioBytes uint64
}

// Sessions lists every publisher and connected player (HLS clients have
// no session), publishers first, sorted by room.
func (m *Manager) Sessions() []Session {
	var out []Session
	for _, s := range m.Streams() {
		s.mu.Lock()
		started := s.started && !s.ended
		out = append(out, Session{Room: s.room, Publisher: true, Protocol: ProtoRTMP, Remote: s.remote, ID: s.id,
			Since: s.startedAt, VideoBytes: s.videoIn.Load(), AudioBytes: s.audioIn.Load()})
		if !started {
			out = out[:len(out)-1]
		}
		for r := range s.readers {
			if r.proto == ProtoInternal {
				continue
			}
			out = append(out, Session{Room: s.room, Protocol: r.proto, Remote: r.remote, ID: s.id, Since: r.created,
				VideoBytes: r.sentVideo.Load(), AudioBytes: r.sentAudio.Load()})
		}
		s.mu.Unlock()
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Publisher != out[j].Publisher {
			return out[i].Publisher
		}
		return out[i].Room < out[j].Room
	})
	return out
}
