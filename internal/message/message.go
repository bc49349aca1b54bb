// Package message defines the live-room message envelope: kinds, scopes, the
// gift catalogue, the priority formula and validation of what clients send.
// It knows nothing about transports or storage; every other package speaks
// in its types.
package message

import (
	"encoding/json"
)

// Kind is the business type of a message.
type Kind string

// Kinds. The function kinds (system, kick, retract, redpacket, quiz, pk_result,
// mute) are must-deliver: no render budget or load shedding ever drops them.
const (
	KindChat      Kind = "chat"
	KindGift      Kind = "gift"
	KindLike      Kind = "like"
	KindPK        Kind = "pk"
	KindNotice    Kind = "notice"
	KindEnter     Kind = "enter"
	KindLeave     Kind = "leave"
	KindSystem    Kind = "system"
	KindKick      Kind = "kick"
	KindRetract   Kind = "retract"
	KindRedPacket Kind = "redpacket"
	KindQuiz      Kind = "quiz"
	KindPKResult  Kind = "pk_result"
	KindMute      Kind = "mute"

	// The quiz's function messages (issue 12), sent by the server only.
	KindQuizQuestion Kind = "quiz_question"
	KindQuizReveal   Kind = "quiz_reveal"
	KindQuizEnd      Kind = "quiz_end"
	// The red-packet rain's start (issue 13), sent by the server only.
	KindRedPacketRain Kind = "red_packet_rain"
)

// Scope says who receives a message.
type Scope string

// Scopes (R2).
const (
	ScopeRoom      Scope = "room"      // everyone in the room
	ScopeUser      Scope = "user"      // every connection of one user (To)
	ScopeBroadcast Scope = "broadcast" // the viewers of every room
)

// User is the sender as the server knows it (from the verified token).
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Level int    `json:"level"`
}

// Gift is a gift as sent: ID and Count come from the client, Name and
// ValueCents from the server's catalogue.
type Gift struct {
	ID         string `json:"id"`
	Name       string `json:"name,omitempty"`
	ValueCents int64  `json:"value_cents"`
	Count      int    `json:"count"`
}

// Message is the envelope every live-room message travels in.
//
// Seq is assigned by the timeline when the message is appended to its room
// and is strictly consecutive per room; user-scoped messages are not part of
// a room's timeline and carry Seq 0.
type Message struct {
	Seq      uint64          `json:"seq"`
	ID       string          `json:"id"`
	Room     string          `json:"room"`
	Kind     Kind            `json:"kind"`
	Scope    Scope           `json:"scope"`
	To       string          `json:"to,omitempty"`
	User     *User           `json:"user,omitempty"`
	Text     string          `json:"text,omitempty"`
	Gift     *Gift           `json:"gift,omitempty"`
	Priority int             `json:"priority"`
	TS       int64           `json:"ts"`
	Ref      string          `json:"ref,omitempty"`  // id of the message a retract removes
	Data     json.RawMessage `json:"data,omitempty"` // kind-specific payload of function messages
	// VideoMS is the message's position on the live session's clock: ms
	// since the session's first frame, on the recording's timeline (issue
	// 10). Stamped once, where the message is sequenced; nil when the room
	// was not live.
	VideoMS *int64 `json:"video_ms,omitempty"`

	// Epoch is the timeline epoch Seq belongs to (set by the timeline; not
	// part of the message's encoding: batches and poll answers carry it).
	Epoch string `json:"-"`
	// Dedupe, when set, is the idempotency key of the send (sender and
	// client_msg_id): the timeline appends it at most once (issue 8).
	Dedupe string `json:"-"`

	// enc caches the JSON encoding; see Encoded.
	enc []byte
}

// MustDeliver reports whether k may never be dropped (R6).
func (k Kind) MustDeliver() bool {
	switch k {
	case KindSystem, KindKick, KindRetract, KindRedPacket, KindQuiz, KindPKResult, KindMute,
		KindQuizQuestion, KindQuizReveal, KindQuizEnd, KindRedPacketRain:
		return true
	}
	return false
}

// Known reports whether k is a kind the server accepts.
func (k Kind) Known() bool {
	switch k {
	case KindChat, KindGift, KindLike, KindPK, KindNotice, KindEnter, KindLeave:
		return true
	}
	return k.MustDeliver()
}

// MustDeliver reports whether m may never be dropped.
func (m *Message) MustDeliver() bool { return m.Kind.MustDeliver() }
