package redisgate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Options reads --redis: a redis:// URL (with /DB), or a comma-separated
// list of Redis Cluster seeds (host:port or redis:// URLs). The options fail
// fast: no client-side cache, no transparent retries, short dials and write
// deadlines.
func Options(spec string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	var addrs []string
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "://") {
			p = "redis://" + p
		}
		o, err := rueidis.ParseURL(p)
		if err != nil {
			return opt, fmt.Errorf("--redis: %w", err)
		}
		if addrs == nil { // the first URL's credentials and database apply to all
			opt = o
		} else if o.SelectDB != opt.SelectDB {
			return opt, errors.New("--redis: seeds name different databases")
		}
		addrs = append(addrs, o.InitAddress...)
	}
	opt.InitAddress = addrs
	if len(opt.InitAddress) == 0 {
		return opt, errors.New("--redis: no address")
	}
	if len(opt.InitAddress) > 1 && opt.SelectDB != 0 {
		return opt, errors.New("--redis: a Redis Cluster has no database numbers")
	}
	opt.DisableCache = true
	// Fail fast (R16): no transparent retries, short dials and deadlines; the
	// gate answers 503 at once while Redis is down.
	opt.DisableRetry = true
	opt.Dialer.Timeout = time.Second
	opt.ConnWriteTimeout = 3 * time.Second
	// Every connection keeps a reader running, so one that dies with Redis
	// is seen dead at once and redialled on its next use. Without it a lone
	// command goes out on the caller's goroutine and a connection idle when
	// Redis died learns it only when a command fails on it: a single client
	// spreads keyed commands over 2–4 connections while PING (no key) always
	// takes the first, so after a restart the pinger reopened the gate on a
	// fresh first connection and the next keyed commands each failed with
	// EOF on a stale one, closing it again (503s after recovery).
	opt.AlwaysPipelining = true
	if opt.ClientName == "" {
		opt.ClientName = "roomcast"
	}
	return opt, nil
}
