package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/config"
	"roomcast/internal/redisgate"
)

// MaxClockSkew is how far this machine's clock may be from the shared
// store's (Redis, SQL) before doctor complains: nodes stamp messages,
// presence and sessions with their own clocks.
const MaxClockSkew = time.Second

// A finding is one line of doctor's report.
type finding struct {
	level string // "ok", "WARN", "FAIL"
	text  string
}

// Doctor checks the set-up `serve` would run with cfg and writes what it
// finds in words: ports in use, a data dir it cannot write, Redis or SQL
// unreachable, ffmpeg missing for a feature that needs it, and this
// machine's clock against the shared stores' (which all nodes share).
// now is the local clock (time.Now; tests skew it). It returns the number
// of problems (FAIL lines).
func Doctor(ctx context.Context, cfg *config.Config, now func() time.Time, w io.Writer) int {
	var out []finding
	add := func(level, format string, a ...any) { out = append(out, finding{level, fmt.Sprintf(format, a...)}) }

	checkPort(add, "HTTP", "--http", cfg.HTTP)
	if cfg.RTMP != "" {
		checkPort(add, "RTMP", "--rtmp", cfg.RTMP)
	} else {
		add("ok", "RTMP ingest is off (--rtmp \"\"): nobody can publish a stream")
	}
	checkDataDir(add, cfg.Data)
	if cfg.DB != "" {
		checkSQL(ctx, add, cfg, now)
	}
	if cfg.Redis != "" {
		checkRedis(ctx, add, cfg.Redis, now)
	}
	checkFFmpeg(add, cfg)

	fails := 0
	fmt.Fprintf(w, "roomcast doctor: the set-up `roomcast serve` would run with these flags\n\n")
	for _, f := range out {
		if f.level == "FAIL" {
			fails++
		}
		fmt.Fprintf(w, "  %-4s  %s\n", f.level, f.text)
	}
	switch fails {
	case 0:
		fmt.Fprintf(w, "\nNo problems found.\n")
	case 1:
		fmt.Fprintf(w, "\n1 problem found.\n")
	default:
		fmt.Fprintf(w, "\n%d problems found.\n", fails)
	}
	return fails
}

type addFunc func(level, format string, a ...any)

func checkPort(add addFunc, what, flag, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		add("ok", "%s port %s (%s) is free", what, addr, flag)
		return
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		add("FAIL", "%s port %s (%s) is in use by another program — is roomcast already running? Stop it, or choose another port with %s", what, addr, flag, flag)
	case errors.Is(err, syscall.EACCES):
		add("FAIL", "%s port %s (%s) needs privileges: ports under 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit in deploy/ grants it)", what, addr, flag)
	default:
		add("FAIL", "%s address %s (%s) cannot be listened on: %v", what, addr, flag, err)
	}
}

func checkDataDir(add addFunc, dir string) {
	if dir == "" {
		add("FAIL", "no data dir (--data): roomcast keeps its secrets, SQLite database and covers there")
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		add("FAIL", "data dir %s (--data) cannot be created: %v", dir, unwrapPath(err))
		return
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		add("FAIL", "data dir %s (--data) is not writable by this user (uid %d): %v — fix its owner or permissions", dir, os.Getuid(), unwrapPath(err))
		return
	}
	f.Close()
	os.Remove(f.Name())
	abs, _ := filepath.Abs(dir)
	add("ok", "data dir %s is writable", abs)
}

func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func checkSQL(ctx context.Context, add addFunc, cfg *config.Config, now func() time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	type result struct {
		err  error
		skew time.Duration
		ok   bool
	}
	done := make(chan result, 1)
	go func() { // store.Open has no context for its first connection
		st, err := OpenStore(cfg)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer st.Close()
		q := `SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)`
		if strings.HasPrefix(cfg.DB, "mysql") {
			q = `SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)`
		}
		before := now()
		var ms int64
		if err := st.DB().QueryRowContext(ctx, q).Scan(&ms); err != nil {
			done <- result{err: err}
			return
		}
		done <- result{skew: skewOf(before, now(), time.UnixMilli(ms)), ok: true}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			add("FAIL", "SQL database (--db) is unreachable or refused us: %v", redactErr(r.err, cfg.DB))
			return
		}
		add("ok", "SQL database (--db) answers")
		reportSkew(add, "the SQL database", r.skew)
	case <-ctx.Done():
		add("FAIL", "SQL database (--db) did not answer within 5 s (wrong host or port, or a firewall?)")
	}
}

func checkRedis(ctx context.Context, add addFunc, spec string, now func() time.Time) {
	opt, err := redisgate.Options(spec)
	if err != nil {
		add("FAIL", "Redis (--redis): %v", err)
		return
	}
	// A plain dial first: it names the unreachable address in words (and
	// leaves no client retrying in the background).
	for _, addr := range opt.InitAddress {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			add("FAIL", "Redis %s (--redis) is unreachable: %v — is redis-server running there, and is the port open?", addr, unwrapOp(err))
			return
		}
		c.Close()
	}
	opt.DisableRetry = true
	opt.Dialer.Timeout = 3 * time.Second
	client, err := rueidis.NewClient(opt)
	if err != nil {
		add("FAIL", "Redis %v (--redis) is unreachable: %v — is redis-server running there, and is the port open?", opt.InitAddress, err)
		return
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	before := now()
	parts, err := client.Do(ctx, client.B().Time().Build()).AsStrSlice()
	after := now()
	if err != nil || len(parts) != 2 {
		add("FAIL", "Redis %v (--redis) does not answer commands: %v", opt.InitAddress, err)
		return
	}
	var sec, usec int64
	fmt.Sscan(parts[0], &sec)
	fmt.Sscan(parts[1], &usec)
	add("ok", "Redis %v answers (mode %s)", opt.InitAddress, client.Mode())
	reportSkew(add, "Redis", skewOf(before, after, time.Unix(sec, usec*1000)))
}

// skewOf is remote's clock minus ours, taking our clock at the middle of
// the round trip.
func skewOf(before, after, remote time.Time) time.Duration {
	mid := before.Add(after.Sub(before) / 2)
	return remote.Sub(mid)
}

func reportSkew(add addFunc, what string, skew time.Duration) {
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	dir := "behind"
	if skew < 0 {
		dir = "ahead of"
	}
	if abs > MaxClockSkew {
		add("FAIL", "this machine's clock is %v %s %s's: the nodes' clocks disagree (message times, presence and session times will be off) — run NTP (systemd-timesyncd or chrony) on every node", abs.Round(10*time.Millisecond), dir, what)
		return
	}
	add("ok", "this machine's clock is within %v of %s's", abs.Round(time.Millisecond)+time.Millisecond, what)
}

// checkFFmpeg: pictures need ffmpeg; the quality ladder cannot run without it.
func checkFFmpeg(add addFunc, cfg *config.Config) {
	path, err := exec.LookPath("ffmpeg")
	if err == nil {
		add("ok", "ffmpeg found at %s (room pictures%s)", path, ladderNote(cfg))
		return
	}
	if ladderOn(cfg) {
		add("FAIL", "ffmpeg is not installed, but --transcode needs it: the quality ladder would stay off. Install it (Debian: apt install ffmpeg) or drop --transcode")
	}
	if cfg.RTMP != "" {
		add("WARN", "ffmpeg is not installed: room pictures (/live/{room}.jpg, room cards) are off. Install it (Debian: apt install ffmpeg)")
	}
}

// redactErr hides the DSN's password in err's text.
func redactErr(err error, dsn string) string {
	s := err.Error()
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.Index(dsn[i+3:], "@"); at >= 0 {
			if _, pass, ok := strings.Cut(dsn[i+3:i+3+at], ":"); ok && pass != "" {
				s = strings.ReplaceAll(s, pass, "****")
			}
		}
	}
	return s
}
