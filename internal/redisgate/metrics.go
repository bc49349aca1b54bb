package redisgate

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// register exposes the gate's state and the per-poll and per-delivery
// command ratios (issue 5: a hot room's poll costs no Redis command).
func (g *Gate) register() error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_store_up", Help: "1 while the shared store (Redis) answers, 0 while the node fails fast."},
			func() float64 {
				if g.down.Load() {
					return 0
				}
				return 1
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roomcast_store_poll_commands_total",
			Help: "Shared-store commands sent while answering polls (0 for rooms served from the window)."},
			func() float64 { return float64(g.polls.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_store_commands_per_poll",
			Help: "Shared-store commands sent while answering polls, per poll, since start."},
			func() float64 { return ratio(float64(g.polls.Load()), sumCounter(g.m.Polls)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_store_commands_per_delivery",
			Help: "All shared-store commands (background included) per message delivered to a WebSocket connection, since start."},
			func() float64 { return ratio(float64(g.total.Load()), sumCounter(g.m.Deliveries)) }),
	} {
		if err := g.m.Reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// sumCounter adds up a counter (or every series of a counter vector).
func sumCounter(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }() // ends when Collect returns; drained below
	var sum float64
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) == nil && d.Counter != nil {
			sum += d.Counter.GetValue()
		}
	}
	return sum
}
