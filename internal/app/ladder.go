package app

import (
	"log/slog"
	"net"
	"os/exec"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/config"
	"roomcast/internal/media"
	"roomcast/internal/media/access"
	"roomcast/internal/media/hub"
	"roomcast/internal/transcode"
)

// ladderOn reports whether --transcode asks for a quality ladder.
func ladderOn(cfg *config.Config) bool { return cfg.Transcode != "" }

func ladderNote(cfg *config.Config) string {
	if ladderOn(cfg) {
		return " and the quality ladder"
	}
	return ""
}

// newLadder builds the quality ladder of --transcode, or nil when it is off
// — also when ffmpeg is missing or RTMP is off, which serve says at start;
// nothing else depends on it. rtmp is this node's RTMP listen address
// (loopback), known once Start has the media server listening; the ladder
// reads from it and publishes its renditions to it while streams run.
func newLadder(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, rtmp func() string) (*transcode.Ladder, error) {
	rungs, err := transcode.Parse(cfg.Transcode)
	if err != nil || len(rungs) == 0 {
		return nil, err
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		log.Warn("ffmpeg is not installed: the quality ladder (--transcode) stays off; install ffmpeg to turn it on")
		return nil, nil
	}
	if cfg.RTMP == "" {
		log.Warn("RTMP is off (--rtmp \"\"): the quality ladder (--transcode) stays off, it publishes its renditions over RTMP")
		return nil, nil
	}
	l, err := transcode.New(transcode.Config{Renditions: rungs, RTMP: rtmp,
		PlayQuery: func(room string) string {
			if cfg.PlaySignKey == "" {
				return ""
			}
			return access.SignedQuery(cfg.PlaySignKey, room, time.Now(), time.Hour)
		},
	}, log, reg)
	if err != nil {
		return nil, err
	}
	log.Info("quality ladder on", "renditions", cfg.Transcode)
	return l, nil
}

// renditionsOf names the rendition rooms of a source room.
func renditionsOf(l *transcode.Ladder) func(room string) []string {
	if l == nil {
		return nil
	}
	return func(room string) []string {
		if _, _, ok := l.Source(room); ok {
			return nil
		}
		names := l.Names()
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = room + "_" + n
		}
		return out
	}
}

// ladderNames are the renditions the viewer page offers; nil when off.
func ladderNames(l *transcode.Ladder) []string {
	if l == nil {
		return nil
	}
	return l.Names()
}

// sourcesOnly passes only source rooms' streams to an observer: renditions
// are not sessions of their own (not recorded, no replay).
type sourcesOnly struct {
	ladder *transcode.Ladder
	next   media.Observer
}

func (o sourcesOnly) StreamStarted(s *hub.Stream) {
	if _, _, ok := o.ladder.Source(s.Room()); !ok {
		o.next.StreamStarted(s)
	}
}

// observeSources wraps o so that, with a ladder, it sees source rooms only.
func observeSources(l *transcode.Ladder, o media.Observer) media.Observer {
	if l == nil {
		return o
	}
	return sourcesOnly{ladder: l, next: o}
}

// listenAddr is an address a server listens on, published once it does
// (Start): parts built before the listener exists read it at run time.
type listenAddr struct{ v atomic.Pointer[string] }

func (l *listenAddr) set(addr string) { l.v.Store(&addr) }

// get returns the address, or "" before the server listens.
func (l *listenAddr) get() string {
	if p := l.v.Load(); p != nil {
		return *p
	}
	return ""
}

// loopback is addr's port on 127.0.0.1 (the ladder's ffmpeg runs here).
func loopback(addr net.Addr) string {
	_, port, _ := net.SplitHostPort(addr.String())
	return net.JoinHostPort("127.0.0.1", port)
}
