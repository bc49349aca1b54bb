package hub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the media counters exported to Prometheus, all named
// roomcast_media_<what>_<unit>.
type Metrics struct {
	Streams       prometheus.Gauge         // live streams
	Viewers       *prometheus.GaugeVec     // by protocol: rtmp, flv, hls
	BytesIn       prometheus.Counter       // media bytes received from publishers
	BytesOut      *prometheus.CounterVec   // media bytes sent to viewers, by protocol
	DroppedFrames *prometheus.CounterVec   // frames a viewer skipped, by reason
	DroppedViewer *prometheus.CounterVec   // viewers disconnected by us, by reason
	Refused       *prometheus.CounterVec   // refused publish/play, by action and reason
	FirstKeyframe *prometheus.HistogramVec // request → first keyframe written, by protocol
}

// NewMetrics creates the collectors and registers them on reg (nil: not
// registered). Collectors already registered by an earlier Server on the
// same registry are reused, so tests may build several servers.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roomcast_media_streams_active", Help: "Live streams being published.",
		}),
		Viewers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roomcast_media_viewers_active", Help: "Connected viewers by protocol (HLS: clients seen in the last few segments).",
		}, []string{"protocol"}),
		BytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomcast_media_received_bytes_total", Help: "Media bytes received from publishers.",
		}),
		BytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_media_sent_bytes_total", Help: "Media bytes written to viewers by protocol.",
		}, []string{"protocol"}),
		DroppedFrames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_media_dropped_frames_total", Help: "Frames a lagging viewer skipped, by reason.",
		}, []string{"reason"}),
		DroppedViewer: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_media_dropped_viewers_total", Help: "Viewers disconnected by the server, by reason.",
		}, []string{"reason"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_media_refused_total", Help: "Refused publish and play attempts by action and reason.",
		}, []string{"action", "reason"}),
		FirstKeyframe: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "roomcast_media_first_keyframe_seconds",
			Help:    "Time from a play request to its first keyframe written, by protocol.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"protocol"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.Streams = register(reg, m.Streams, &err)
	m.Viewers = register(reg, m.Viewers, &err)
	m.BytesIn = register(reg, m.BytesIn, &err)
	m.BytesOut = register(reg, m.BytesOut, &err)
	m.DroppedFrames = register(reg, m.DroppedFrames, &err)
	m.DroppedViewer = register(reg, m.DroppedViewer, &err)
	m.Refused = register(reg, m.Refused, &err)
	m.FirstKeyframe = register(reg, m.FirstKeyframe, &err)
	return m, err
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		if *errp == nil {
			*errp = err
		}
	}
	return c
}
