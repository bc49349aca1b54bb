package quiz

import (
	"context"
	"errors"

	"roomcast/internal/errs"
	"roomcast/internal/store"
)

// Error codes of the quiz (a contract: clients branch on them).
const (
	CodeNotRunning      = "not_running"      // the activity is not running
	CodeNotAPlayer      = "not_a_player"     // not connected when question 1 was pushed
	CodeEliminated      = "eliminated"       // out after a wrong answer
	CodeNotCurrent      = "not_current"      // not the question that is open
	CodeOutOfSequence   = "out_of_sequence"  // an earlier question was not answered
	CodeTooLate         = "too_late"         // after the deadline
	CodeAlreadyAnswered = "already_answered" // one answer per question
	CodeInvalid         = "invalid"          // no such option
	CodeOutOfOrder      = "out_of_order"     // operator: a step before its turn
	CodeTooEarly        = "too_early"        // operator: reveal before the deadline
	CodeNotEnded        = "not_ended"        // winners asked for before the end
)

// Statuses maps the quiz codes to HTTP statuses (registered in errs).
var Statuses = map[string]int{
	CodeNotRunning: 409, CodeNotAPlayer: 403, CodeEliminated: 403, CodeNotCurrent: 409,
	CodeOutOfSequence: 409, CodeTooLate: 409, CodeAlreadyAnswered: 409, CodeInvalid: 400,
	CodeOutOfOrder: 409, CodeTooEarly: 409, CodeNotEnded: 409, CodeRainNotStarted: 409, CodeUnknownRain: 404,
}

// ErrUnknown is returned by a State that has no live state for an activity
// (never initialized, or expired): the Service initializes it from SQL.
var ErrUnknown = errors.New("quiz: activity not in the state")

// codeErr builds the client error for a code.
func codeErr(code string) error {
	msg := map[string]string{
		CodeNotRunning:      "the activity is not running",
		CodeNotAPlayer:      "you are not a player: players are the users in the room when question 1 is pushed",
		CodeEliminated:      "you are out of this activity",
		CodeNotCurrent:      "that question is not open",
		CodeOutOfSequence:   "an earlier question was not answered",
		CodeTooLate:         "the answer window has closed",
		CodeAlreadyAnswered: "you already answered this question",
		CodeInvalid:         "no such option",
		CodeOutOfOrder:      "that step is not next",
		CodeTooEarly:        "the answer window is still open",
	}[code]
	return errs.New(code, msg)
}

// Live is an activity's live state.
type Live struct {
	Status   string `json:"status"`
	Current  int    `json:"current"`  // the last pushed question (0: none)
	Revealed int    `json:"revealed"` // the last revealed question
	PushedAt int64  `json:"pushed_at"`
	Deadline int64  `json:"deadline"` // of the current question, epoch ms
	Players  int64  `json:"players"`
	Alive    int64  `json:"alive"` // after the last reveal (players before any)
}

// Player is a user enrolled with the revival cards they hold.
type Player struct {
	User  string
	Cards int
}

// Answer is one answer to decide.
type Answer struct {
	User   string
	N      int
	Option int
	Now    int64 // epoch ms, the answering node's clock
	// Enroll, when set, enrolls the user first if question 1 is open: the
	// answering node saw them in the room when it was pushed (covers an
	// answer that overtakes the node's enrollment).
	Enroll *Player
}

// Reveal is a revealed question's tally.
type Reveal struct {
	Counts     []int64 `json:"counts"`
	Answers    int64   `json:"answers"`
	Alive      int64   `json:"alive"`
	Eliminated int64   `json:"eliminated"`
}

// State decides an activity's live state atomically: the memory version for
// one node and the Redis version (Lua) for a cluster, with one contract
// suite. Steps that already took effect return changed=false and the current
// state; steps out of order fail with the codes above.
type State interface {
	// Init creates the live state from r if absent (idempotent).
	Init(ctx context.Context, r Rules) error
	// Live returns the live state; ErrUnknown if Init never ran.
	Live(ctx context.Context, id string) (Live, error)
	// Start moves scheduled → running.
	Start(ctx context.Context, id string) (Live, bool, error)
	// Push opens question n (the next one) at now with its deadline.
	Push(ctx context.Context, id string, n int, now int64) (Live, bool, error)
	// Enroll adds players while question 1 is not yet revealed; it returns
	// how many were new.
	Enroll(ctx context.Context, id string, ps []Player) (int, error)
	// Answer decides one answer exactly once.
	Answer(ctx context.Context, id string, a Answer) (Result, error)
	// Counts is question n's tally so far.
	Counts(ctx context.Context, id string, n int) (Reveal, error)
	// Reveal closes question n (after its deadline); after the last
	// question the activity ends.
	Reveal(ctx context.Context, id string, n int, now int64) (Reveal, Live, bool, error)
	// Winners lists the players alive after the last question.
	Winners(ctx context.Context, id string) ([]string, error)
	// Revived lists the players who used a revival card.
	Revived(ctx context.Context, id string) ([]string, error)
	// Settle moves ended → settled.
	Settle(ctx context.Context, id string) (bool, error)
	// Mark claims the sending of step's message: first is true for exactly
	// one caller; Unmark gives the claim back when the send failed.
	Mark(ctx context.Context, id, step string) (first bool, err error)
	Unmark(ctx context.Context, id, step string) error

	// RainStart starts rain r.K of activity r.ID with its packets if it has
	// not started (idempotent: a second start returns the first's state and
	// changed=false).
	RainStart(ctx context.Context, r RainRules) (l RainLive, changed bool, err error)
	// Grab takes the next packets for user at now, one chance per tap
	// (taps ≥ 1, each admitted by a node's bucket), atomically: at most
	// MaxPerUser per user, each packet once, never past the last packet;
	// the taps after the first refused one are refused for the same reason.
	// ErrUnknown if the rain has not started.
	Grab(ctx context.Context, id string, k int, user string, now int64, taps int) (GrabResult, error)
	// Rain returns rain k's state (Started false if it has not started).
	Rain(ctx context.Context, id string, k int) (RainLive, error)
	// RainClose closes the rain to grabs for good (later grabs: ended) and
	// lists the packets paid, in packet order, in one atomic step, so no
	// packet is paid after the list was read.
	RainClose(ctx context.Context, id string, k int) ([]Packet, error)
	// RainSettled marks the rain's packets written to SQL.
	RainSettled(ctx context.Context, id string, k int) error
	Close() error
}

// Grab refusal reasons (a contract: {"amount_cents":0,"reason":…}).
const (
	ReasonEmpty     = "empty"     // every packet is taken
	ReasonLimit     = "limit"     // the user has max_per_user packets
	ReasonThrottled = "throttled" // turned away by the node's token bucket
	ReasonEnded     = "ended"     // after the rain's duration
)

// RainRules is what the State needs to run a rain.
type RainRules struct {
	ID         string
	K          int
	Amounts    []int64 // the packets, in the order they are taken
	MaxPerUser int
	EndsAt     int64 // epoch ms
}

// RainLive is a rain's state.
type RainLive struct {
	Started   bool
	Settled   bool  // its packets are in SQL
	EndsAt    int64 // epoch ms
	Packets   int
	PaidCents int64
	Left      int
	Grabs     int64 // grabs the State decided (admitted by a node's bucket)
	Winners   int64 // distinct users paid
}

// GrabResult is a grab's outcome: the packets won (their cents summed),
// or, when none was, the reason.
type GrabResult struct {
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason,omitempty"`
	Packet      int    `json:"-"` // the first packet's index when paid
	Packets     int    `json:"-"` // the packets won
	// Taps is the taps the request named (0: it named none, and the
	// answer is a single tap's, as before taps existed); Admitted is how
	// many of them the node's bucket admitted.
	Taps     int `json:"-"`
	Admitted int `json:"-"`
}

// Packet is one packet paid (the SQL store's record).
type Packet = store.RainPacket
