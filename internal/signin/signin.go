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

// Issue stores a new one-time code valid for CodeTTL and returns it.
func Issue(ctx context.Context, st Store, now time.Time) (string, error) {
	_, _ = st.DeleteSettingsBefore(ctx, prefix, now.UnixMilli()) // tidy expired codes; best effort
	code := auth.RandomHex(16)
	exp := now.Add(CodeTTL).UnixMilli()
	if err := st.SetSetting(ctx, key(code), strconv.FormatInt(exp, 10)); err != nil {
		return "", err
	}
	return code, nil
}

// Redeem uses code up: nil the first time within its validity, ErrBadCode
// after that, for an unknown code, or an expired one.
func Redeem(ctx context.Context, st Store, code string, now time.Time) error {
	code = strings.TrimSpace(code)
	if len(code) != 32 {
		return ErrBadCode
	}
	v, err := st.TakeSetting(ctx, key(code))
	if errors.Is(err, store.ErrNotFound) {
		return ErrBadCode
	}
	if err != nil {
		return err
	}
	exp, err := strconv.ParseInt(v, 10, 64)
	if err != nil || now.UnixMilli() > exp {
		return ErrBadCode
	}
	return nil
}

// Session signs the admin session token a redeemed code (or the admin
// key) is exchanged for.
func Session(s *auth.Signer) (string, error) {
	return s.Sign(auth.Claims{Sub: "admin", Name: "admin", Level: 100, Role: auth.RoleAdmin}, SessionTTL)
}

func key(code string) string {
	sum := sha256.Sum256([]byte(code))
	return prefix + hex.EncodeToString(sum[:])
}
