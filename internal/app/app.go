// Package app is roomcast's composition root: the one place that turns a
// Config into stores, seams (timeline, bus, presence), the fan-out node, the
// logic layer and the servers, and shuts them down in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"roomcast/internal/archive"
	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/config"
	"roomcast/internal/fanout"
	"roomcast/internal/gateway"
	"roomcast/internal/likes"
	"roomcast/internal/livego"
	"roomcast/internal/media"
	"roomcast/internal/message"
	"roomcast/internal/metrics"
	"roomcast/internal/moderation"
	"roomcast/internal/presence"
	"roomcast/internal/quiz"
	"roomcast/internal/record"
	"roomcast/internal/room"
	"roomcast/internal/route"
	"roomcast/internal/service"
	"roomcast/internal/store"
	"roomcast/internal/timeline"
	"roomcast/internal/transcode"
	"roomcast/internal/ws"
	"roomcast/web"
)

// App is a running roomcast node.
type App struct {
	Cfg      *config.Config
	Log      *slog.Logger
	Store    *store.Store
	Signer   *auth.Signer
	AdminKey string
	Rooms    *room.Registry
	Service  *service.Service
	Node     *fanout.Node
	Metrics  *metrics.Metrics
	Media    *media.Server
	Recorder *record.Recorder
	Archive  *archive.Archive
	Quiz     *quiz.Service

	tl       timeline.Timeline
	bus      bus.Bus
	presence presence.Presence
	likes    likes.Counter
	mod      moderation.State
	gw       *gateway.Gateway
	ladder   *transcode.Ladder // nil unless --transcode (and ffmpeg, RTMP)
	ws       *ws.Server
	http     *http.Server
	httpLn   net.Listener
	shutMu   sync.Mutex                    // serializes Shutdown
	closers  []func(context.Context) error // in order of creation; guarded by shutMu after New
}

// Secrets loads (or generates and keeps) the token secret and admin key of
// the data dir, unless configured.
func Secrets(ctx context.Context, st *store.Store, cfg *config.Config) (secret, adminKey string, err error) {
	secret, adminKey = cfg.Secret, cfg.AdminKey
	if secret == "" {
		if secret, err = st.SettingOrCreate(ctx, "secret", func() string { return auth.RandomHex(32) }); err != nil {
			return "", "", err
		}
	}
	if adminKey == "" {
		if adminKey, err = st.SettingOrCreate(ctx, "admin_key", func() string { return "ak_" + auth.RandomHex(20) }); err != nil {
			return "", "", err
		}
	}
	return secret, adminKey, nil
}

// OpenStore opens the durable store the config names.
func OpenStore(cfg *config.Config) (*store.Store, error) {
	if cfg.DB != "" { // postgres:// or mysql://, shared by the nodes of a cluster
		return store.Open(context.Background(), cfg.DB)
	}
	return store.OpenSQLite(cfg.Data)
}

// New builds a node from cfg. Nothing listens until Start.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (a *App, err error) {
	if _, err := transcode.Parse(cfg.Transcode); err != nil {
		return nil, err
	}
	built := &App{Cfg: cfg, Log: log, Metrics: metrics.New()}
	a = built
	defer func() {
		if err != nil { // a is nil by now: close what was built through built
			built.Shutdown(context.Background())
		}
	}()
	if a.Store, err = OpenStore(cfg); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func(context.Context) error { return a.Store.Close() })
	secret, adminKey, err := Secrets(ctx, a.Store, cfg)
	if err != nil {
		return nil, err
	}
	a.AdminKey = adminKey
	if a.Signer, err = auth.NewSigner(secret); err != nil {
		return nil, err
	}
	rate, err := config.ParseRate(cfg.RateLimit)
	if err != nil {
		return nil, err
	}

	sm, err := newSeams(ctx, cfg, rate, a.Metrics, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, sm.close)
	a.tl, a.bus, a.presence, a.likes, a.mod = sm.tl, sm.bus, sm.presence, sm.likes, sm.mod

	// Recording and the danmaku archive (issue 10) come before the service,
	// which stamps every room message with the session clock and hands it
	// to the archive; the recorder joins the media hub as an observer below.
	mediaCfg := media.Config{
		RTMP: cfg.RTMP, GOPCache: cfg.GOPCache, PublishTakeover: cfg.PublishTakeover, PlaySignKey: cfg.PlaySignKey,
		HookPublish: cfg.HookPublish, HookUnpublish: cfg.HookUnpublish, HookPlay: cfg.HookPlay, HookRecordDone: cfg.HookRecordDone,
		HLSLowLatency: cfg.HLSLowLatency, HLSSegment: cfg.HLSSegment, HLSSegments: cfg.HLSSegments, BatchDelay: cfg.MediaBatch,
		ThumbnailEvery: cfg.ThumbnailEvery, CoverDir: coverDir(cfg),
	}
	mediaCfg.Access = media.NewAccess(mediaCfg, log.With("component", "media"))
	if a.Archive, err = archive.New(ctx, archive.Config{Buffer: cfg.ArchiveBuffer}, a.Store, a.Metrics.Reg, log); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.Archive.Close)
	recDir := cfg.RecordDir
	if recDir == "" {
		recDir = filepath.Join(cfg.Data, "recordings")
	}
	if a.Recorder, err = record.New(ctx, record.Config{Enabled: cfg.Record, Dir: recDir, SessionGap: cfg.SessionGap,
		Retention: cfg.RecordRetention, Segment: cfg.RecordSegment}, a.Store, mediaCfg.Access, log); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func(context.Context) error { return a.Recorder.Close() })

	a.Service = service.New(service.Config{Limits: message.Limits{MaxTextRunes: cfg.MaxText}, KickBlock: cfg.KickBlock}, service.Deps{
		Rooms: nil, Timeline: a.tl, Bus: a.bus, Likes: a.likes, Mod: a.mod,
		Filter: moderation.NewFilter(cfg.Keywords, cfg.KeywordMode == "mask"), Gifts: message.NewCatalogue(cfg.Gifts),
		Metrics: a.Metrics, Log: log, Clock: a.Recorder, Archive: a.Archive,
	})
	a.Rooms = room.New(a.Store, log, a.Service.Lifecycle)
	a.Service.SetRooms(a.Rooms)

	ladder, err := newLadder(cfg, log, a.Metrics.Reg, func() *media.Server { return a.Media })
	if err != nil {
		return nil, err
	}
	a.ladder = ladder
	var mediaRooms media.Rooms = a.Rooms
	if ladder != nil {
		mediaRooms, mediaCfg.Observers = ladder.Rooms(a.Rooms), []media.Observer{ladder}
		mediaCfg.Renditions = renditionsOf(ladder)
		a.closers = append(a.closers, func(context.Context) error { ladder.Close(); return nil })
	}
	a.Media, err = media.New(mediaCfg, mediaRooms, log, a.Metrics.Reg)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	a.Media.Hub().AddObserver(observeSources(ladder, a.Recorder))
	livegoHandler := livego.New(livego.Config{AdminKey: adminKey, LoopbackOpen: cfg.AdminKey == "", RTMPPort: rtmpPort(cfg.RTMP)}, a.Rooms, a.Media, log)

	a.Node, err = fanout.New(fanout.Config{Tick: cfg.Tick, BigRoom: cfg.BigRoom, BigTick: cfg.BigTick, Budget: cfg.RenderBudget, Staleness: cfg.Staleness, WarmWindow: cfg.WarmWindow},
		fanout.Deps{Timeline: a.tl, Bus: a.bus, Presence: a.presence, Likes: a.likes, Metrics: a.Metrics, Log: log, OnPresence: a.Service.Presence,
			Stale: staleFunc(a.tl)})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func(context.Context) error { a.Node.Close(); return nil })
	var place gateway.Placement
	if sm.placement != nil && cfg.HotRoom > 0 { // cluster mode: hot rooms placed on chosen nodes (R14)
		agent := sm.placement(a.Node.Online)
		a.closers = append(a.closers, func(context.Context) error { return agent.Close() })
		place = agent
	}

	if a.Quiz, err = newQuiz(ctx, cfg, a, sm); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func(context.Context) error { return a.Quiz.Close() })

	a.gw, err = gateway.New(ctx, gateway.Deps{Config: cfg, Signer: a.Signer, AdminKey: adminKey, Rooms: a.Rooms, Service: a.Service, Quiz: a.Quiz,
		Node: a.Node, Presence: a.presence, Store: a.Store, Bus: a.bus, Router: route.New(route.DefaultRules()), Placement: place, Metrics: a.Metrics, Log: log,
		Mount: func(m *http.ServeMux) {
			m.Handle("/live/", a.Media.HTTPHandler())
			m.Handle("/vod/", a.Recorder.VOD())
			m.Handle("/control/", livegoHandler)
			m.Handle("/stat/", livegoHandler)
			web.Mount(m, web.Options{RTMP: cfg.RTMP, Renditions: ladderNames(ladder), RTMPAddr: func() string {
				if ad := a.Media.RTMPAddr(); ad != nil {
					return ad.String()
				}
				return ""
			}})
		},
		StreamInfo: func(id string) (any, bool) { return a.Media.StreamInfo(id) },
		Picture:    a.Media.PictureURL, SessionCover: a.Media.SessionCoverURL,
		Recordings: a.Recorder, Archive: a.Archive,
	})
	if err != nil {
		return nil, err
	}
	a.ws, err = ws.NewServer(ws.Config{MaxMessage: cfg.MaxFrame, QueueBytes: cfg.QueueBytes, SendBuffer: cfg.SendBuffer, Heartbeat: cfg.Heartbeat,
		Compression: cfg.Compression, CheckOrigin: a.gw.CheckOrigin, Logger: log}, a.gw)
	if err != nil {
		return nil, fmt.Errorf("websocket server: %w", err)
	}
	a.gw.SetWS(a.ws)
	a.closers = append(a.closers, a.ws.Shutdown)
	registerWSMetrics(a.Metrics, a.ws)
	return a, nil
}

// rtmpPort is the port of an RTMP listen address, for play URLs.
func rtmpPort(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil && port != "" {
		return port
	}
	return "1935"
}

func maxPollMS(cfg *config.Config) int {
	steps, err := config.ParsePollIntervals(cfg.PollIntervals)
	if err != nil {
		return 2500
	}
	m := 0
	for _, s := range steps {
		m = max(m, s.MS)
	}
	return m
}

// Start listens on the HTTP address.
func (a *App) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.Cfg.HTTP)
	if err != nil {
		return fmt.Errorf("listen %s: %w", a.Cfg.HTTP, err)
	}
	a.httpLn = ln
	if err := a.Media.Start(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("media: %w", err)
	}
	a.http = &http.Server{Handler: a.gw.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(a.Log.Handler(), slog.LevelDebug)}
	go func() {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.Log.Error("http server", "err", err)
		}
	}()
	a.Log.Info("roomcast serving", "http", ln.Addr().String())
	return nil
}

// HTTPAddr is the address the HTTP server listens on (after Start).
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// Shutdown stops accepting, closes WebSocket connections with 1001 going
// away after flushing, stops the node and closes the stores.
func (a *App) Shutdown(ctx context.Context) error {
	a.shutMu.Lock()
	defer a.shutMu.Unlock()
	if a.closers == nil {
		return nil // already shut down
	}
	var errsOut []error
	if a.gw != nil {
		a.gw.SetDraining()
	}
	if a.Media != nil { // ends live streams cleanly before the listeners go
		if err := a.Media.Shutdown(ctx); err != nil {
			errsOut = append(errsOut, err)
		}
	}
	if a.http != nil {
		if err := a.http.Shutdown(ctx); err != nil {
			errsOut = append(errsOut, err)
		}
	}
	if a.Node != nil { // what was acknowledged goes out before the connections close
		if err := a.Node.Flush(ctx); err != nil {
			errsOut = append(errsOut, err)
		}
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](ctx); err != nil {
			errsOut = append(errsOut, err)
		}
	}
	a.closers = nil
	return errors.Join(errsOut...)
}
