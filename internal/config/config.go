// Package config holds roomcast's one Config and loads it from flags,
// ROOMCAST_* environment variables and an optional JSON config file, in that
// order of precedence. Every field documents what its zero value means.
package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"roomcast/internal/message"
)

// Config is the whole server configuration.
type Config struct {
	// Listeners.
	HTTP string // HTTP API, WebSocket, pages, HTTP-FLV and HLS; default ":8080"
	RTMP string // RTMP ingest and play; default ":1935"; "" disables RTMP
	// PublicURL is the base URL people reach this server at (behind a
	// reverse proxy, e.g. "https://live.example.com"), used in the links
	// roomcast prints; "" means http://localhost:PORT from HTTP.
	PublicURL string

	// Data is the directory holding the embedded SQLite database (rooms,
	// keys, secrets, settings); default "./data".
	Data string
	// DB is an optional SQL DSN (postgres://…, mysql://…) replacing SQLite
	// for durable records; "" means SQLite in Data.
	DB string
	// Redis switches timeline, presence, rate limits and bus to Redis
	// (redis://host:port/db, or a comma-separated cluster seed list); ""
	// means the in-memory single-node mode.
	Redis string
	// RedisPrefix starts every Redis key and channel of this cluster, so
	// several clusters (or tests) can share one Redis; default "rc:".
	RedisPrefix string

	// RenderBudget is messages per second per room delivered to each viewer;
	// 0 means unlimited (no priority selection, pure seq order).
	RenderBudget int
	// Tick is the merge window of a room's fan-out; default 100ms.
	Tick time.Duration
	// BigRoom is the viewer count from which a room merges over BigTick
	// instead of Tick (default 1000; negative disables).
	BigRoom int
	BigTick time.Duration // default 200ms
	// BigSpread spreads a big room's writes over BigTick in staggered
	// groups (internal/fanout/spread.go); default true.
	BigSpread bool
	// HotRoom is the online count from which a room is placed on nodes
	// chosen for it (R14, cluster mode); it stays placed until it falls
	// under half of it. 0 disables placement (every room is served where
	// its viewers connect). Default 5000.
	HotRoom int
	// PlacementBalance bounds each node's share of the hot rooms' load to
	// this many times its weighted average; must be > 1; default 1.25.
	PlacementBalance float64
	// Advertise is this node's public base URL (http(s)://host:port) that
	// clients are sent to; "" means the node carries no placed hot room
	// (it still serves every room a client asks it for).
	Advertise string
	// Weight is this node's relative capacity for hot rooms; default 1.
	Weight float64
	// AdminKey protects admin APIs; "" means generated on first start and
	// kept in the data dir.
	AdminKey string
	// Secret signs user tokens (HS256); "" means generated and kept.
	Secret string
	// RateLimit is the per-user send limit, "N/duration" (e.g. "5/10s");
	// "0" or "" turns it off.
	RateLimit string
	// RateLimitScope is where a cluster keeps the rate limit: "node" (each
	// node limits the users sending through it, no Redis command per send;
	// default) or "cluster" (one bucket per user in Redis, one Lua call per
	// send). A single node is always "node".
	RateLimitScope string

	Guest      bool // POST /api/guest hands out level-0 tokens; default true
	PublicRead bool // reading (poll, WebSocket) needs no token; default true

	Staleness      time.Duration // a poll cursor further behind resets; default 5s; negative disables
	WarmWindow     time.Duration // how much recent history a new viewer gets; default 3s
	RetentionCount int           // messages kept per room; default 10000
	RetentionAge   time.Duration // default 10m
	PollIntervals  string        // "under:ms" pairs, "*" for the rest; default "100:1500,10000:2000,*:2500"

	Heartbeat   time.Duration // WebSocket heartbeat period; silent for 2 periods = closed; default 25s
	QueueBytes  int           // per-connection send queue bound in bytes; default 1 MiB
	SendBuffer  int           // per-connection kernel send buffer (SO_SNDBUF); 0 = kernel autotuning
	MaxFrame    int           // largest accepted client frame in bytes; default 16 KiB
	Compression bool          // allow permessage-deflate; default false
	Origins     string        // comma-separated allowed WebSocket origins; "" = same host only; "*" = any
	MaxText     int           // max characters of a message text; default 200

	Keywords    string        // comma-separated blocked words
	KeywordMode string        // "reject" (default) or "mask"
	KickBlock   time.Duration // how long a kicked user may not re-enter; default 5m

	// QuizDelay is added to every quiz answer window, the allowance for the
	// stream's latency (issue 12); default 3s, 0 = none.
	QuizDelay time.Duration
	// QuizRevivals is how many revival cards a player may use per activity;
	// default 1, 0 = none.
	QuizRevivals int
	// RainRate is the red-packet grabs per second each node admits (issue
	// 13, its token bucket); default 2000, 0 = no limit.
	RainRate int

	// Gifts is the gift catalogue (config file only); empty = defaults.
	Gifts []message.GiftDef

	// Media (RTMP, HTTP-FLV, HLS).
	GOPCache        bool          // send the cached GOP to new viewers; default true
	PublishTakeover bool          // a second publisher replaces the first instead of being refused
	PlaySignKey     string        // when set, play URLs need ?expires=&sign=HMAC
	HookPublish     string        // URL POSTed on publish; non-2xx refuses
	HookUnpublish   string        // URL POSTed on unpublish
	HookPlay        string        // URL POSTed on play; non-2xx refuses
	PollKeepAlive   bool          // a keep-alive poller's next polls are read and answered off net/http's per-request machinery (anything else on the connection goes back to net/http); default true
	MediaBatch      time.Duration // longest a frame waits for its FLV/RTMP viewers' next write by the stream's shared writer (more tags per syscall; a key frame or 64 KiB queued write at once); default 40ms; 0 = off (every frame written at once)
	HLSLowLatency   bool          // low-latency HLS variant
	HLSSegment      time.Duration // target segment duration; default 1s
	HLSSegments     int           // segments in the playlist; default 7
	// ThumbnailEvery is the least time between two decodes of a live room's
	// picture (/live/{room}.jpg); default 10s; 0 means the default.
	ThumbnailEvery time.Duration
	// Transcode is the quality ladder, "720p:2500k,480p:1000k,240p:400k":
	// one ffmpeg per live room publishes each rendition as room
	// {room}_{name}; "" (the default) means off.
	Transcode string

	// Recording and replay (issue 10).
	Record          bool          // record live sessions (rooms without their own setting); default true
	RecordDir       string        // where recordings go; "" means DATA/recordings
	RecordSegment   time.Duration // recording segment length, the most a crash can lose; default 4s
	RecordRetention time.Duration // delete recordings of sessions ended longer ago; 0 = keep forever
	SessionGap      time.Duration // a publisher back within it continues the session; default 30s
	HookRecordDone  string        // URL POSTed when a session's recording is complete
	ArchiveBuffer   int           // danmaku archive queue bound (messages); default 100000

	LogLevel string // debug, info (default), warn, error
	LogJSON  bool
	Pprof    bool // expose /debug/pprof behind the admin key; default true

	// ShutdownGrace bounds graceful shutdown; default 10s.
	ShutdownGrace time.Duration
}

// RegisterFlags defines every setting on fs, with defaults, writing into c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTP, "http", ":8080", "HTTP listen address")
	fs.StringVar(&c.RTMP, "rtmp", ":1935", "RTMP listen address (\"\" disables)")
	fs.StringVar(&c.PublicURL, "public-url", "", "base URL of this server in printed links (default http://localhost:PORT)")
	fs.StringVar(&c.Data, "data", "./data", "data directory (SQLite, generated secrets)")
	fs.StringVar(&c.DB, "db", "", "SQL DSN for durable records (postgres://, mysql://); default SQLite in --data")
	fs.StringVar(&c.Redis, "redis", "", "Redis URL or cluster seeds for multi-node mode")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "rc:", "prefix of every Redis key and channel (cluster mode)")
	fs.IntVar(&c.RenderBudget, "render-budget", 20, "messages/s per room delivered to each viewer (0 = unlimited)")
	fs.DurationVar(&c.Tick, "tick", 100*time.Millisecond, "fan-out merge window")
	fs.IntVar(&c.BigRoom, "big-room", 1000, "viewers from which a room merges over --big-room-tick (negative = never)")
	fs.DurationVar(&c.BigTick, "big-room-tick", 200*time.Millisecond, "merge window of big rooms")
	fs.BoolVar(&c.BigSpread, "big-room-spread", true, "write a big room's viewers in up to 8 groups at staggered phases of --big-room-tick instead of all at once (lower latency; at a steady rate ~15 % more writes)")
	fs.IntVar(&c.HotRoom, "hot-room", 5000, "online count from which a room is placed on chosen nodes (cluster mode; 0 = off)")
	fs.Float64Var(&c.PlacementBalance, "placement-balance", 1.25, "no node carries more than this × its weighted share of hot rooms (> 1)")
	fs.StringVar(&c.Advertise, "advertise", "", "this node's public base URL for hot-room placement (\"\" = carries no placed room)")
	fs.Float64Var(&c.Weight, "weight", 1, "this node's relative capacity for hot rooms (> 0)")
	fs.StringVar(&c.AdminKey, "admin-key", "", "admin API key (generated if empty)")
	fs.StringVar(&c.Secret, "secret", "", "token signing secret (generated if empty)")
	fs.StringVar(&c.RateLimit, "rate-limit", "5/10s", "per-user send rate, N/duration (0 = off)")
	fs.StringVar(&c.RateLimitScope, "rate-limit-scope", "node", "where a cluster keeps --rate-limit: node (per node, no Redis command per send) or cluster (shared in Redis, one Lua call per send)")
	fs.BoolVar(&c.Guest, "guest", true, "enable guest tokens (POST /api/guest)")
	fs.BoolVar(&c.PublicRead, "public-read", true, "reading a room needs no token")
	fs.DurationVar(&c.Staleness, "staleness", 5*time.Second, "a cursor further behind than this resets (negative = never)")
	fs.DurationVar(&c.WarmWindow, "warm-window", 3*time.Second, "history a new viewer receives at once")
	fs.IntVar(&c.RetentionCount, "retention-count", 10000, "messages kept per room")
	fs.DurationVar(&c.RetentionAge, "retention-age", 10*time.Minute, "maximum age of kept messages")
	fs.StringVar(&c.PollIntervals, "poll-intervals", "100:1500,10000:2000,*:2500", "poll_after_ms by online count (under:ms,...)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 25*time.Second, "WebSocket heartbeat period")
	fs.IntVar(&c.QueueBytes, "queue-bytes", 1<<20, "per-connection send queue bound (bytes)")
	fs.IntVar(&c.SendBuffer, "socket-send-buffer", 0, "WebSocket kernel send buffer per connection in bytes (0 = kernel default)")
	fs.IntVar(&c.MaxFrame, "max-frame", 16<<10, "largest client WebSocket frame (bytes)")
	fs.BoolVar(&c.Compression, "compression", false, "allow WebSocket permessage-deflate")
	fs.StringVar(&c.Origins, "origins", "", "allowed WebSocket origins, comma-separated (\"\" = same host, \"*\" = any)")
	fs.IntVar(&c.MaxText, "max-text", 200, "max characters per message")
	fs.StringVar(&c.Keywords, "keywords", "", "blocked words, comma-separated")
	fs.StringVar(&c.KeywordMode, "keyword-mode", "reject", "reject or mask messages with blocked words")
	fs.DurationVar(&c.KickBlock, "kick-block", 5*time.Minute, "re-entry block after a kick")
	fs.DurationVar(&c.QuizDelay, "quiz-delay", 3*time.Second, "added to every quiz answer window: the allowance for the stream's latency")
	fs.IntVar(&c.QuizRevivals, "quiz-revivals", 1, "revival cards a player may use per quiz activity")
	fs.IntVar(&c.RainRate, "rain-rate", 2000, "red-packet grabs admitted per second per node (0 = no limit)")
	fs.BoolVar(&c.GOPCache, "gop-cache", true, "start new viewers from the cached GOP")
	fs.BoolVar(&c.PublishTakeover, "publish-takeover", false, "a second publisher takes over a live room")
	fs.StringVar(&c.PlaySignKey, "play-sign-key", "", "HMAC key for signed play URLs (empty = off)")
	fs.StringVar(&c.HookPublish, "hook-publish", "", "on_publish webhook URL")
	fs.StringVar(&c.HookUnpublish, "hook-unpublish", "", "on_unpublish webhook URL")
	fs.StringVar(&c.HookPlay, "hook-play", "", "on_play webhook URL")
	fs.BoolVar(&c.PollKeepAlive, "poll-keepalive", true, "read and answer a keep-alive poller's next polls on a lean HTTP/1.1 path; anything else on the connection goes back to net/http (false: every request through net/http)")
	fs.DurationVar(&c.MediaBatch, "media-batch", 40*time.Millisecond, "longest a frame waits for the FLV/RTMP viewers' next write (the stream's shared writer writes every viewer's queued frames then); a key frame or 64 KiB queued is written at once (0 = off: every frame at once)")
	fs.BoolVar(&c.HLSLowLatency, "hls-low-latency", false, "serve low-latency HLS")
	fs.DurationVar(&c.HLSSegment, "hls-segment", time.Second, "HLS target segment duration")
	fs.IntVar(&c.HLSSegments, "hls-segments", 7, "HLS segments in the playlist")
	fs.StringVar(&c.Transcode, "transcode", "", "quality ladder, e.g. \"720p:2500k,480p:1000k,240p:400k\" (needs ffmpeg; \"\" = off)")
	fs.DurationVar(&c.ThumbnailEvery, "thumbnail-every", 10*time.Second, "least time between two decodes of a live room's picture (/live/{room}.jpg)")
	fs.BoolVar(&c.Record, "record", true, "record live sessions (rooms can turn it off or on: PUT /api/rooms/{id}/recording)")
	fs.StringVar(&c.RecordDir, "record-dir", "", "directory of recordings (default DATA/recordings)")
	fs.DurationVar(&c.RecordSegment, "record-segment", 4*time.Second, "recording segment length (cut at key frames); the most a crash can lose")
	fs.DurationVar(&c.RecordRetention, "record-retention", 0, "delete recordings of sessions ended longer ago than this (0 = keep forever)")
	fs.DurationVar(&c.SessionGap, "session-gap", 30*time.Second, "a publisher reconnecting within this continues the session")
	fs.StringVar(&c.HookRecordDone, "hook-record-done", "", "on_record_done webhook URL")
	fs.IntVar(&c.ArchiveBuffer, "archive-buffer", 100000, "messages the danmaku archive may queue while SQL is slow or down")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", false, "JSON logs")
	fs.BoolVar(&c.Pprof, "pprof", true, "serve /debug/pprof behind the admin key")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 10*time.Second, "graceful shutdown bound")
}

// Load parses args into a Config: flags first, then ROOMCAST_<FLAG> variables
// from env (with - as _), then the JSON file named by --config (keys are flag
// names; "gifts" holds the catalogue). lookupEnv is os.LookupEnv in main.
func Load(name string, args []string, lookupEnv func(string) (string, bool)) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.RegisterFlags(fs)
	var file string
	fs.StringVar(&file, "config", "", "JSON config file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if file == "" {
		if v, ok := lookupEnv("ROOMCAST_CONFIG"); ok {
			file = v
		}
	}
	var fileVals map[string]json.RawMessage
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		if err := json.Unmarshal(raw, &fileVals); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	var applyErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" || applyErr != nil {
			return
		}
		env := "ROOMCAST_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				applyErr = fmt.Errorf("%s: %w", env, err)
			}
			return
		}
		if raw, ok := fileVals[f.Name]; ok {
			v, err := rawToString(raw)
			if err == nil {
				err = fs.Set(f.Name, v)
			}
			if err != nil {
				applyErr = fmt.Errorf("config file key %q: %w", f.Name, err)
			}
		}
	})
	if applyErr != nil {
		return nil, applyErr
	}
	for k := range fileVals {
		if k == "gifts" {
			continue
		}
		if fs.Lookup(k) == nil {
			return nil, fmt.Errorf("config file: unknown key %q", k)
		}
	}
	if raw, ok := fileVals["gifts"]; ok {
		if err := json.Unmarshal(raw, &c.Gifts); err != nil {
			return nil, fmt.Errorf("config file gifts: %w", err)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func rawToString(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", errors.New("value must be a string, number or boolean")
}

// Default returns the configuration with every default, as `serve` with no
// flags would have it.
func Default() *Config {
	c, err := Load("roomcast", nil, func(string) (string, bool) { return "", false })
	if err != nil {
		panic(err) // defaults are constants; a failure is a programming error
	}
	return c
}

// Validate checks values that flags cannot.
func (c *Config) Validate() error {
	if _, err := ParseRate(c.RateLimit); err != nil {
		return fmt.Errorf("--rate-limit: %w", err)
	}
	if c.RateLimitScope != "node" && c.RateLimitScope != "cluster" {
		return fmt.Errorf("--rate-limit-scope %q: want node or cluster", c.RateLimitScope)
	}
	if _, err := ParsePollIntervals(c.PollIntervals); err != nil {
		return fmt.Errorf("--poll-intervals: %w", err)
	}
	if c.RenderBudget < 0 {
		return errors.New("--render-budget must be ≥ 0")
	}
	if c.Tick <= 0 {
		return errors.New("--tick must be > 0")
	}
	if c.KeywordMode != "reject" && c.KeywordMode != "mask" {
		return errors.New(`--keyword-mode must be "reject" or "mask"`)
	}
	if c.RecordSegment < 0 || c.RecordRetention < 0 || c.SessionGap < 0 {
		return errors.New("--record-segment, --record-retention and --session-gap must be ≥ 0")
	}
	if c.Heartbeat <= 0 {
		return errors.New("--heartbeat must be > 0")
	}
	if c.MediaBatch < 0 {
		return errors.New("--media-batch must be ≥ 0 (0 = off: every frame written at once)")
	}
	if c.HotRoom < 0 {
		return errors.New("--hot-room must be ≥ 0 (0 = off)")
	}
	if !(c.PlacementBalance > 1) {
		return errors.New("--placement-balance must be > 1")
	}
	if !(c.Weight > 0) {
		return errors.New("--weight must be > 0")
	}
	if c.Advertise != "" {
		u, err := url.Parse(c.Advertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("--advertise %q: want http(s)://host:port", c.Advertise)
		}
		c.Advertise = u.Scheme + "://" + u.Host
	}
	if c.QuizDelay < 0 || c.QuizRevivals < 0 || c.RainRate < 0 {
		return errors.New("--quiz-delay, --quiz-revivals and --rain-rate must be ≥ 0")
	}
	return nil
}

// Rate is a parsed rate limit: N events per Per. The zero Rate is off.
type Rate struct {
	N   int
	Per time.Duration
}

// Off reports whether r imposes no limit.
func (r Rate) Off() bool { return r.N <= 0 || r.Per <= 0 }

// ParseRate parses "N/duration" ("5/10s", "20/1m"); "" and "0" mean off.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || s == "off" {
		return Rate{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("want N/duration, got %q", s)
	}
	cnt, err := strconv.Atoi(n)
	if err != nil || cnt < 0 {
		return Rate{}, fmt.Errorf("bad count in %q", s)
	}
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("bad duration in %q", s)
	}
	return Rate{N: cnt, Per: d}, nil
}

// PollStep is one row of the poll interval table: rooms with fewer than
// Under viewers (Under 0 = any size) are told to poll every MS milliseconds.
type PollStep struct {
	Under int `json:"under"`
	MS    int `json:"ms"`
}

// ParsePollIntervals parses "100:1500,10000:2000,*:2500".
func ParsePollIntervals(s string) ([]PollStep, error) {
	var steps []PollStep
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, ms, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("want under:ms, got %q", part)
		}
		var step PollStep
		if u != "*" {
			n, err := strconv.Atoi(u)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("bad threshold %q", u)
			}
			step.Under = n
		}
		v, err := strconv.Atoi(ms)
		if err != nil || v < 100 || v > 600000 {
			return nil, fmt.Errorf("bad interval %q (100–600000 ms)", ms)
		}
		step.MS = v
		steps = append(steps, step)
	}
	return NormalizePollSteps(steps)
}

// NormalizePollSteps sorts steps by threshold (the catch-all last) and
// checks there is exactly one catch-all.
func NormalizePollSteps(steps []PollStep) ([]PollStep, error) {
	if len(steps) == 0 {
		return nil, errors.New("empty table")
	}
	out := append([]PollStep(nil), steps...)
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Under == 0) != (out[j].Under == 0) {
			return out[j].Under == 0
		}
		return out[i].Under < out[j].Under
	})
	catchAll := 0
	for _, s := range out {
		if s.Under < 0 {
			return nil, fmt.Errorf("bad threshold %d", s.Under)
		}
		if s.Under == 0 {
			catchAll++
		}
		if s.MS < 100 || s.MS > 600000 {
			return nil, fmt.Errorf("bad interval %d ms", s.MS)
		}
	}
	if catchAll != 1 {
		return nil, errors.New(`need exactly one catch-all row ("*:ms" or under 0)`)
	}
	return out, nil
}
