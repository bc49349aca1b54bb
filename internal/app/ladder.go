package app

import (
	"log/slog"
	"net"
	"os/exec"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/config"
	"roomcast/internal/media"
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
// nothing else depends on it. media is the media server the ladder will
// read from and publish to (over RTMP on this node), used once it runs.
func newLadder(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, media func() *media.Server) (*transcode.Ladder, error) {
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
	l, err := transcode.New(transcode.Config{Renditions: rungs,
		RTMP: func() string {
			if ad := media().RTMPAddr(); ad != nil {
				_, port, _ := net.SplitHostPort(ad.String())
				return net.JoinHostPort("127.0.0.1", port)
			}
			return ""
		},
		PlayQuery: func(room string) string { return media().SignPlayQuery(room, time.Hour) },
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
