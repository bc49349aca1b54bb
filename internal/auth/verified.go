package auth

import (
	"sync"
	"time"
)

// verified remembers tokens this Signer has verified, so that a client
// sending with one token over and over (every HTTP send carries it) pays
// the JWT parse once: it was a fifth of a node's CPU per HTTP send (issue
// 14, docs/BENCHMARKS.md). A token is the exact string whose signature was
// checked, so a hit is as good as a new check until the token's exp, which
// is checked on every hit. Memory is bounded: two generations of at most
// verifiedGen entries each (the older dropped when the newer fills; a hit
// in the older moves it to the newer), tokens longer than verifiedMaxLen
// are not kept.
type verified struct {
	mu       sync.Mutex
	cur, old map[string]Claims // guarded by mu
}

const (
	verifiedGen    = 8192
	verifiedMaxLen = 1024
)

// get returns tok's claims if tok was verified and has not expired at now.
func (v *verified) get(tok string, now time.Time) (Claims, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.cur[tok]
	if !ok {
		if c, ok = v.old[tok]; !ok {
			return Claims{}, false
		}
		delete(v.old, tok)
		v.putLocked(tok, c)
	}
	if !now.Before(time.Unix(c.Exp, 0)) {
		delete(v.cur, tok)
		return Claims{}, false
	}
	return c, true
}

// put remembers that tok verified to c.
func (v *verified) put(tok string, c Claims) {
	if len(tok) > verifiedMaxLen || c.Exp == 0 {
		return
	}
	v.mu.Lock()
	v.putLocked(tok, c)
	v.mu.Unlock()
}

func (v *verified) putLocked(tok string, c Claims) {
	if v.cur == nil || len(v.cur) >= verifiedGen {
		v.old, v.cur = v.cur, make(map[string]Claims, 64)
	}
	v.cur[tok] = c
}

// size is how many tokens are remembered.
func (v *verified) size() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.cur) + len(v.old)
}
