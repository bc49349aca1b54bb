package quiz

import (
	"context"
	"crypto/cipher"
	"errors"
	"strings"

	"roomcast/internal/errs"
	"roomcast/internal/store"
)

// The player's side of the Service: answers, winners, cards and prizes.

// Answer decides user's answer and returns the result sealed with the
// question's key.
func (s *Service) Answer(ctx context.Context, user, id string, n, option int) ([]byte, error) {
	if user == "" {
		return nil, errs.New(errs.Unauthorized, "answering needs a user token")
	}
	a, err := s.activity(ctx, id)
	if err != nil {
		return nil, err
	}
	in := Answer{User: user, N: n, Option: option, Now: s.now().UnixMilli()}
	res, err := s.d.State.Answer(ctx, id, in)
	if errors.Is(err, ErrUnknown) {
		if _, err = s.live(ctx, a); err == nil {
			res, err = s.d.State.Answer(ctx, id, in)
		}
	}
	if err != nil && n == 1 && errs.From(err).Code == CodeNotAPlayer {
		// The answer may have overtaken this node's enrollment: a user it
		// held in the room when question 1 was pushed is a player.
		if p := s.heldAtPush(ctx, a, user); p != nil {
			in.Enroll = p
			res, err = s.d.State.Answer(ctx, id, in)
		}
	}
	if err != nil {
		return nil, unavailable(err)
	}
	aead, err := s.cipher(a, n)
	if err != nil {
		return nil, err
	}
	return sealWith(aead, id, res)
}

// AnswerNow is AnswerInRoom (id "") or Answer (id set) when the answer can
// be decided from this node's memory alone, without waiting on anything: a
// memory State, the activity's definition, the room's running activity and
// the question's cipher already known here. It then returns ok and the
// same result (sealed or refused) the slower call would. ok false means
// nothing was decided or changed: make the slower call. It never blocks on
// I/O, so a connection's reader may answer with it.
func (s *Service) AnswerNow(user, roomID, id string, n, option int) (activity string, sealed []byte, ok bool, err error) {
	if !s.local || user == "" {
		return "", nil, false, nil
	}
	named := id != ""
	s.mu.Lock()
	if !named {
		id = s.active[roomID]
	}
	a := s.acts[id]
	aead := s.aeads[additionalData(id, n)]
	s.mu.Unlock()
	if a == nil || aead == nil {
		return "", nil, false, nil
	}
	res, err := s.d.State.Answer(context.Background(), id, Answer{User: user, N: n, Option: option, Now: s.now().UnixMilli()})
	if err != nil {
		switch code := errs.From(err).Code; {
		case errors.Is(err, ErrUnknown), n == 1 && code == CodeNotAPlayer, !named && code == CodeNotRunning:
			// The slower call looks further (the live state's creation,
			// the enrollment at the push, the room's next activity).
			return "", nil, false, nil
		}
		return id, nil, true, unavailable(err)
	}
	sealed, err = sealWith(aead, id, res)
	return id, sealed, true, err
}

// cipher returns question n's AES-256-GCM cipher, made once per node.
func (s *Service) cipher(a *Activity, n int) (cipher.AEAD, error) {
	k := additionalData(a.ID, n)
	s.mu.Lock()
	aead := s.aeads[k]
	s.mu.Unlock()
	if aead != nil {
		return aead, nil
	}
	aead, err := gcm(QuestionKey(a.Secret, a.ID, n))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.aeads) > 10000 {
		clear(s.aeads)
	}
	s.aeads[k] = aead
	s.mu.Unlock()
	return aead, nil
}

// heldAtPush returns user as a player if this node held them in the room
// when question 1 was pushed.
func (s *Service) heldAtPush(ctx context.Context, a *Activity, user string) *Player {
	l, err := s.d.State.Live(ctx, a.ID)
	if err != nil || l.Current != 1 || l.Revealed != 0 {
		return nil
	}
	for _, m := range s.present(ctx, a, l.PushedAt) {
		if m.UserID == user {
			cards, err := s.d.Store.Cards(ctx, []string{user})
			if err != nil {
				return nil
			}
			return &Player{User: user, Cards: cards[user]}
		}
	}
	return nil
}

// Running returns the room's running activity (for answers that do not
// name one, such as the WebSocket answer frame).
func (s *Service) Running(ctx context.Context, roomID string) (string, error) {
	s.mu.Lock()
	id := s.active[roomID]
	s.mu.Unlock()
	if id != "" {
		return id, nil
	}
	recs, err := s.d.Store.RoomActivities(ctx, roomID)
	if err != nil {
		return "", unavailable(err)
	}
	for _, rec := range recs {
		if rec.Status != StatusRunning {
			continue
		}
		if l, err := s.d.State.Live(ctx, rec.ID); err == nil && l.Status == StatusRunning {
			s.setActive(roomID, rec.ID)
			return rec.ID, nil
		}
	}
	return "", codeErr(CodeNotRunning)
}

// AnswerInRoom answers the room's running activity (the WebSocket answer
// frame without an activity). The running activity is remembered per room;
// when the remembered one has ended (another node ran the last reveal) it
// is looked up again once.
func (s *Service) AnswerInRoom(ctx context.Context, user, roomID string, n, option int) (string, []byte, error) {
	for try := 0; ; try++ {
		id, err := s.Running(ctx, roomID)
		if err != nil {
			return "", nil, err
		}
		sealed, err := s.Answer(ctx, user, id, n, option)
		if err != nil && try == 0 && errs.From(err).Code == CodeNotRunning {
			s.mu.Lock()
			if s.active[roomID] == id {
				delete(s.active, roomID)
			}
			s.mu.Unlock()
			continue
		}
		return id, sealed, err
	}
}

// Winners lists what a settled activity paid.
func (s *Service) Winners(ctx context.Context, id string) ([]store.Prize, int64, error) {
	a, err := s.activity(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	l, err := s.live(ctx, a)
	if err != nil {
		return nil, 0, err
	}
	if l.Status == StatusEnded { // the settlement failed or was cut short: finish it
		if _, err := s.finish(ctx, a); err != nil {
			return nil, 0, err
		}
	} else if l.Status != StatusSettled {
		return nil, 0, errs.New(CodeNotEnded, "the activity has not ended")
	}
	ps, err := s.d.Store.ActivityPrizes(ctx, id, PrizeKind)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	var total int64
	for _, p := range ps {
		total += p.AmountCents
	}
	return ps, total, nil
}

// GrantCards gives user n revival cards and returns their balance.
func (s *Service) GrantCards(ctx context.Context, user string, n int) (int, error) {
	if strings.TrimSpace(user) == "" || len(user) > 128 {
		return 0, errs.New(errs.BadRequest, "user is required (at most 128 bytes)")
	}
	if n < 1 || n > 1000 {
		return 0, errs.New(errs.BadRequest, "count must be 1–1000")
	}
	total, err := s.d.Store.GrantCards(ctx, user, n)
	if err != nil {
		return 0, unavailable(err)
	}
	return total, nil
}

// Cards returns the revival cards user holds.
func (s *Service) Cards(ctx context.Context, user string) (int, error) {
	m, err := s.d.Store.Cards(ctx, []string{user})
	if err != nil {
		return 0, unavailable(err)
	}
	return m[user], nil
}

// Prizes lists what user won.
func (s *Service) Prizes(ctx context.Context, user string) ([]store.Prize, error) {
	ps, err := s.d.Store.UserPrizes(ctx, user)
	if err != nil {
		return nil, unavailable(err)
	}
	return ps, nil
}
