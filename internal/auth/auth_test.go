package auth

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"roomcast/internal/errs"
	"roomcast/internal/testutil"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	s, err := NewSigner("secret")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(Claims{Sub: "u1", Name: "Ann", Level: 42, Role: RoleAnchor}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sub != "u1" || c.Name != "Ann" || c.Level != 42 || c.Role != RoleAnchor || c.Exp <= time.Now().Unix() {
		t.Fatalf("claims %+v", c)
	}
	// Defaults: the role is viewer and the name the subject.
	tok, _ = s.Sign(Claims{Sub: "u2"}, time.Hour)
	if c, err := s.Verify("  " + tok + " "); err != nil || c.Role != RoleViewer || c.Name != "u2" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	s, _ := NewSigner("secret")
	other, _ := NewSigner("other secret")
	good, _ := s.Sign(Claims{Sub: "u1"}, time.Hour)
	foreign, _ := other.Sign(Claims{Sub: "u1"}, time.Hour)
	now := time.Now()
	s.now = func() time.Time { return now.Add(-2 * time.Hour) }
	expired, _ := s.Sign(Claims{Sub: "u1"}, time.Hour)
	s.now = time.Now
	// A token signed with none, or with another method, is refused even if
	// its claims are fine.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwtClaims{Role: RoleAdmin, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "root", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwtClaims{Role: RoleViewer, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "u1"}}).SignedString([]byte("secret"))
	badRole, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwtClaims{Role: "god", RegisteredClaims: jwt.RegisteredClaims{
		Subject: "u1", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}).SignedString([]byte("secret"))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","role":"admin","exp":9999999999}`)) + "." + parts[2]
	for _, c := range []struct {
		name, tok, code string
	}{
		{"empty", "", errs.Unauthorized},
		{"garbage", "not.a.token", errs.BadToken},
		{"other secret", foreign, errs.BadToken},
		{"expired", expired, errs.TokenExpired},
		{"alg none", none, errs.BadToken},
		{"no exp", noExp, errs.BadToken},
		{"bad role", badRole, errs.BadToken},
		{"tampered payload", tampered, errs.BadToken},
		{"too long", strings.Repeat("a", 5000), errs.BadToken},
	} {
		if _, err := s.Verify(c.tok); testutil.ErrCode(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
	if _, err := s.Verify(good); err != nil {
		t.Fatalf("the good token: %v", err)
	}
}

func TestSignValidates(t *testing.T) {
	s, _ := NewSigner("secret")
	for _, c := range []Claims{
		{Sub: ""}, {Sub: strings.Repeat("x", 129)}, {Sub: "u", Name: strings.Repeat("n", 65)},
		{Sub: "u", Level: -1}, {Sub: "u", Level: 101}, {Sub: "u", Role: "root"},
	} {
		if _, err := s.Sign(c, time.Hour); err == nil {
			t.Errorf("signed invalid claims %+v", c)
		}
	}
	if _, err := NewSigner(""); err == nil {
		t.Fatal("a signer with an empty secret")
	}
}

func TestCheckKeyAndBearer(t *testing.T) {
	if !CheckKey("ak_1", "ak_1") || CheckKey("ak_2", "ak_1") || CheckKey("", "") || CheckKey("x", "") || CheckKey("", "x") {
		t.Fatal("CheckKey")
	}
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer ": "", "abc": ""} {
		if got := BearerToken(h); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", h, got, want)
		}
	}
}

func TestGuestsAreDistinctViewers(t *testing.T) {
	s, _ := NewSigner("secret")
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		c := GuestClaims()
		if c.Role != RoleViewer || c.Level != 0 || !strings.HasPrefix(c.Sub, "guest-") || c.Name == "" || seen[c.Sub] {
			t.Fatalf("guest %+v", c)
		}
		seen[c.Sub] = true
		if _, err := s.Sign(c, time.Minute); err != nil {
			t.Fatalf("guest claims do not sign: %v", err)
		}
	}
	if len(RandomHex(16)) != 32 || RandomHex(8) == RandomHex(8) {
		t.Fatal("RandomHex")
	}
}

// TestVerifyRemembers: a token verified once is answered from memory with
// the same claims until its exp, then refused as expired; the memory stays
// bounded however many tokens pass.
func TestVerifyRemembers(t *testing.T) {
	s, _ := NewSigner("secret")
	tok, _ := s.Sign(Claims{Sub: "u1", Name: "Ann", Level: 7}, time.Hour)
	first, err := s.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if s.seen.size() != 1 {
		t.Fatalf("%d tokens remembered, want 1", s.seen.size())
	}
	if again, err := s.Verify(tok); err != nil || again != first {
		t.Fatalf("remembered: %+v %v, want %+v", again, err, first)
	}
	now := time.Now()
	s.now = func() time.Time { return now.Add(2 * time.Hour) }
	if _, err := s.Verify(tok); testutil.ErrCode(err) != errs.TokenExpired {
		t.Fatalf("a remembered token past its exp: %v, want %s", err, errs.TokenExpired)
	}
	s.now = time.Now
	for i := range 3 * verifiedGen {
		tok, _ := s.Sign(Claims{Sub: "u" + strconv.Itoa(i)}, time.Hour)
		if c, err := s.Verify(tok); err != nil || c.Sub != "u"+strconv.Itoa(i) {
			t.Fatalf("token %d: %+v %v", i, c, err)
		}
	}
	if n := s.seen.size(); n > 2*verifiedGen {
		t.Fatalf("%d tokens remembered, want at most %d", n, 2*verifiedGen)
	}
}
