package service

import (
	"context"
	"strconv"
	"time"

	"roomcast/internal/bus"
	"roomcast/internal/errs"
	"roomcast/internal/message"
)

// CanModerate reports whether id may moderate roomID: its anchor or an admin.
func (s *Service) CanModerate(ctx context.Context, id Identity, roomID string) error {
	r, err := s.rooms.Get(ctx, roomID, false)
	if err != nil {
		return err
	}
	if id.role() == message.RoleAdmin || (id.Claims.Sub != "" && r.AnchorID == id.Claims.Sub) {
		return nil
	}
	return errs.New(errs.Forbidden, "only the room's anchor or an admin may moderate it")
}

// Kick bars user from roomID for d (0 = the configured block), closes their
// connections on every node, and tells the room with a must-deliver kick.
func (s *Service) Kick(ctx context.Context, by Identity, roomID, user string, d time.Duration) error {
	if err := s.CanModerate(ctx, by, roomID); err != nil {
		return err
	}
	if user == "" {
		return errs.New(errs.BadRequest, "user is required")
	}
	if d <= 0 {
		d = s.cfg.KickBlock
	}
	until := time.Now().Add(d)
	if err := s.mod.Kick(ctx, roomID, user, until); err != nil {
		return unavailable(err)
	}
	if err := s.bus.Publish(ctx, bus.Control, bus.Event{Type: bus.EvKick, Room: roomID, User: user, Until: until.UnixMilli()}); err != nil {
		return unavailable(err)
	}
	_, err := s.System(ctx, roomID, message.KindKick, user+" was removed", map[string]any{"user": user, "until": until.UnixMilli()})
	return err
}

// Mute silences user in roomID for d (0 = 10 minutes) and tells them.
func (s *Service) Mute(ctx context.Context, by Identity, roomID, user string, d time.Duration) error {
	if err := s.CanModerate(ctx, by, roomID); err != nil {
		return err
	}
	if user == "" {
		return errs.New(errs.BadRequest, "user is required")
	}
	if d <= 0 {
		d = 10 * time.Minute
	}
	until := time.Now().Add(d)
	if err := s.mod.Mute(ctx, roomID, user, until); err != nil {
		return unavailable(err)
	}
	u := systemUser
	m := &message.Message{ID: s.newID(), Room: roomID, Kind: message.KindMute, Scope: message.ScopeUser, To: user, User: &u,
		Text: "you are muted", Data: []byte(`{"until":` + strconv.FormatInt(until.UnixMilli(), 10) + `}`)}
	m.Priority = message.ComputePriority(m)
	_, err := s.deliver(ctx, m, nil)
	return err
}

// Unmute lifts a mute.
func (s *Service) Unmute(ctx context.Context, by Identity, roomID, user string) error {
	if err := s.CanModerate(ctx, by, roomID); err != nil {
		return err
	}
	if err := s.mod.Unmute(ctx, roomID, user); err != nil {
		return unavailable(err)
	}
	return nil
}

// Retract removes message msgID from roomID: a must-deliver retract tells
// every client to take it down.
func (s *Service) Retract(ctx context.Context, by Identity, roomID, msgID string) (*message.Message, error) {
	if err := s.CanModerate(ctx, by, roomID); err != nil {
		return nil, err
	}
	if msgID == "" || len(msgID) > 64 {
		return nil, errs.New(errs.BadRequest, "message id is required")
	}
	u := systemUser
	m := &message.Message{ID: s.newID(), Room: roomID, Kind: message.KindRetract, Scope: message.ScopeRoom, User: &u, Ref: msgID}
	m.Priority = message.ComputePriority(m)
	if err := s.appendRoom(ctx, m, nil); err != nil {
		return nil, unavailable(err)
	}
	return m, nil
}

// Kicked reports whether user is barred from roomID.
func (s *Service) Kicked(ctx context.Context, roomID, user string) (bool, error) {
	k, err := s.mod.Kicked(ctx, roomID, user)
	if err != nil {
		return false, unavailable(err)
	}
	return k, nil
}
