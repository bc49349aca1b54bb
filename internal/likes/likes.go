// Package likes aggregates likes into one counter per room (R24: seed 002's
// 2.6 billion likes could never be delivered one by one). Viewers receive the
// total periodically, never individual likes.
package likes

import (
	"context"
	"sync"
)

// Counter counts likes per room.
type Counter interface {
	// Add adds n likes to room and returns the new total.
	Add(ctx context.Context, room string, n int64) (int64, error)
	// Total returns room's total.
	Total(ctx context.Context, room string) (int64, error)
	Close() error
}

// Memory is the single-node Counter.
type Memory struct {
	mu     sync.Mutex
	totals map[string]int64 // guarded by mu
}

var _ Counter = (*Memory)(nil)

// NewMemory returns an in-memory Counter.
func NewMemory() *Memory { return &Memory{totals: map[string]int64{}} }

// Add implements Counter.
func (m *Memory) Add(_ context.Context, room string, n int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.totals[room] += n
	return m.totals[room], nil
}

// Total implements Counter.
func (m *Memory) Total(_ context.Context, room string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.totals[room], nil
}

// Close implements Counter.
func (m *Memory) Close() error { return nil }
