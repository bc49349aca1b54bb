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
	"roomcast/internal/invite"
	"roomcast/internal/keepalive"
	"roomcast/internal/rankings"
	"sync"
	"time"

	"roomcast/internal/archive"
	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/commit"
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
	rankings rankings.Board
	likes    likes.Counter
	mod      moderation.State
	livego   *livego.Handler
	rtmpAddr listenAddr // published by Start, read by the quality ladder
	gw       *gateway.Gateway
	ladder   *transcode.Ladder // nil unless --transcode (and ffmpeg, RTMP)
	ws       *ws.Server
	http     *http.Server
	httpLn   net.Listener
	keep     *keepalive.Server             // nil with --poll-keepalive=false
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

// New builds a node from cfg: every part once, with everything it needs, in
// dependency order (docs/ARCHITECTURE.md, "Construction order"). Nothing
// listens until Start.
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
	if ok, anchor := a.Store.AnchorsUnique(); !ok {
		log.Warn("the database holds two rooms for one anchor, so one room per anchor is enforced per node only; delete the extra room to have the database enforce it",
			"anchor", anchor)
	}
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
	a.rankings = sm.rankings
	if a.rankings == nil {
		a.rankings = rankings.NewMemory()
	}
	a.Rooms = room.New(a.Store, log)
	mediaCfg, err := a.buildRecording(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := a.buildLogic(cfg, sm); err != nil {
		return nil, err
	}
	if err := a.buildMedia(cfg, mediaCfg); err != nil {
		return nil, err
	}
	if err := a.buildServers(ctx, cfg, sm); err != nil {
		return nil, err
	}
	return a, nil
}

// buildRecording builds the danmaku archive and the recorder (issue 10),
// which the service (session clock, archive) and the media hub (recorder as
// an observer) are built on, and returns the media configuration whose play
// checker the recorder's VOD shares.
func (a *App) buildRecording(ctx context.Context, cfg *config.Config) (media.Config, error) {
	mediaCfg := media.Config{
		RTMP: cfg.RTMP, GOPCache: cfg.GOPCache, PublishTakeover: cfg.PublishTakeover, PlaySignKey: cfg.PlaySignKey,
		HookPublish: cfg.HookPublish, HookUnpublish: cfg.HookUnpublish, HookPlay: cfg.HookPlay, HookRecordDone: cfg.HookRecordDone,
		HLSLowLatency: cfg.HLSLowLatency, HLSSegment: cfg.HLSSegment, HLSSegments: cfg.HLSSegments, BatchDelay: cfg.MediaBatch,
		ThumbnailEvery: cfg.ThumbnailEvery, CoverDir: coverDir(cfg),
	}
	mediaCfg.Access = media.NewAccess(mediaCfg, a.Log.With("component", "media"))
	var err error
	if a.Archive, err = archive.New(ctx, archive.Config{Buffer: cfg.ArchiveBuffer}, a.Store, a.Metrics.Reg, a.Log); err != nil {
		return mediaCfg, err
	}
	a.closers = append(a.closers, a.Archive.Close)
	recDir := cfg.RecordDir
	if recDir == "" {
		recDir = filepath.Join(cfg.Data, "recordings")
	}
	if a.Recorder, err = record.New(ctx, record.Config{Enabled: cfg.Record, Dir: recDir, SessionGap: cfg.SessionGap,
		Retention: cfg.RecordRetention, Segment: cfg.RecordSegment}, a.Store, mediaCfg.Access, a.Log); err != nil {
		return mediaCfg, err
	}
	a.closers = append(a.closers, func(context.Context) error { return a.Recorder.Close() })
	return mediaCfg, nil
}

// buildLogic builds the fan-out node and, on it, the service.
func (a *App) buildLogic(cfg *config.Config, sm *seams) (err error) {
	a.Node, err = fanout.New(fanout.Config{Tick: cfg.Tick, BigRoom: cfg.BigRoom, BigTick: cfg.BigTick, NoSpread: !cfg.BigSpread, Budget: cfg.RenderBudget, Staleness: cfg.Staleness, WarmWindow: cfg.WarmWindow},
		fanout.Deps{Timeline: sm.tl, Bus: sm.bus, Presence: sm.presence, Likes: sm.likes, Metrics: a.Metrics, Log: a.Log, Stale: sm.stale})
	if err != nil {
		return err
	}
	a.closers = append(a.closers, func(context.Context) error { a.Node.Close(); return nil })
	// Group commit (issue 14, R12): a room's concurrent sends share one
	// store append (one Lua call in cluster mode).
	var committer service.Appender
	if b, ok := sm.tl.(commit.Appender); ok {
		c := commit.New(b, commit.Config{}, a.Metrics.Reg)
		a.closers = append(a.closers, func(context.Context) error { c.Close(); return nil })
		committer = c
	}
	a.Service, err = service.New(service.Config{Limits: message.Limits{MaxTextRunes: cfg.MaxText}, KickBlock: cfg.KickBlock}, service.Deps{
		Rooms: a.Rooms, Timeline: sm.tl, Commit: committer, Bus: sm.bus, Likes: sm.likes, Mod: sm.mod,
		Filter: moderation.NewFilter(cfg.Keywords, cfg.KeywordMode == "mask"), Gifts: message.NewCatalogue(cfg.Gifts),
		Metrics: a.Metrics, Log: a.Log, Clock: a.Recorder, Archive: a.Archive, Presence: a.Node, Rankings: a.rankings,
	})
	if err != nil {
		return err
	}
	a.closers = append(a.closers, func(context.Context) error { a.Service.Close(); return nil })
	return nil
}

// liveRooms is the room registry as the media hub sees it: SetLive records
// the stream starting or ending, then the service announces it to the room
// (a must-deliver live_start / live_end system message).
type liveRooms struct {
	*room.Registry
	svc *service.Service
}

func (r liveRooms) SetLive(ctx context.Context, id string, live bool) error {
	if err := r.Registry.SetLive(ctx, id, live); err != nil {
		return err
	}
	r.svc.Lifecycle(ctx, id, room.LiveEvent(live))
	return nil
}

// buildMedia builds the quality ladder (--transcode), the media server
// (RTMP ingest, HTTP-FLV, HLS) and the livego-compatible control API on it.
func (a *App) buildMedia(cfg *config.Config, mediaCfg media.Config) (err error) {
	a.ladder, err = newLadder(cfg, a.Log, a.Metrics.Reg, a.rtmpAddr.get)
	if err != nil {
		return err
	}
	var rooms media.Rooms = liveRooms{Registry: a.Rooms, svc: a.Service}
	if a.ladder != nil {
		rooms, mediaCfg.Renditions = a.ladder.Rooms(rooms), renditionsOf(a.ladder)
		mediaCfg.Observers = append(mediaCfg.Observers, a.ladder)
		a.closers = append(a.closers, func(context.Context) error { a.ladder.Close(); return nil })
	}
	mediaCfg.Observers = append(mediaCfg.Observers, observeSources(a.ladder, a.Recorder))
	a.Media, err = media.New(mediaCfg, rooms, a.Log, a.Metrics.Reg)
	if err != nil {
		return fmt.Errorf("media: %w", err)
	}
	a.livego = livego.New(livego.Config{AdminKey: a.AdminKey, LoopbackOpen: cfg.AdminKey == "", RTMPPort: rtmpPort(cfg.RTMP)}, a.Rooms, a.Media, a.Log)
	return nil
}

// buildServers builds the hot-room placement agent (cluster mode), the
// WebSocket handler and server, then the gateway that serves HTTP with them.
func (a *App) buildServers(ctx context.Context, cfg *config.Config, sm *seams) (err error) {
	var place gateway.Placement
	if sm.placement != nil && cfg.HotRoom > 0 { // cluster mode: hot rooms placed on chosen nodes (R14)
		agent := sm.placement(a.Node.Online)
		a.closers = append(a.closers, func(context.Context) error { return agent.Close() })
		place = agent
	}
	if a.Quiz, err = newQuiz(ctx, cfg, a, sm); err != nil {
		return err
	}
	a.closers = append(a.closers, func(context.Context) error { return a.Quiz.Close() })
	wsh, err := gateway.NewWSHandler(gateway.WSDeps{Signer: a.Signer, AdminKey: a.AdminKey, Service: a.Service, Quiz: a.Quiz,
		Node: a.Node, Presence: a.presence, MaxFrame: cfg.MaxFrame, Metrics: a.Metrics, Log: a.Log})
	if err != nil {
		return err
	}
	a.ws, err = ws.NewServer(ws.Config{MaxMessage: cfg.MaxFrame, QueueBytes: cfg.QueueBytes, SendBuffer: cfg.SendBuffer, Heartbeat: cfg.Heartbeat,
		Compression: cfg.Compression, CheckOrigin: gateway.OriginPolicy(cfg.Origins), Logger: a.Log}, wsh)
	if err != nil {
		return fmt.Errorf("websocket server: %w", err)
	}
	a.closers = append(a.closers, a.ws.Shutdown)
	registerWSMetrics(a.Metrics, a.ws)
	med, livegoHandler, rec := a.Media, a.livego, a.Recorder
	pages := web.New(web.Options{RTMP: cfg.RTMP, Renditions: ladderNames(a.ladder), RTMPAddr: func() string {
		if ad := med.RTMPAddr(); ad != nil {
			return ad.String()
		}
		return ""
	}})
	if cfg.PollKeepAlive {
		a.keep = keepalive.NewServer(keepalive.Config{Header: gateway.KeptHeader, InternalError: gateway.InternalErrorBody,
			IdleTimeout: httpIdleTimeout, HeaderTimeout: httpHeaderTimeout, Log: a.Log})
		registerKeepAliveMetrics(a.Metrics, a.keep)
	}
	a.gw, err = gateway.New(ctx, gateway.Deps{Config: cfg, Signer: a.Signer, AdminKey: a.AdminKey, Rooms: a.Rooms, Service: a.Service, Quiz: a.Quiz,
		Node: a.Node, Presence: a.presence, Store: a.Store, Bus: a.bus, WS: a.ws, WSHandler: wsh,
		Router: route.New(route.DefaultRules()), Placement: place, Metrics: a.Metrics, Log: a.Log,
		Handlers: map[string]http.Handler{"/live/": med.HTTPHandler(), "/vod/": rec.VOD(), "/control/": livegoHandler,
			"/stat/": livegoHandler}, Pages: pages,
		StreamInfo: func(id string) (any, bool) { return med.StreamInfo(id) },
		Picture:    med.PictureURL, SessionCover: med.SessionCoverURL,
		Recordings: rec, Archive: a.Archive, Rankings: a.rankings, Invites: invite.New(a.Store), Keep: a.keep,
	})
	return err
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

// The HTTP server's timeouts, on net/http's connections and on those the
// keep-alive poll path serves.
const (
	httpHeaderTimeout = 10 * time.Second
	httpIdleTimeout   = 120 * time.Second
)

// Start listens on the HTTP address.
func (a *App) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.Cfg.HTTP)
	if err != nil {
		return fmt.Errorf("listen %s: %w", a.Cfg.HTTP, err)
	}
	a.httpLn = ln
	if a.keep != nil { // connections it hands back reach net/http through it
		ln = a.keep.Listener(ln)
	}
	if err := a.Media.Start(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("media: %w", err)
	}
	if ad := a.Media.RTMPAddr(); ad != nil {
		a.rtmpAddr.set(loopback(ad))
	}
	a.http = &http.Server{Handler: a.gw.Handler(), ReadHeaderTimeout: httpHeaderTimeout, IdleTimeout: httpIdleTimeout,
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
	if a.keep != nil { // after net/http: nothing is handed back any more
		if err := a.keep.Shutdown(ctx); err != nil {
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
