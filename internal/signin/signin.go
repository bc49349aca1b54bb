// Package signin turns one-time sign-in codes into studio sessions (issue
// 15): the first start of a server and `roomcast admin login` issue a code
// and print a link carrying it (/studio#code=…); the studio exchanges the
// code once, through POST /api/signin, for a session — an admin token
// signed like every other roomcast token. A code is short-lived and dies
// on first use, on whichever node of a cluster redeems it, because it
// lives in the shared store and is taken out of it atomically.
//
// Only a hash of the code is stored, so reading the database does not
// reveal a usable link.
package signin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/store"
)

// Store is what sign-in needs from the durable store (*store.Store).
type Store interface {
	SetSetting(ctx context.Context, key, value string) error
	TakeSetting(ctx context.Context, key string) (string, error)
	DeleteSettingsBefore(ctx context.Context, prefix string, limit int64) (int64, error)
}

const (
	// CodeTTL is how long a sign-in link works.
	CodeTTL = 15 * time.Minute
	// SessionTTL is how long a studio session (the admin token) lasts.
	SessionTTL = 12 * time.Hour

	prefix = "signin:"
)

// ErrBadCode is returned for a code that is unknown, used or expired.
var ErrBadCode = errors.New("signin: this sign-in link is invalid, used or expired")

// Grant is what a code signs its user in as: the operator (the zero
// Grant, an admin session) or an anchor (Anchor is the user id).
type Grant struct {
	Anchor string
}

// Issue stores a new one-time admin code valid for CodeTTL and returns it.
func Issue(ctx context.Context, st Store, now time.Time) (string, error) {
	return IssueFor(ctx, st, now, Grant{})
}

// IssueFor stores a new one-time code for g, valid for CodeTTL.
func IssueFor(ctx context.Context, st Store, now time.Time, g Grant) (string, error) {
	_, _ = st.DeleteSettingsBefore(ctx, prefix, now.UnixMilli()) // tidy expired codes; best effort
	code := auth.RandomHex(16)
	v := strconv.FormatInt(now.Add(CodeTTL).UnixMilli(), 10)
	if g.Anchor != "" {
		v += " anchor " + g.Anchor
	}
	if err := st.SetSetting(ctx, key(code), v); err != nil {
		return "", err
	}
	return code, nil
}

// Redeem uses code up and returns what it grants, the first time within
// its validity; ErrBadCode after that, for an unknown code, or an expired
// one.
func Redeem(ctx context.Context, st Store, code string, now time.Time) (Grant, error) {
	code = strings.TrimSpace(code)
	if len(code) != 32 {
		return Grant{}, ErrBadCode
	}
	v, err := st.TakeSetting(ctx, key(code))
	if errors.Is(err, store.ErrNotFound) {
		return Grant{}, ErrBadCode
	}
	if err != nil {
		return Grant{}, err
	}
	expS, rest, _ := strings.Cut(v, " ")
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil || now.UnixMilli() > exp {
		return Grant{}, ErrBadCode
	}
	var g Grant
	if anchor, ok := strings.CutPrefix(rest, "anchor "); ok {
		g.Anchor = anchor
	}
	return g, nil
}

// Session signs the session token a redeemed code (or the admin key) is
// exchanged for: an admin token, or the granted anchor's token.
func Session(s *auth.Signer, g Grant) (string, auth.Claims, error) {
	c := auth.Claims{Sub: "admin", Name: "admin", Level: 100, Role: auth.RoleAdmin}
	if g.Anchor != "" {
		c = auth.Claims{Sub: g.Anchor, Name: g.Anchor, Role: auth.RoleAnchor}
	}
	tok, err := s.Sign(c, SessionTTL)
	return tok, c, err
}

func key(code string) string {
	sum := sha256.Sum256([]byte(code))
	return prefix + hex.EncodeToString(sum[:])
}
