// Package errs defines the errors roomcast shows to clients: a stable
// machine-readable code plus a human message. Transports map codes to their
// own form (an HTTP status and JSON body, a WebSocket error frame).
package errs

import (
	"errors"
	"net/http"
	"sync"
)

// Error is a client-facing error. Code is part of the API contract.
type Error struct {
	Code    string
	Message string
	// RetryAfterMS is set on rate_limited errors.
	RetryAfterMS int64
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// New returns an *Error.
func New(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Codes. Their HTTP statuses are in Status.
const (
	BadJSON       = "bad_json"
	BadRequest    = "bad_request"
	TextTooLong   = "text_too_long"
	InvalidUTF8   = "invalid_utf8"
	EmptyText     = "empty_text"
	UnknownKind   = "unknown_kind"
	ForbiddenKind = "forbidden_kind"
	UnknownGift   = "unknown_gift"
	BadCount      = "bad_count"
	Unauthorized  = "unauthorized"
	TokenExpired  = "token_expired"
	BadToken      = "bad_token"
	Forbidden     = "forbidden"
	NotFound      = "not_found"
	RoomNotFound  = "room_not_found"
	Conflict      = "conflict"
	RateLimited   = "rate_limited"
	Muted         = "muted"
	Kicked        = "kicked"
	BlockedWord   = "blocked_word"
	TooLarge      = "too_large"
	BadOrigin     = "bad_origin"
	Unavailable   = "unavailable"
	// DBUnavailable: the SQL database is unreachable; what needs it (room
	// creation, key reset, listings) fails while live messaging goes on.
	DBUnavailable = "db_unavailable"
	Internal      = "internal"
	Method        = "method_not_allowed"
)

var statusMu sync.RWMutex // guards statuses (Register)

var statuses = map[string]int{
	BadJSON:       http.StatusBadRequest,
	BadRequest:    http.StatusBadRequest,
	TextTooLong:   http.StatusBadRequest,
	InvalidUTF8:   http.StatusBadRequest,
	EmptyText:     http.StatusBadRequest,
	UnknownKind:   http.StatusBadRequest,
	UnknownGift:   http.StatusBadRequest,
	BadCount:      http.StatusBadRequest,
	BlockedWord:   http.StatusBadRequest,
	ForbiddenKind: http.StatusForbidden,
	Unauthorized:  http.StatusUnauthorized,
	TokenExpired:  http.StatusUnauthorized,
	BadToken:      http.StatusUnauthorized,
	Forbidden:     http.StatusForbidden,
	BadOrigin:     http.StatusForbidden,
	Muted:         http.StatusForbidden,
	Kicked:        http.StatusForbidden,
	NotFound:      http.StatusNotFound,
	RoomNotFound:  http.StatusNotFound,
	Conflict:      http.StatusConflict,
	Method:        http.StatusMethodNotAllowed,
	TooLarge:      http.StatusRequestEntityTooLarge,
	RateLimited:   http.StatusTooManyRequests,
	Unavailable:   http.StatusServiceUnavailable,
	DBUnavailable: http.StatusServiceUnavailable,
	Internal:      http.StatusInternalServerError,
}

// Register adds codes with their HTTP statuses (packages with their own
// codes, such as the quiz, register them when the app is built).
func Register(codes map[string]int) {
	statusMu.Lock()
	defer statusMu.Unlock()
	for c, s := range codes {
		statuses[c] = s
	}
}

// Status is the HTTP status for err: its code's status for an *Error, 500
// for anything else.
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		statusMu.RLock()
		s, ok := statuses[e.Code]
		statusMu.RUnlock()
		if ok {
			return s
		}
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// From returns err as an *Error; errors that are not client-facing become
// a generic internal error so no detail leaks.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: Internal, Message: "internal error"}
}

// Codes returns every code this package defines (each has a status), for
// transports that map codes to their own numbers and the tests that check
// none is missing.
func Codes() []string {
	out := make([]string, 0, len(statuses))
	for c := range statuses {
		out = append(out, c)
	}
	return out
}
