package bus

import (
	"context"
	"errors"
	"sync"
)

// Memory is the single-node bus: Publish calls the topic's handlers
// synchronously, so events reach them in publish order.
type Memory struct {
	mu     sync.RWMutex
	subs   map[Topic][]*sub // guarded by mu; replaced, never mutated in place
	closed bool
}

type sub struct{ h Handler }

var _ Bus = (*Memory)(nil)

// NewMemory returns an in-memory bus.
func NewMemory() *Memory { return &Memory{subs: map[Topic][]*sub{}} }

// ErrClosed is returned after Close.
var ErrClosed = errors.New("bus closed")

// Publish implements Bus.
func (b *Memory) Publish(_ context.Context, t Topic, ev Event) error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	subs := b.subs[t]
	b.mu.RUnlock()
	for _, s := range subs {
		s.h(ev)
	}
	return nil
}

// Subscribe implements Bus.
func (b *Memory) Subscribe(t Topic, h Handler) (func(), error) {
	s := &sub{h: h}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	b.subs[t] = append(append([]*sub(nil), b.subs[t]...), s)
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			old := b.subs[t]
			next := make([]*sub, 0, len(old))
			for _, x := range old {
				if x != s {
					next = append(next, x)
				}
			}
			if len(next) == 0 {
				delete(b.subs, t)
			} else {
				b.subs[t] = next
			}
		})
	}, nil
}

// Close implements Bus.
func (b *Memory) Close() error {
	b.mu.Lock()
	b.closed = true
	b.subs = map[Topic][]*sub{}
	b.mu.Unlock()
	return nil
}
