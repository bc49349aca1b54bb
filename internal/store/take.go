package store

import (
	"context"
	"errors"
	"fmt"
)

// TakeSetting returns key's value and deletes it, so that of several
// concurrent callers (on any node sharing the database) exactly one gets
// the value; the others get ErrNotFound. It is how one-time codes are used
// up.
func (s *Store) TakeSetting(ctx context.Context, key string) (string, error) {
	v, err := s.Setting(ctx, key)
	if err != nil {
		return "", err
	}
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM settings WHERE k = ? AND v = ?`), key, v)
	if err != nil {
		return "", fmt.Errorf("store: take %s: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return "", fmt.Errorf("store: take %s: %w", key, err)
	}
	if n != 1 {
		return "", ErrNotFound // another caller took it first
	}
	return v, nil
}

// DeleteSettingsBefore deletes the settings whose key starts with prefix
// and whose value, a decimal number, is below limit (expired one-time
// codes). It returns how many went.
func (s *Store) DeleteSettingsBefore(ctx context.Context, prefix string, limit int64) (int64, error) {
	if prefix == "" {
		return 0, errors.New("store: empty prefix")
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT k, v FROM settings WHERE k LIKE ?`), prefix+"%")
	if err != nil {
		return 0, fmt.Errorf("store: list %s*: %w", prefix, err)
	}
	var old []string
	for rows.Next() {
		var k, v string
		var n int64
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return 0, fmt.Errorf("store: list %s*: %w", prefix, err)
		}
		if _, err := fmt.Sscan(v, &n); err == nil && n < limit {
			old = append(old, k)
		}
	}
	rows.Close()
	var gone int64
	for _, k := range old {
		res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM settings WHERE k = ?`), k)
		if err != nil {
			return gone, fmt.Errorf("store: delete %s: %w", k, err)
		}
		n, _ := res.RowsAffected()
		gone += n
	}
	return gone, nil
}
