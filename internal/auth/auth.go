// Package auth signs and verifies user tokens (HS256 JWTs with sub, name,
// level, role, exp), checks the admin key, and mints guest identities.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"roomcast/internal/errs"
)

// Roles a token may carry.
const (
	RoleViewer = "viewer"
	RoleAnchor = "anchor"
	RoleAdmin  = "admin"
)

// Claims is what a roomcast token says about its bearer.
type Claims struct {
	Sub   string `json:"sub"`
	Name  string `json:"name"`
	Level int    `json:"level"`
	Role  string `json:"role"`
	Exp   int64  `json:"exp"`
}

type jwtClaims struct {
	Name  string `json:"name"`
	Level int    `json:"level"`
	Role  string `json:"role"`
	jwt.RegisteredClaims
}

// Signer signs and verifies tokens with one secret.
type Signer struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time
	seen   verified // tokens verified before
}

// NewSigner returns a Signer for secret (which must not be empty).
func NewSigner(secret string) (*Signer, error) {
	if secret == "" {
		return nil, errors.New("auth: empty secret")
	}
	s := &Signer{secret: []byte(secret), now: time.Now}
	s.parser = jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return s.now() }))
	return s, nil
}

// Validate checks claims that must hold for any token.
func (c Claims) Validate() error {
	if c.Sub == "" || len(c.Sub) > 128 {
		return errors.New("sub must be 1–128 characters")
	}
	if len(c.Name) > 64 {
		return errors.New("name longer than 64 bytes")
	}
	if c.Level < 0 || c.Level > 100 {
		return errors.New("level must be 0–100")
	}
	switch c.Role {
	case RoleViewer, RoleAnchor, RoleAdmin:
	default:
		return fmt.Errorf("role must be viewer, anchor or admin, not %q", c.Role)
	}
	return nil
}

// Sign returns a token for c valid for ttl (c.Exp is ignored).
func (s *Signer) Sign(c Claims, ttl time.Duration) (string, error) {
	if c.Role == "" {
		c.Role = RoleViewer
	}
	if c.Name == "" {
		c.Name = c.Sub
	}
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	now := s.now()
	jc := jwtClaims{Name: c.Name, Level: c.Level, Role: c.Role, RegisteredClaims: jwt.RegisteredClaims{
		Subject: c.Sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jc).SignedString(s.secret)
}

// Verify checks tok and returns its claims. Errors are *errs.Error with code
// bad_token or token_expired.
func (s *Signer) Verify(tok string) (Claims, error) {
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return Claims{}, errs.New(errs.Unauthorized, "a token is required")
	}
	if len(tok) > 4096 {
		return Claims{}, errs.New(errs.BadToken, "token too long")
	}
	if c, ok := s.seen.get(tok, s.now()); ok {
		return c, nil
	}
	var jc jwtClaims
	_, err := s.parser.ParseWithClaims(tok, &jc, func(*jwt.Token) (any, error) { return s.secret, nil })
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Claims{}, errs.New(errs.TokenExpired, "token expired")
		}
		return Claims{}, errs.New(errs.BadToken, "invalid token")
	}
	c := Claims{Sub: jc.Subject, Name: jc.Name, Level: jc.Level, Role: jc.Role}
	if jc.ExpiresAt != nil {
		c.Exp = jc.ExpiresAt.Unix()
	}
	if err := c.Validate(); err != nil {
		return Claims{}, errs.New(errs.BadToken, "invalid token claims: "+err.Error())
	}
	s.seen.put(tok, c)
	return c, nil
}

// CheckKey compares a presented admin key with the real one in constant time.
func CheckKey(presented, key string) bool {
	if key == "" || presented == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(presented), []byte(key)) == 1
}

// BearerToken extracts the token of an "Authorization: Bearer X" header.
func BearerToken(header string) string {
	const p = "Bearer "
	if len(header) > len(p) && strings.EqualFold(header[:len(p)], p) {
		return strings.TrimSpace(header[len(p):])
	}
	return ""
}

// RandomHex returns n random bytes as hex (secrets, keys, ids).
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

var guestAdjectives = []string{"Swift", "Quiet", "Bright", "Lucky", "Brave", "Calm", "Merry", "Clever", "Sunny", "Bold"}
var guestNouns = []string{"Panda", "Falcon", "Otter", "Tiger", "Koala", "Lynx", "Heron", "Fox", "Crane", "Whale"}

// GuestClaims returns claims for a new guest: level 0, viewer, a generated
// id and a readable generated name.
func GuestClaims() Claims {
	id := RandomHex(6)
	b := []byte(id)
	name := guestAdjectives[int(b[0])%len(guestAdjectives)] + guestNouns[int(b[1])%len(guestNouns)] + strings.ToUpper(id[:4])
	return Claims{Sub: "guest-" + id, Name: name, Level: 0, Role: RoleViewer}
}
