package transcode

import (
	"context"
	"errors"
	"strings"
)

// Registry is what the media server needs from the room registry (the
// hub's Rooms); Rooms wraps one.
type Registry interface {
	ByStreamKey(ctx context.Context, key string) (roomID string, err error)
	Exists(ctx context.Context, id string) (bool, error)
	SetLive(ctx context.Context, id string, live bool) error
}

// Rooms is the registry as the media server sees it with a ladder: the
// renditions of existing rooms exist too, publish with internal keys, and
// their live state stays out of the registry.
type Rooms struct {
	inner  Registry
	ladder *Ladder
}

var _ Registry = Rooms{}

// ByStreamKey accepts the ladder's internal keys, else asks the registry.
func (r Rooms) ByStreamKey(ctx context.Context, key string) (string, error) {
	if room, ok := r.ladder.keys.room(key); ok {
		return room, nil
	}
	if strings.HasPrefix(key, keyPrefix) {
		return "", errors.New("transcode: bad internal key")
	}
	return r.inner.ByStreamKey(ctx, key)
}

// Exists: a rendition exists when its source room does.
func (r Rooms) Exists(ctx context.Context, id string) (bool, error) {
	if src, _, ok := r.ladder.Source(id); ok {
		return r.inner.Exists(ctx, src)
	}
	return r.inner.Exists(ctx, id)
}

// SetLive ignores renditions: only the source room goes live and ends.
func (r Rooms) SetLive(ctx context.Context, id string, live bool) error {
	if _, _, ok := r.ladder.Source(id); ok {
		return nil
	}
	return r.inner.SetLive(ctx, id, live)
}
