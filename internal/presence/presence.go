// Package presence keeps who is in which room: online counts, the audience
// list, and watch time recorded on leave (R4). The in-memory implementation
// serves one node; a Redis one aggregates across nodes.
package presence

import (
	"context"
	"time"
)

// Member is one viewer session in a room.
type Member struct {
	Session string    `json:"-"`
	UserID  string    `json:"id"`
	Name    string    `json:"name"`
	Level   int       `json:"level"`
	Since   time.Time `json:"since"`
}

// Watch is a user's accumulated watch time in a room.
type Watch struct {
	UserID  string `json:"id"`
	Name    string `json:"name"`
	Seconds int64  `json:"seconds"`
}

// Stats summarizes a room's audience.
type Stats struct {
	Online       int     `json:"online"`
	Peak         int     `json:"peak"`
	Viewers      int     `json:"viewers"` // distinct users with recorded watch time
	TotalSeconds int64   `json:"total_watch_seconds"`
	AvgSeconds   float64 `json:"avg_watch_seconds"`
	TopWatchers  []Watch `json:"top_watchers"`
}

// Presence tracks sessions per room. A session is one WebSocket connection or
// one polling client; pollers call Touch on each poll and expire when they
// stop (after TTL).
type Presence interface {
	// Join records m entering room; it returns true if the session is new.
	Join(ctx context.Context, room string, m Member) (bool, error)
	// Touch refreshes (or joins) a polling session.
	Touch(ctx context.Context, room string, m Member) (bool, error)
	// Leave removes a session and adds its time to the user's watch time.
	Leave(ctx context.Context, room, session string) error
	// Count is the room's online count.
	Count(ctx context.Context, room string) (int, error)
	// Audience lists up to limit members, highest level first.
	Audience(ctx context.Context, room string, limit int) ([]Member, error)
	// Stats returns watch-time statistics.
	Stats(ctx context.Context, room string) (Stats, error)
	Close() error
}
