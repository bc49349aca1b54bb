package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/config"
	"roomcast/internal/errs"
	"roomcast/internal/route"
	"roomcast/internal/store"
)

// Settings keys in the store.
const (
	settingPoll  = "poll_intervals"
	settingRoute = "route_rules"
)

// loadSettings reads run-time settings from the store and follows changes
// made on any node (bus control events).
func (g *Gateway) loadSettings(ctx context.Context) error {
	if err := g.reloadSettings(ctx); err != nil {
		return err
	}
	_, err := g.d.Bus.Subscribe(bus.Control, func(ev bus.Event) {
		if ev.Type == bus.EvSettings {
			if err := g.reloadSettings(context.Background()); err != nil {
				g.log.Warn("gateway: reload settings", "err", err)
			}
		}
	})
	return err
}

func (g *Gateway) reloadSettings(ctx context.Context) error {
	if v, err := g.d.Store.Setting(ctx, settingPoll); err == nil {
		var steps []config.PollStep
		if json.Unmarshal([]byte(v), &steps) == nil {
			if steps, err := config.NormalizePollSteps(steps); err == nil {
				g.poll.Store(&steps)
			}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if v, err := g.d.Store.Setting(ctx, settingRoute); err == nil {
		var rules route.Rules
		if json.Unmarshal([]byte(v), &rules) == nil && rules.Valid() {
			g.d.Router.Set(rules)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func (g *Gateway) saveSetting(ctx context.Context, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := g.d.Store.SetSetting(ctx, key, string(raw)); err != nil {
		return err
	}
	return g.d.Bus.Publish(ctx, bus.Control, bus.Event{Type: bus.EvSettings, Data: []byte(key)})
}

func (g *Gateway) handleGetPollIntervals(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{"steps": *g.poll.Load()})
}

func (g *Gateway) handlePutPollIntervals(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Steps []config.PollStep `json:"steps"`
	}
	if err := decode(w, r, &body); err != nil {
		writeErr(w, err)
		return
	}
	steps, err := config.NormalizePollSteps(body.Steps)
	if err != nil {
		writeErr(w, errs.New(errs.BadRequest, "steps: "+err.Error()))
		return
	}
	g.poll.Store(&steps)
	if err := g.saveSetting(r.Context(), settingPoll, steps); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"steps": steps})
}

func (g *Gateway) handleGetRouteRules(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, g.d.Router.Rules())
}

func (g *Gateway) handlePutRouteRules(w http.ResponseWriter, r *http.Request) {
	var rules route.Rules
	if err := decode(w, r, &rules); err != nil {
		writeErr(w, err)
		return
	}
	if !rules.Valid() {
		writeErr(w, errs.New(errs.BadRequest, "percent must be 0–100"))
		return
	}
	g.d.Router.Set(rules)
	if err := g.saveSetting(r.Context(), settingRoute, rules); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, rules)
}

// handleRoute tells a client which transport to use (R17, R22).
func (g *Gateway) handleRoute(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	uid, device, version, roomID := q.Get("uid"), q.Get("device"), q.Get("version"), q.Get("room")
	if len(uid) > 128 || len(device) > 128 || len(version) > 64 {
		writeErr(w, errs.New(errs.BadRequest, "uid, device or version too long"))
		return
	}
	// The client connects to the first of nodes: the room's placed node for
	// it when the room is hot (R14), else this one.
	nodes := []string{g.selfURL(r)}
	online := 0
	if roomID != "" {
		nodes = g.nodesFor(r, roomID, placementKey(uid, device, clientIP(r)))
		online, _ = g.d.Presence.Count(r.Context(), roomID)
	}
	base := nodes[0]
	wsBase := "ws" + strings.TrimPrefix(base, "http")
	pollURL, wsURL := base+"/api/rooms/{room}/messages", wsBase+"/ws"
	if roomID != "" {
		pollURL = base + "/api/rooms/" + url.PathEscape(roomID) + "/messages"
		wsURL += "?room=" + url.QueryEscape(roomID)
	}
	writeJSON(w, 200, map[string]any{
		"transport":     g.d.Router.Decide(uid, device, version),
		"ws_url":        wsURL,
		"poll_url":      pollURL,
		"poll_after_ms": g.pollAfter(online),
		"nodes":         nodes,
	})
}

func (g *Gateway) metricsHandler() http.Handler {
	return promhttp.HandlerFor(g.d.Metrics.Reg, promhttp.HandlerOpts{})
}

func (g *Gateway) mountPprof(m *http.ServeMux) {
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			tok := auth.BearerToken(r.Header.Get("Authorization"))
			if tok == "" {
				tok = r.URL.Query().Get("key")
			}
			if !auth.CheckKey(tok, g.d.AdminKey) {
				writeErr(w, errs.New(errs.Unauthorized, "the admin key is required"))
				return
			}
			h(w, r)
		}
	}
	m.HandleFunc("/debug/pprof/", guard(pprof.Index))
	m.HandleFunc("/debug/pprof/cmdline", guard(pprof.Cmdline))
	m.HandleFunc("/debug/pprof/profile", guard(pprof.Profile))
	m.HandleFunc("/debug/pprof/symbol", guard(pprof.Symbol))
	m.HandleFunc("/debug/pprof/trace", guard(pprof.Trace))
}
