// Package roomcastv1 is roomcast's wire schema for the protobuf encoding of
// the WebSocket protocol: the Go code generated from roomcast.proto (the
// source of truth; regenerate with `make proto`). Framing, codes and the
// conversion from live-room messages live in internal/wire.
package roomcastv1
