// Package bus carries events between roomcast nodes: room messages (after the
// timeline stored them), user-scoped messages, broadcasts and control events
// such as kicks. The in-memory bus serves one node; a Redis bus sits beside
// it. Either way delivery goes through the same Handler, so a node has one
// delivery path.
package bus

import (
	"context"

	"roomcast/internal/message"
)

// Topic names a stream of events.
type Topic string

// RoomTopic is the topic of one room's appended messages. Nodes subscribe
// to it only while they have viewers of the room.
func RoomTopic(room string) Topic { return Topic("room:" + room) }

// Topics every node subscribes to.
const (
	Users   Topic = "users"   // user-scoped messages; each node delivers to its local connections of Event.User
	Control Topic = "control" // kicks, settings changes
)

// Event is one thing published on a topic.
type Event struct {
	Type EventType        `json:"type"`
	Room string           `json:"room,omitempty"`
	User string           `json:"user,omitempty"`
	Msg  *message.Message `json:"msg,omitempty"`
	// Until is a Unix-ms deadline (kick re-entry block).
	Until int64 `json:"until,omitempty"`
	// Data is an opaque payload (settings changes).
	Data []byte `json:"data,omitempty"`
}

// EventType says what an Event carries.
type EventType string

// Event types.
const (
	EvMessage  EventType = "message"  // Msg was appended to Room's timeline
	EvUserMsg  EventType = "user_msg" // Msg is for every connection of User
	EvKick     EventType = "kick"     // close User's connections in Room
	EvSettings EventType = "settings" // run-time settings changed
	EvLikes    EventType = "likes"    // Room's like total changed (Data holds it)
)

// Handler receives events. It may be called from the publisher's goroutine
// (memory bus) or the bus's own (Redis); it must not block for long. Per
// topic, events arrive in publish order.
type Handler func(Event)

// Bus publishes and subscribes to topics.
type Bus interface {
	Publish(ctx context.Context, t Topic, ev Event) error
	// Subscribe registers h for t until the returned cancel is called.
	Subscribe(t Topic, h Handler) (cancel func(), err error)
	Close() error
}
