package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/keepalive"
	"roomcast/internal/metrics"
	"roomcast/internal/ws"
)

// registerWSMetrics exports the WebSocket layer's counters (it keeps plain
// atomics so it does not depend on Prometheus).
func registerWSMetrics(m *metrics.Metrics, s *ws.Server) {
	gauge := func(name, help string, f func(ws.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(s.Stats()) })
	}
	counter := func(name, help string, f func(ws.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(s.Stats()) })
	}
	m.Reg.MustRegister(
		gauge("roomcast_ws_connections", "Open WebSocket connections.", func(st ws.Stats) float64 { return float64(st.Conns) }),
		counter("roomcast_ws_accepted_total", "WebSocket upgrades.", func(st ws.Stats) float64 { return float64(st.Accepted) }),
		counter("roomcast_ws_closed_slow_total", "Connections dropped as slow consumers (4008).", func(st ws.Stats) float64 { return float64(st.ClosedSlow) }),
		counter("roomcast_ws_closed_heartbeat_total", "Connections closed for silence (4000).", func(st ws.Stats) float64 { return float64(st.ClosedHeartbeat) }),
		counter("roomcast_ws_closed_protocol_total", "Connections closed for protocol errors.", func(st ws.Stats) float64 { return float64(st.ClosedProtocol) }),
		counter("roomcast_ws_closed_client_total", "Connections closed by the client.", func(st ws.Stats) float64 { return float64(st.ClosedClient) }),
		counter("roomcast_ws_closed_server_total", "Connections closed by the server.", func(st ws.Stats) float64 { return float64(st.ClosedServer) }),
		counter("roomcast_ws_frames_out_total", "Frames written.", func(st ws.Stats) float64 { return float64(st.FramesWritten) }),
		counter("roomcast_ws_bytes_out_total", "Bytes written.", func(st ws.Stats) float64 { return float64(st.BytesWritten) }),
		counter("roomcast_ws_write_syscalls_total", "write/writev calls.", func(st ws.Stats) float64 { return float64(st.WriteSyscalls) }),
	)
}

// registerKeepAliveMetrics exposes the keep-alive poll path's counts.
func registerKeepAliveMetrics(m *metrics.Metrics, s *keepalive.Server) {
	counter := func(name, help string, f func(keepalive.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(s.Stats())) })
	}
	m.Reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_keepalive_connections",
			Help: "Polling connections served by the keep-alive path."}, func() float64 { return float64(s.Stats().Conns) }),
		counter("roomcast_keepalive_takes_total", "Connections the keep-alive path took from net/http after a poll.",
			func(st keepalive.Stats) uint64 { return st.Takes }),
		counter("roomcast_keepalive_answers_total", "Polls answered on the keep-alive path (the first of each take included).",
			func(st keepalive.Stats) uint64 { return st.Answers }),
		counter("roomcast_keepalive_handbacks_total", "Requests the keep-alive path handed back to net/http.",
			func(st keepalive.Stats) uint64 { return st.HandBacks }),
	)
}
