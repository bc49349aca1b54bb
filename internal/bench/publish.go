package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"

	"roomcast/internal/media/flvtag"
)

// publisher is the bench's own RTMP publisher (`--publish FILE`): it sends
// an FLV file's tags, looped, each at the wall time its timestamp says
// (start + loop offset + timestamp), and records when it sent each tag:
// the reference of the viewers' forwarding delay (fwd.go). It replaces
// `ffmpeg -re`, which paces less precisely (its muxer holds a packet until
// the other stream has one, up to an audio frame, ~21 ms) and whose send
// times the bench cannot see.
type publisher struct {
	url  string
	tags []pubTag
	span uint32 // one pass of the file, ms (added to timestamps per loop)

	clock *fwdClock
	sends fwdSends      // what was sent when
	late  Hist          // send time − due time, per tag
	sent  atomic.Int64  // tags sent
	live  chan struct{} // closed once lead of media has been sent
	done  chan struct{} // closed when run returns
	err   error         // why run stopped; read after done
	lead  time.Duration
	first bool
}

type pubTag struct {
	typ  byte
	ts   uint32
	body []byte
	cfg  bool // sequence header or metadata: sent on the first pass only
	key  bool // a video keyframe (coded frame)
}

// loadPublisher reads file (FLV) for publishing to rawURL
// (rtmp://HOST:PORT/live/STREAM_KEY).
func loadPublisher(file, rawURL string, lead time.Duration, clock *fwdClock) (*publisher, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("bench: --publish: %w", err)
	}
	defer f.Close()
	r := flvtag.NewReader(bufio.NewReader(f))
	if _, err := r.ReadFileHeader(); err != nil {
		return nil, fmt.Errorf("bench: --publish %s: %w", file, err)
	}
	p := &publisher{url: rawURL, live: make(chan struct{}), done: make(chan struct{}), lead: lead, clock: clock}
	for {
		tag, err := r.ReadTag()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bench: --publish %s: %w", file, err)
		}
		pt := pubTag{typ: tag.Type, ts: tag.Timestamp, body: append([]byte(nil), tag.Body...)}
		switch tag.Type {
		case flvtag.TypeScript:
			pt.cfg = true
		case flvtag.TypeVideo:
			vi, err := flvtag.ParseVideo(tag.Body)
			pt.cfg = err == nil && vi.SeqHeader
			pt.key = err == nil && vi.Frame && vi.Key
		case flvtag.TypeAudio:
			ai, err := flvtag.ParseAudio(tag.Body)
			pt.cfg = err == nil && ai.SeqHeader
		default:
			continue
		}
		p.span = max(p.span, tag.Timestamp)
		p.tags = append(p.tags, pt)
	}
	if len(p.tags) == 0 || p.span < 1000 {
		return nil, fmt.Errorf("bench: --publish %s: less than a second of media", file)
	}
	p.span += 40 // a frame's gap between the last tag of a pass and the next pass
	return p, nil
}

// run publishes until ctx ends or the connection fails. It owns the
// connection and the goroutine that drains what the server sends.
func (p *publisher) run(ctx context.Context) {
	defer close(p.done)
	p.err = p.publish(ctx)
	if ctx.Err() != nil {
		p.err = nil
	}
}

func (p *publisher) publish(ctx context.Context) error {
	u, err := url.Parse(p.url)
	if err != nil {
		return fmt.Errorf("publish URL: %w", err)
	}
	c := &gortmplib.Client{URL: u, Publish: true}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = c.Initialize(ictx)
	cancel()
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	conn := c.NetConn()
	drained := make(chan struct{})
	go func() { // acknowledgements and pings from the server; ends when conn closes
		_, _ = io.Copy(io.Discard, conn)
		close(drained)
	}()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer func() {
		stop()
		_ = conn.Close()
		<-drained
	}()
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var buf []byte
	for pass := uint32(0); ; pass++ {
		for _, t := range p.tags {
			if t.cfg && pass > 0 {
				continue
			}
			ts := pass*p.span + t.ts
			due := start.Add(time.Duration(ts) * time.Millisecond)
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			p.late.Record(time.Since(due))
			buf = rtmpChunks(buf[:0], t.typ, ts, t.body)
			if !t.cfg {
				p.sends.sent(fwdKey{t.typ, ts}, p.clock.now(), t.key, len(t.body))
			}
			_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(buf); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			p.sent.Add(1)
			if !p.first && time.Duration(ts)*time.Millisecond >= p.lead {
				p.first = true
				close(p.live)
			}
		}
	}
}

// waitLive waits until lead of media has been sent (so that the server
// has a GOP to give each viewer at once), or the publisher failed.
func (p *publisher) waitLive(ctx context.Context) error {
	select {
	case <-p.live:
		return nil
	case <-p.done:
		return fmt.Errorf("bench: the publisher stopped: %v", p.err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pubChunkSize is the chunk size gortmplib's client announces.
const pubChunkSize = 65536

// rtmpChunks appends one RTMP message (message stream 1) carrying an FLV
// tag body: a type-0 chunk header, then continuation (type-3) chunks of
// pubChunkSize.
func rtmpChunks(dst []byte, typ byte, ts uint32, body []byte) []byte {
	csid := byte(4) // audio
	switch typ {
	case flvtag.TypeVideo:
		csid = 6
	case flvtag.TypeScript:
		csid = 5
	}
	t24 := min(ts, 0xFFFFFF)
	n := len(body)
	dst = append(dst, csid, byte(t24>>16), byte(t24>>8), byte(t24), byte(n>>16), byte(n>>8), byte(n), typ, 1, 0, 0, 0)
	ext := ts >= 0xFFFFFF
	if ext {
		dst = append(dst, byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts))
	}
	for pos := 0; ; {
		end := min(n, pos+pubChunkSize)
		dst = append(dst, body[pos:end]...)
		if pos = end; pos >= n {
			return dst
		}
		dst = append(dst, 0xC0|csid)
		if ext {
			dst = append(dst, byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts))
		}
	}
}

// publishURLHost checks that a publish or play URL is rtmp:// on loopback.
func checkRTMPURL(flagName, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "rtmp" {
		return fmt.Errorf("bench: %s must be an rtmp:// URL", flagName)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		host = u.Host
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("bench: %s must be on loopback", flagName)
	}
	return nil
}
