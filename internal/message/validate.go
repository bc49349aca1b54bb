package message

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

	"roomcast/internal/errs"
)

// Role is what a sender may do, from its token.
type Role string

// Roles.
const (
	RoleViewer Role = "viewer"
	RoleAnchor Role = "anchor"
	RoleAdmin  Role = "admin"
	RoleSystem Role = "system" // the server itself (lifecycle, moderation)
)

// Request is what a client asks to send, before validation.
type Request struct {
	ID    string          `json:"id,omitempty"` // client id, echoed in WebSocket acks
	Kind  Kind            `json:"kind"`
	Text  string          `json:"text,omitempty"`
	Gift  *Gift           `json:"gift,omitempty"`
	Scope Scope           `json:"scope,omitempty"`
	To    string          `json:"to,omitempty"`
	Ref   string          `json:"ref,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"` // function kinds only (admin)
	// VideoMS is the position of the live video the sender was watching;
	// the server uses it when plausible (see service).
	VideoMS *int64 `json:"video_ms,omitempty"`
	// ClientMsgID makes the send idempotent (issue 8): a repeat from the
	// same user into the same room within 5 minutes gets the first send's
	// acknowledgement instead of a second message. At most 64 bytes.
	ClientMsgID string `json:"client_msg_id,omitempty"`
}

// MaxClientMsgID bounds Request.ClientMsgID in bytes.
const MaxClientMsgID = 64

// Limits bound what a client may send.
type Limits struct {
	MaxTextRunes int // 0 means 200
	MaxGiftCount int // 0 means 9999
}

// Sender is who sends: the verified identity and its role in the room.
type Sender struct {
	User User
	Role Role
	// Owner is true when the sender is the anchor of the target room.
	Owner bool
}

// Build validates req from sender into room and returns the message to
// append (without seq, id or ts). Errors are *errs.Error.
func Build(req *Request, s Sender, room string, cat *Catalogue, lim Limits) (*Message, error) {
	maxText := lim.MaxTextRunes
	if maxText <= 0 {
		maxText = 200
	}
	maxCount := lim.MaxGiftCount
	if maxCount <= 0 {
		maxCount = 9999
	}
	if req.Kind == "" {
		return nil, errs.New(errs.UnknownKind, "kind is required")
	}
	if !req.Kind.Known() {
		return nil, errs.New(errs.UnknownKind, "unknown kind "+quoteShort(string(req.Kind)))
	}
	if len(req.ClientMsgID) > MaxClientMsgID {
		return nil, errs.New(errs.BadRequest, "client_msg_id is longer than 64 bytes")
	}
	privileged := s.Role == RoleAdmin || s.Role == RoleSystem
	switch req.Kind {
	case KindChat, KindGift, KindLike:
	case KindNotice, KindPK:
		if !privileged && !s.Owner {
			return nil, errs.New(errs.ForbiddenKind, "only the room's anchor or an admin may send "+string(req.Kind))
		}
	case KindEnter, KindLeave, KindKick, KindRetract, KindMute, KindQuizQuestion, KindQuizReveal, KindQuizEnd, KindRedPacketRain:
		if s.Role != RoleSystem {
			return nil, errs.New(errs.ForbiddenKind, string(req.Kind)+" messages are sent by the server")
		}
	default: // system, redpacket, quiz, pk_result
		if !privileged {
			return nil, errs.New(errs.ForbiddenKind, "only an admin may send "+string(req.Kind))
		}
	}
	scope := req.Scope
	switch scope {
	case "", ScopeRoom:
		scope = ScopeRoom
	case ScopeUser:
		if req.To == "" {
			return nil, errs.New(errs.BadRequest, `scope "user" needs "to"`)
		}
		if !privileged && !s.Owner {
			return nil, errs.New(errs.Forbidden, "only the room's anchor or an admin may message one user")
		}
	case ScopeBroadcast:
		if !privileged {
			return nil, errs.New(errs.Forbidden, "only an admin may broadcast")
		}
	default:
		return nil, errs.New(errs.BadRequest, "unknown scope "+quoteShort(string(scope)))
	}
	if !utf8.ValidString(req.Text) {
		return nil, errs.New(errs.InvalidUTF8, "text is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(req.Text); n > maxText {
		return nil, errs.New(errs.TextTooLong, "text is longer than the limit of "+itoa(maxText)+" characters")
	}
	text := cleanText(req.Text)
	u := s.User
	m := &Message{Room: room, Kind: req.Kind, Scope: scope, User: &u, Text: text, Ref: req.Ref}
	if scope == ScopeUser {
		m.To = req.To
	}
	switch req.Kind {
	case KindChat, KindNotice, KindPK:
		if strings.TrimSpace(text) == "" {
			return nil, errs.New(errs.EmptyText, "text is empty")
		}
	case KindGift:
		if req.Gift == nil || req.Gift.ID == "" {
			return nil, errs.New(errs.UnknownGift, "gift.id is required")
		}
		def, ok := cat.Lookup(req.Gift.ID)
		if !ok {
			return nil, errs.New(errs.UnknownGift, "unknown gift "+quoteShort(req.Gift.ID))
		}
		count := req.Gift.Count
		if count == 0 {
			count = 1
		}
		if count < 1 || count > maxCount {
			return nil, errs.New(errs.BadCount, "gift.count must be between 1 and "+itoa(maxCount))
		}
		m.Gift = &Gift{ID: def.ID, Name: def.Name, ValueCents: def.ValueCents, Count: count}
	}
	if len(req.Data) > 0 && privileged {
		if len(req.Data) > 8<<10 {
			return nil, errs.New(errs.BadRequest, "data larger than 8 KiB")
		}
		m.Data = req.Data
	}
	m.Priority = ComputePriority(m)
	return m, nil
}

// cleanText removes control characters (other than none: danmaku is one
// line) so a message cannot break a client's layout.
func cleanText(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			if r == '\n' || r == '\t' || r == '\r' {
				return ' '
			}
			return -1
		}
		return r
	}, s)
}

func quoteShort(s string) string {
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	return `"` + s + `"`
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
