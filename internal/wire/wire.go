// Package wire is the protobuf encoding of roomcast's WebSocket protocol
// (issue 11): the subprotocol names, the framing of Frames (each prefixed by
// its length as a varint, one or more per WebSocket binary message), the
// numeric codes that stand for the JSON protocol's error codes, and the
// conversion of live-room messages and batches into the generated types of
// proto/roomcast/v1 (the schema's source of truth). It knows nothing about
// connections or rooms; the gateway decodes client frames with it and the
// fan-out encodes each batch with it once per tick.
package wire

import (
	"roomcast/internal/errs"
	pb "roomcast/proto/roomcast/v1"
)

// Subprotocols offered on /ws (Sec-WebSocket-Protocol). A client that sets
// neither gets JSON unless it asks for ?format=proto.
const (
	SubprotocolJSON  = "roomcast.v1.json"
	SubprotocolProto = "roomcast.v1.proto"
)

// Frame types (Frame.type): -1 heartbeat, 0 auth, > 0 business.
const (
	TypeHeartbeat int32 = -1
	TypeAuth      int32 = 0
	TypeSend      int32 = 1
	TypeBatch     int32 = 2
	TypeAnswer    int32 = 3 // live-quiz answer (issue 12): AnswerRequest → AnswerAck
	TypeGrab      int32 = 4 // red-packet grab (issue 13): GrabRequest → GrabAck
)

// Frame kinds, re-exported for readability at call sites.
const (
	Request  = pb.Kind_REQUEST
	Response = pb.Kind_RESPONSE
	Notify   = pb.Kind_NOTIFY
)

// Codes (Frame.code of a RESPONSE). 0 is success; 100 and 101 are fixed by
// the issue; every JSON error code has its own number (docs/protocol.md
// lists them side by side). A code the table does not know (a newer one)
// is sent as CodeFailure with its text in Frame.error_code, so clients
// treat any unknown number ≥ 100 like 101.
const (
	CodeOK       int32 = 0
	CodeBadToken int32 = 100
	CodeFailure  int32 = 101 // business failure without a number of its own
)

// ErrBadFrame is the error code (Frame.error_code) of a protobuf frame that
// cannot be decoded: a truncated length, a length past the message, or a
// frame or body that does not parse. It has no JSON twin.
const ErrBadFrame = "bad_frame"

// codes maps the error codes of internal/errs (and ErrBadFrame) to numbers.
// Numbers are a contract: add, never renumber.
var codes = map[string]int32{
	errs.BadToken:      CodeBadToken,
	errs.TokenExpired:  102,
	errs.Unauthorized:  103,
	errs.Kicked:        104,
	errs.Forbidden:     105,
	errs.ForbiddenKind: 106,
	errs.BadOrigin:     107,
	errs.BadRequest:    110,
	errs.BadJSON:       111,
	ErrBadFrame:        112,
	errs.TooLarge:      113,
	errs.Method:        114,
	errs.TextTooLong:   120,
	errs.InvalidUTF8:   121,
	errs.EmptyText:     122,
	errs.UnknownKind:   123,
	errs.UnknownGift:   124,
	errs.BadCount:      125,
	errs.BlockedWord:   126,
	errs.Muted:         130,
	errs.RateLimited:   131,
	errs.NotFound:      140,
	errs.RoomNotFound:  141,
	errs.Conflict:      142,
	errs.Unavailable:   150,
	errs.Internal:      151,
	errs.DBUnavailable: 152,
	// The live quiz's codes (internal/quiz, issue 12).
	"not_running":      160,
	"not_a_player":     161,
	"eliminated":       162,
	"not_current":      163,
	"out_of_sequence":  164,
	"too_late":         165,
	"already_answered": 166,
	"invalid":          167,
	// The red-packet rain's codes (internal/quiz, issue 13).
	"rain_not_started": 170,
	"unknown_rain":     171,
}

// Code returns the number of an error code; CodeFailure for one without.
func Code(errCode string) int32 {
	if n, ok := codes[errCode]; ok {
		return n
	}
	return CodeFailure
}

// Codes returns the code table (error code → number), for documentation
// and tests. The map is a copy.
func Codes() map[string]int32 {
	out := make(map[string]int32, len(codes))
	for k, v := range codes {
		out[k] = v
	}
	return out
}

// ErrorFrame is the RESPONSE to a refused REQUEST (type and seq echoed).
func ErrorFrame(typ int32, seq uint32, err error) *pb.Frame {
	e := errs.From(err)
	return &pb.Frame{Type: typ, Kind: Response, Seq: seq, Code: Code(e.Code), Error: valid(e.Message),
		ErrorCode: valid(e.Code), RetryAfterMs: e.RetryAfterMS}
}
