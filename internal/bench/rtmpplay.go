package bench

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/message"

	"roomcast/internal/media/flvtag"
)

// RTMP players (`bench rtmp`): each is a gortmplib client playing the
// stream. Its messages are turned back into the FLV tag heads flvStats
// checks (the RTMP message payload is the FLV tag body), so both protocols
// are judged by the same figures.

// dialRTMP connects and plays; it returns once the server answered the
// play command.
func (s *flvScenario) dialRTMP(ctx context.Context) (*gortmplib.Client, error) {
	u, err := url.Parse(s.playURL)
	if err != nil {
		return nil, err
	}
	c := &gortmplib.Client{URL: u}
	ictx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := c.Initialize(ictx); err != nil {
		return nil, err
	}
	return c, nil
}

// readRTMP reads c until it fails (the run closes it), feeding each media
// message to st as an FLV tag head and calling onTag after each.
func readRTMP(c *gortmplib.Client, v *flvViewer, onTag func(flvtag.Tag)) error {
	v.st.HeaderOK = true // RTMP has no FLV file header
	var head [5]byte
	for {
		msg, err := c.Read()
		if err != nil {
			return err
		}
		v.bytes.Store(int64(c.BytesReceived()))
		tag, ok := rtmpTagHead(msg, head[:])
		if !ok {
			continue
		}
		if err := v.st.observe(tag); err != nil {
			return err
		}
		onTag(tag)
	}
}

// rtmpTagHead rebuilds the head of the FLV tag a media message carries
// (enough for flvtag.ParseVideo/ParseAudio) in head.
func rtmpTagHead(msg message.Message, head []byte) (flvtag.Tag, bool) {
	switch m := msg.(type) {
	case *message.Video:
		frame := byte(2)
		if m.IsKeyFrame {
			frame = 1
		}
		cts := int32(m.PTSDelta / time.Millisecond)
		head[0], head[1] = frame<<4|m.Codec, byte(m.Type)
		head[2], head[3], head[4] = byte(cts>>16), byte(cts>>8), byte(cts)
		return flvtag.Tag{Type: flvtag.TypeVideo, Timestamp: msTS(m.DTS), Body: head[:5], Size: 5 + len(m.AU)}, true
	case *message.Audio:
		head[0] = m.Codec<<4 | byte(m.Rate)<<2 | byte(m.Depth)<<1
		if m.IsStereo {
			head[0] |= 1
		}
		head[1] = byte(m.AACType)
		return flvtag.Tag{Type: flvtag.TypeAudio, Timestamp: msTS(m.DTS), Body: head[:2], Size: 2 + len(m.AU)}, true
	case *message.DataAMF0:
		return flvtag.Tag{Type: flvtag.TypeScript}, true
	}
	return flvtag.Tag{}, false
}

func msTS(d time.Duration) uint32 { return uint32(d / time.Millisecond) }

// defaultPlayURL is rtmp://HOST:1935/live/ROOM for the --url host.
func defaultPlayURL(base, room string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("bench: --url: %w", err)
	}
	return "rtmp://" + u.Hostname() + ":1935/live/" + url.PathEscape(room), nil
}
