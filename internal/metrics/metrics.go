// Package metrics defines roomcast's Prometheus metrics for the message path
// (names roomcast_<area>_<what>_<unit>). Packages receive the *Metrics they
// update; nothing registers globally, so tests can run many servers at once.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the message-service collectors.
type Metrics struct {
	Reg *prometheus.Registry

	RoomsActive     prometheus.Gauge
	MessagesIn      *prometheus.CounterVec // by kind
	SendRejected    *prometheus.CounterVec // by error code
	Deliveries      prometheus.Counter     // messages written to connections (message × connection)
	Batches         prometheus.Counter     // batches encoded (one per room per tick)
	BatchSize       prometheus.Histogram
	Drops           *prometheus.CounterVec // by reason
	Polls           *prometheus.CounterVec // by result
	PollDuration    prometheus.Histogram
	SendDuration    prometheus.Histogram
	TickDuration    prometheus.Histogram
	DeliveryLatency prometheus.Histogram   // append → written to sockets
	WSFrames        *prometheus.CounterVec // client frames by type
	StoreCommands   *prometheus.CounterVec // backing-store commands by op (Redis mode)
	StoreErrors     *prometheus.CounterVec
}

// New creates the collectors and registers them (with the Go and process
// collectors) on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Reg:         reg,
		RoomsActive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_rooms_active", Help: "Rooms with local viewers or pollers on this node."}),
		MessagesIn:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_messages_in_total", Help: "Messages accepted, by kind."}, []string{"kind"}),
		SendRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_messages_rejected_total",
			Help: "Sends refused, by error code."}, []string{"code"}),
		Deliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_messages_out_total", Help: "Message deliveries to WebSocket connections (messages × connections)."}),
		Batches:    prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_fanout_batches_total", Help: "Batches encoded (one per room per tick)."}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomcast_fanout_batch_messages", Help: "Messages per batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 500}}),
		Drops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_drops_total", Help: "Messages or connections dropped, by reason."}, []string{"reason"}),
		Polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_polls_total", Help: "Poll requests, by result."}, []string{"result"}),
		PollDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomcast_poll_duration_seconds", Help: "Time to answer a poll.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05}}),
		SendDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomcast_send_duration_seconds", Help: "Time from a send request to its ack.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}}),
		TickDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomcast_fanout_tick_seconds", Help: "Time to dispatch one tick for all rooms.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .025, .05, .1, .25}}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomcast_delivery_latency_seconds", Help: "Time from append to write to sockets.",
			Buckets: []float64{.005, .01, .025, .05, .1, .15, .2, .25, .5, 1}}),
		WSFrames:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_ws_frames_in_total", Help: "Client WebSocket frames, by type."}, []string{"type"}),
		StoreCommands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_store_commands_total", Help: "Commands sent to the shared store (Redis), by operation."}, []string{"op"}),
		StoreErrors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_store_errors_total", Help: "Shared-store errors, by operation."}, []string{"op"}),
	}
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
		m.RoomsActive, m.MessagesIn, m.SendRejected, m.Deliveries, m.Batches, m.BatchSize, m.Drops, m.Polls,
		m.PollDuration, m.SendDuration, m.TickDuration, m.DeliveryLatency, m.WSFrames, m.StoreCommands, m.StoreErrors)
	return m
}
