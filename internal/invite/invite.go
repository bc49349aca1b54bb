// Package invite runs invitations (issue 13, G2): a user asks for a code,
// another user redeems it, and both get a revival card for the live quiz.
// Each code is redeemed once and each user redeems one code in all,
// decided by the SQL store in one transaction, so it holds on every node
// and under concurrent redemptions.
package invite

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"roomcast/internal/errs"
	"roomcast/internal/store"
)

// Error codes (a contract: each refusal has its own).
const (
	CodeOwnInvitation   = "own_invitation"     // redeeming one's own code
	CodeAlreadyRedeemed = "already_redeemed"   // the user redeemed a code before
	CodeInvitationUsed  = "invitation_used"    // the code was redeemed by someone
	CodeUnknown         = "unknown_invitation" // no such code
)

// Statuses maps the codes to HTTP statuses (registered in errs).
var Statuses = map[string]int{CodeOwnInvitation: 409, CodeAlreadyRedeemed: 409, CodeInvitationUsed: 409, CodeUnknown: 404}

// CardsEach is the revival cards a redemption gives each of the two users.
const CardsEach = 1

// Store is what invitations keep in SQL (*store.Store).
type Store interface {
	OpenInvitation(ctx context.Context, owner string) (string, error)
	CreateInvitation(ctx context.Context, code, owner string, at time.Time) error
	RedeemInvitation(ctx context.Context, code, user string, cards int, at time.Time) (string, error)
}

// Service issues and redeems codes.
type Service struct {
	st  Store
	now func() time.Time
}

// New returns the invitation service on st.
func New(st Store) *Service { return &Service{st: st, now: time.Now} }

// alphabet has no 0/O or 1/I/L: codes are read aloud and typed.
const alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

func newCode() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func unavailable(err error) error {
	return &errs.Error{Code: errs.Unavailable, Message: "invitation store unavailable, try again: " + err.Error()}
}

// Create returns user's open code (created false) or a new one: a user has
// at most one unredeemed code at a time.
func (s *Service) Create(ctx context.Context, user string) (code string, created bool, err error) {
	if user == "" {
		return "", false, errs.New(errs.Unauthorized, "inviting needs a user token")
	}
	code, err = s.st.OpenInvitation(ctx, user)
	if err == nil {
		return code, false, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", false, unavailable(err)
	}
	for range 5 {
		code = newCode()
		err = s.st.CreateInvitation(ctx, code, user, s.now())
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return "", false, unavailable(fmt.Errorf("invite: create: %w", err))
	}
	return code, true, nil
}

// Redemption is a redeemed code.
type Redemption struct {
	Code      string `json:"code"`
	Inviter   string `json:"inviter"`
	CardsEach int    `json:"cards_each"`
}

// Redeem redeems code for user: both get CardsEach revival cards.
func (s *Service) Redeem(ctx context.Context, user, code string) (*Redemption, error) {
	if user == "" {
		return nil, errs.New(errs.Unauthorized, "redeeming needs a user token")
	}
	if len(code) == 0 || len(code) > 32 {
		return nil, errs.New(CodeUnknown, "no such invitation code")
	}
	owner, err := s.st.RedeemInvitation(ctx, code, user, CardsEach, s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errs.New(CodeUnknown, "no such invitation code")
	case errors.Is(err, store.ErrOwnInvitation):
		return nil, errs.New(CodeOwnInvitation, "you cannot redeem your own invitation")
	case errors.Is(err, store.ErrAlreadyRedeemed):
		return nil, errs.New(CodeAlreadyRedeemed, "you have already redeemed an invitation")
	case errors.Is(err, store.ErrInvitationUsed):
		return nil, errs.New(CodeInvitationUsed, "this invitation was already redeemed")
	case err != nil:
		return nil, unavailable(err)
	}
	return &Redemption{Code: code, Inviter: owner, CardsEach: CardsEach}, nil
}
