package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// invitationSchema: invitation codes (issue 13). redeemed_by is unique, so
// a user redeems at most one code whatever node they ask; the redemption
// sets it only where it is still empty, so a code is redeemed once.
var invitationSchema = []string{
	`CREATE TABLE IF NOT EXISTS invitations (
		code VARCHAR(32) PRIMARY KEY,
		owner VARCHAR(128) NOT NULL,
		created_at BIGINT NOT NULL,
		redeemed_by VARCHAR(128),
		redeemed_at BIGINT
	)`,
	`CREATE INDEX IF NOT EXISTS invitations_owner ON invitations (owner, created_at)`,
	`CREATE UNIQUE INDEX IF NOT EXISTS invitations_redeemer ON invitations (redeemed_by)`,
}

// Redemption refusals (ErrNotFound: no such code).
var (
	ErrOwnInvitation   = errors.New("store: one's own invitation")
	ErrAlreadyRedeemed = errors.New("store: the user already redeemed an invitation")
	ErrInvitationUsed  = errors.New("store: the invitation was already redeemed")
	errRedemptionRaced = errors.New("store: redemption raced")
)

// OpenInvitation returns owner's unredeemed code, if any.
func (s *Store) OpenInvitation(ctx context.Context, owner string) (string, error) {
	var code string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT code FROM invitations WHERE owner = ? AND redeemed_by IS NULL ORDER BY created_at DESC LIMIT 1`), owner).Scan(&code)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: invitation: %w", err)
	}
	return code, nil
}

// CreateInvitation stores code for owner; ErrConflict if it is taken.
func (s *Store) CreateInvitation(ctx context.Context, code, owner string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO invitations (code, owner, created_at) VALUES (?, ?, ?)`), code, owner, at.UnixMilli())
	if err != nil && isUnique(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("store: create invitation: %w", err)
	}
	return nil
}

// RedeemInvitation redeems code for user and grants cards revival cards to
// both user and the code's owner, in one transaction: exactly once per code
// and per user, whichever node and however many at once. It returns the
// owner, or ErrNotFound, ErrOwnInvitation, ErrAlreadyRedeemed,
// ErrInvitationUsed.
func (s *Store) RedeemInvitation(ctx context.Context, code, user string, cards int, at time.Time) (string, error) {
	for attempt := 0; ; attempt++ {
		owner, err := s.redeemOnce(ctx, code, user, cards, at)
		if errors.Is(err, errRedemptionRaced) && attempt < 3 {
			continue // the transaction lost a race: look again to name the refusal
		}
		if errors.Is(err, errRedemptionRaced) {
			return "", ErrInvitationUsed
		}
		return owner, err
	}
}

func (s *Store) redeemOnce(ctx context.Context, code, user string, cards int, at time.Time) (string, error) {
	var owner string
	var by sql.NullString
	err := s.db.QueryRowContext(ctx, s.q(`SELECT owner, redeemed_by FROM invitations WHERE code = ?`), code).Scan(&owner, &by)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: redeem: %w", err)
	}
	if owner == user {
		return "", ErrOwnInvitation
	}
	var n int
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM invitations WHERE redeemed_by = ?`), user).Scan(&n); err != nil {
		return "", fmt.Errorf("store: redeem: %w", err)
	}
	if n > 0 {
		return "", ErrAlreadyRedeemed
	}
	if by.Valid {
		return "", ErrInvitationUsed
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("store: redeem: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	res, err := tx.ExecContext(ctx, s.q(`UPDATE invitations SET redeemed_by = ?, redeemed_at = ? WHERE code = ? AND redeemed_by IS NULL`),
		user, at.UnixMilli(), code)
	if err != nil && isUnique(err) {
		return "", errRedemptionRaced
	}
	if err != nil {
		return "", fmt.Errorf("store: redeem: %w", err)
	}
	if k, err := res.RowsAffected(); err != nil || k != 1 {
		return "", errRedemptionRaced
	}
	for _, u := range []string{user, owner} {
		if _, err := tx.ExecContext(ctx, s.cardsUpsert(), u, cards); err != nil {
			return "", fmt.Errorf("store: redeem: cards: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		if isUnique(err) {
			return "", errRedemptionRaced
		}
		return "", fmt.Errorf("store: redeem: %w", err)
	}
	return owner, nil
}
