package gateway

import (
	"context"
	"net/http"
	"time"

	"roomcast/internal/fanout"
	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/quiz"
	"roomcast/internal/room"
	"roomcast/internal/service"
	"roomcast/internal/signin"
	"roomcast/internal/store"
	"roomcast/internal/ws"
)

// The small interfaces below are what the gateway consumes; the app passes
// the real parts (*room.Registry, *service.Service, *fanout.Node,
// *store.Store) and the gateway's tests pass fakes.

// Rooms is what the gateway needs of the room registry.
type Rooms interface {
	Create(ctx context.Context, anchor, title, id string) (room.Room, bool, error)
	Get(ctx context.Context, id string, withKey bool) (room.Room, error)
	Exists(ctx context.Context, id string) (bool, error)
	List(ctx context.Context) ([]room.Room, error)
	IDs(ctx context.Context) ([]string, error)
	ResetKey(ctx context.Context, id string) (string, error)
}

// Service is what the gateway needs of the logic layer: every send and
// moderation action goes through it.
type Service interface {
	Send(ctx context.Context, id service.Identity, roomID string, req *message.Request) (service.Result, error)
	Gifts() *message.Catalogue
	CanModerate(ctx context.Context, id service.Identity, roomID string) error
	Kick(ctx context.Context, by service.Identity, roomID, user string, d time.Duration) error
	Mute(ctx context.Context, by service.Identity, roomID, user string, d time.Duration) error
	Unmute(ctx context.Context, by service.Identity, roomID, user string) error
	Retract(ctx context.Context, by service.Identity, roomID, msgID string) (*message.Message, error)
	Kicked(ctx context.Context, roomID, user string) (bool, error)
}

// Node is what the gateway needs of the fan-out node: WebSocket
// connections attach to it, polls read from it.
type Node interface {
	Attach(ctx context.Context, c *fanout.Conn, cursor uint64, hasCursor bool) error
	Detach(c *fanout.Conn)
	Identify(c *fanout.Conn, m presence.Member)
	Poll(ctx context.Context, room string, q fanout.PollQuery) (fanout.PollAnswer, error)
	LikesTotal(ctx context.Context, room string) (int64, error)
	// RoomOnline is the room's online count as the node last read it; ok
	// is false when the room has no hub on this node.
	RoomOnline(room string) (count int, ok bool)
}

// Store is where the gateway keeps run-time settings (poll intervals, route
// rules) and sign-in codes; a missing key is store.ErrNotFound.
type Store interface {
	signin.Store
	Setting(ctx context.Context, key string) (string, error)
}

// Upgrader turns a request into a WebSocket connection (*ws.Server).
type Upgrader interface {
	Upgrade(w http.ResponseWriter, r *http.Request, subprotocols ...string) (*ws.Conn, error)
}

// QuizAnswers is what the WebSocket handler needs of the quiz (answer
// frames).
type QuizAnswers interface {
	// AnswerInRoom answers the room's running activity.
	AnswerInRoom(ctx context.Context, user, roomID string, n, option int) (string, []byte, error)
	Answer(ctx context.Context, user, id string, n, option int) ([]byte, error)
	// AnswerNow is AnswerInRoom (id "") or Answer when it can be decided
	// without blocking (memory mode); ok false: nothing happened, call those.
	AnswerNow(user, roomID, id string, n, option int) (activity string, sealed []byte, ok bool, err error)
	// GrabTaps is the red-packet grab of taps taps (issue 13; 0: it names
	// none, one tap; the grab frames and the HTTP grab).
	GrabTaps(ctx context.Context, user, id string, k, taps int) (quiz.GrabResult, error)
	// Admit takes a grab's tokens from the node's bucket and returns how
	// many (0: GrabTaps would answer throttled); GrabAdmitted is GrabTaps
	// for a grab whose admitted taps were taken.
	Admit(taps int) int
	GrabAdmitted(ctx context.Context, user, id string, k, taps, admitted int) (quiz.GrabResult, error)
}

// Quiz is what the HTTP routes need of the quiz (*quiz.Service).
type Quiz interface {
	QuizAnswers
	Create(ctx context.Context, c quiz.Caller, req *quiz.CreateRequest) (*quiz.View, error)
	Get(ctx context.Context, c quiz.Caller, id string) (*quiz.View, error)
	List(ctx context.Context, roomID string) ([]*quiz.View, error)
	Start(ctx context.Context, c quiz.Caller, id string) (*quiz.View, error)
	Push(ctx context.Context, c quiz.Caller, id string, n int) (*quiz.View, error)
	Reveal(ctx context.Context, c quiz.Caller, id string, n int) (*quiz.View, error)
	Counts(ctx context.Context, c quiz.Caller, id string, n int) (quiz.Reveal, error)
	Winners(ctx context.Context, id string) ([]store.Prize, int64, error)
	GrantCards(ctx context.Context, user string, n int) (int, error)
	Cards(ctx context.Context, user string) (int, error)
	Prizes(ctx context.Context, user string) ([]store.Prize, error)
	PrizesTotal(ctx context.Context, user string) (int64, error)
	Rains
}

// Rains is the red-packet rain (issue 13) as the gateway uses it.
type Rains interface {
	StartRain(ctx context.Context, c quiz.Caller, id string, k int) (*quiz.RainView, error)
	Rain(ctx context.Context, id string, k int) (*quiz.RainView, error)
}
