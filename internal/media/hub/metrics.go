package hub

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the media counters exported to Prometheus, all named
// roomcast_media_<what>_<unit>. The gauges (streams, viewers) are computed
// at scrape time by the Manager's collector; see Manager.Collector.
type Metrics struct {
	BytesIn       prometheus.Counter       // media bytes received from publishers
	BytesOut      *prometheus.CounterVec   // media bytes sent to viewers, by protocol
	DroppedFrames *prometheus.CounterVec   // frames a viewer skipped, by reason
	DroppedViewer *prometheus.CounterVec   // viewers disconnected by us, by reason
	Refused       *prometheus.CounterVec   // refused publish/play, by action and reason
	FirstKeyframe *prometheus.HistogramVec // request → first keyframe written, by protocol
	// The streams' shared writers (package egress).
	EgressRounds    prometheus.Counter     // batch rounds (one writev per member)
	EgressDelay     prometheus.Histogram   // a round's oldest frame: arrival → the round's last write
	EgressHandbacks *prometheus.CounterVec // viewers handed to their own goroutine, by reason
}

// NewMetrics creates the collectors and registers them on reg (nil: not
// registered). Collectors already registered by an earlier Server on the
// same registry are reused, so tests may build several servers.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
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
		EgressRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomcast_media_egress_rounds_total",
			Help: "Batch rounds of the streams' shared writers (each writes every member's queued frames).",
		}),
		EgressDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "roomcast_media_egress_delay_seconds",
			Help: "Per round of a shared writer: the oldest frame's arrival to the round's last write " +
				"(the hold, --media-batch at most, plus the round).",
			Buckets: []float64{.005, .01, .02, .03, .04, .05, .06, .08, .1, .15, .25, .5, 1},
		}),
		EgressHandbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_media_egress_handbacks_total",
			Help: "Viewers a shared writer handed to their own goroutine to finish a write, by reason " +
				"(socket_full: the socket took part of the batch; socket_busy: another writer held it).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.BytesIn = register(reg, m.BytesIn, &err)
	m.BytesOut = register(reg, m.BytesOut, &err)
	m.DroppedFrames = register(reg, m.DroppedFrames, &err)
	m.DroppedViewer = register(reg, m.DroppedViewer, &err)
	m.Refused = register(reg, m.Refused, &err)
	m.FirstKeyframe = register(reg, m.FirstKeyframe, &err)
	m.EgressRounds = register(reg, m.EgressRounds, &err)
	m.EgressDelay = register(reg, m.EgressDelay, &err)
	m.EgressHandbacks = register(reg, m.EgressHandbacks, &err)
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

var (
	streamsDesc = prometheus.NewDesc("roomcast_media_streams_active", "Live streams being published.", nil, nil)
	viewersDesc = prometheus.NewDesc("roomcast_media_viewers_active",
		"Viewers by protocol (HLS: distinct clients seen in the last 15 s).", []string{"protocol"}, nil)
)

// Collector returns a collector for the live gauges (streams, viewers by
// protocol), computed from the streams at scrape time so they can never
// drift.
func (m *Manager) Collector() prometheus.Collector { return managerCollector{m} }

type managerCollector struct{ m *Manager }

func (c managerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamsDesc
	ch <- viewersDesc
}

func (c managerCollector) Collect(ch chan<- prometheus.Metric) {
	var live int
	var v Viewers
	now := time.Now()
	for _, s := range c.m.Streams() {
		s.mu.Lock()
		if s.started && !s.ended {
			live++
		}
		for r := range s.readers {
			switch r.proto {
			case ProtoRTMP:
				v.RTMP++
			case ProtoFLV:
				v.FLV++
			}
		}
		if s.hls != nil {
			v.HLS += s.pruneHLSLocked(now)
		}
		s.mu.Unlock()
	}
	ch <- prometheus.MustNewConstMetric(streamsDesc, prometheus.GaugeValue, float64(live))
	ch <- prometheus.MustNewConstMetric(viewersDesc, prometheus.GaugeValue, float64(v.RTMP), ProtoRTMP)
	ch <- prometheus.MustNewConstMetric(viewersDesc, prometheus.GaugeValue, float64(v.FLV), ProtoFLV)
	ch <- prometheus.MustNewConstMetric(viewersDesc, prometheus.GaugeValue, float64(v.HLS), ProtoHLS)
}
