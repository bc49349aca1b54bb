package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/rediscall"

	"roomcast/internal/message"
)

// EvResync tells a topic's handlers that the bus may have lost events: its
// Redis subscription was re-established after a disconnect (or a Cluster
// slot moved). Handlers that keep sequenced state re-read it from the
// store. It may arrive on another goroutine than the topic's other events.
const EvResync EventType = "resync"

// Redis is the bus shared by the nodes of a cluster (issue 5). Every topic is
// a sharded pub/sub channel (SSUBSCRIBE/SPUBLISH, Redis 7), so in a Redis
// Cluster a channel lives on one shard and its traffic reaches only the
// nodes subscribed to it:
//
//   - a room topic is the channel the timeline's append script publishes
//     each stored message on (its JSON); a node subscribes only while it
//     has viewers of the room (the fan-out hub subscribes per room);
//   - users and control are PREFIX{bus}:users and PREFIX{bus}:control, which
//     every node subscribes to; their payload is an Event as JSON.
//
// Each subscribed topic has one goroutine that holds its subscription and
// calls the handlers, in publish order; it decodes each payload once for
// all of them. After a lost connection it subscribes again and sends the
// handlers an EvResync.
type Redis struct {
	c      rueidis.Client
	cfg    RedisConfig
	log    *slog.Logger
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	topics map[Topic]*topicSub // guarded by mu
	// leaving holds, per topic whose last handler left, a channel closed
	// once that subscription has ended (its SUNSUBSCRIBE sent); a new
	// subscription of the topic waits for it, or the old unsubscribe would
	// end the new one. Guarded by mu.
	leaving map[Topic]chan struct{}
	closed  bool // guarded by mu

	resyncMu sync.Mutex
	resyncQ  []*topicSub // topics owed an EvResync; guarded by resyncMu
	resyncCh chan struct{}
}

var _ Bus = (*Redis)(nil)

// RedisConfig configures a Redis bus. Zero values mean the defaults.
type RedisConfig struct {
	Prefix string // key prefix; default "rc:"
	// RoomChannel names the channel the timeline publishes room's messages
	// on (timeline.RedisChannel); required.
	RoomChannel func(room string) string
	Call        rediscall.Func // nil: commands run directly
	Log         *slog.Logger   // default slog.Default()
	// SubscribeTimeout bounds waiting for a subscription to be confirmed;
	// default 5s.
	SubscribeTimeout time.Duration
}

// topicSub is one subscribed topic.
type topicSub struct {
	topic    Topic
	room     string // for room topics
	channel  string
	cancel   context.CancelFunc
	handlers atomic.Pointer[[]*handlerRef] // replaced, never mutated
	ready    chan struct{}                 // closed at the first confirmation
	ended    chan struct{}                 // closed when hold returns
	confirms atomic.Int64                  // subscription confirmations so far
}

type handlerRef struct{ h Handler }

// NewRedis returns a bus on c. It does not own c; Close stops its goroutines.
func NewRedis(c rueidis.Client, cfg RedisConfig) (*Redis, error) {
	if cfg.RoomChannel == nil {
		return nil, errors.New("bus: RedisConfig.RoomChannel is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "rc:"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SubscribeTimeout <= 0 {
		cfg.SubscribeTimeout = 5 * time.Second
	}
	b := &Redis{c: c, cfg: cfg, log: cfg.Log, topics: map[Topic]*topicSub{}, leaving: map[Topic]chan struct{}{},
		resyncCh: make(chan struct{}, 1)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.resyncLoop()
	return b, nil
}

// channel returns the Redis channel of t and, for a room topic, the room.
func (b *Redis) channel(t Topic) (ch, room string) {
	if r, ok := strings.CutPrefix(string(t), "room:"); ok {
		return b.cfg.RoomChannel(r), r
	}
	return b.cfg.Prefix + "{bus}:" + string(t), ""
}

// wireEvent is an Event on the users and control channels; Msg is the
// message's own JSON encoding.
type wireEvent struct {
	Type  EventType       `json:"type"`
	Room  string          `json:"room,omitempty"`
	User  string          `json:"user,omitempty"`
	Msg   json.RawMessage `json:"msg,omitempty"`
	Until int64           `json:"until,omitempty"`
	Data  []byte          `json:"data,omitempty"`
}

// Publish implements Bus. On a room topic only EvMessage events travel, as
// "<epoch> <message JSON>" (what the timeline's script publishes itself).
func (b *Redis) Publish(ctx context.Context, t Topic, ev Event) error {
	ch, room := b.channel(t)
	var payload []byte
	if room != "" {
		if ev.Type != EvMessage || ev.Msg == nil {
			return fmt.Errorf("bus: publish %s: room topics carry only messages", t)
		}
		payload = append(append([]byte(ev.Msg.Epoch), ' '), ev.Msg.Encoded()...)
	} else {
		w := wireEvent{Type: ev.Type, Room: ev.Room, User: ev.User, Until: ev.Until, Data: ev.Data}
		if ev.Msg != nil {
			w.Msg = ev.Msg.Encoded()
		}
		var err error
		if payload, err = json.Marshal(w); err != nil {
			return fmt.Errorf("bus: publish %s: %w", t, err)
		}
	}
	err := b.cfg.Call.Do(ctx, "bus_publish", 1, func(ctx context.Context) error {
		return b.c.Do(ctx, b.c.B().Spublish().Channel(ch).Message(rueidis.BinaryString(payload)).Build()).Error()
	})
	if err != nil {
		return fmt.Errorf("bus: publish %s: %w", t, err)
	}
	return nil
}

// Subscribe implements Bus. It returns once Redis has confirmed the
// subscription, so a caller that reads the store afterwards misses nothing
// published in between. The returned cancel never blocks.
func (b *Redis) Subscribe(t Topic, h Handler) (func(), error) {
	ref := &handlerRef{h: h}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	ts := b.topics[t]
	if ts == nil {
		ch, room := b.channel(t)
		ts = &topicSub{topic: t, room: room, channel: ch, ready: make(chan struct{}), ended: make(chan struct{})}
		ts.handlers.Store(&[]*handlerRef{})
		var ctx context.Context
		ctx, ts.cancel = context.WithCancel(b.ctx)
		b.topics[t] = ts
		b.wg.Add(1)
		go b.hold(ctx, ts, b.leaving[t])
	}
	old := *ts.handlers.Load()
	next := append(append(make([]*handlerRef, 0, len(old)+1), old...), ref)
	ts.handlers.Store(&next)
	b.mu.Unlock()

	var once sync.Once
	cancel := func() { once.Do(func() { b.remove(ts, ref) }) }
	select {
	case <-ts.ready: // another handler's subscription
		return cancel, nil
	default:
	}
	ctx, stop := context.WithTimeout(b.ctx, b.cfg.SubscribeTimeout)
	defer stop()
	err := b.cfg.Call.Do(ctx, "bus_subscribe", 1, func(ctx context.Context) error {
		select {
		case <-ts.ready:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("subscription not confirmed: %w", ctx.Err())
		}
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bus: subscribe %s: %w", t, err)
	}
	return cancel, nil
}

// remove drops one handler; the last one's departure ends the subscription.
func (b *Redis) remove(ts *topicSub, ref *handlerRef) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *ts.handlers.Load()
	next := make([]*handlerRef, 0, len(old))
	for _, r := range old {
		if r != ref {
			next = append(next, r)
		}
	}
	ts.handlers.Store(&next)
	if len(next) == 0 && b.topics[ts.topic] == ts {
		delete(b.topics, ts.topic)
		b.leaving[ts.topic] = ts.ended
		ts.cancel()
	}
}

// hold keeps ts subscribed until ctx ends, subscribing again (with backoff)
// whenever the connection is lost. It first waits for the topic's previous
// subscription (prev, if not nil) to end.
func (b *Redis) hold(ctx context.Context, ts *topicSub, prev chan struct{}) {
	defer b.wg.Done()
	defer b.ended(ts)
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			return
		}
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		before := ts.confirms.Load()
		rctx := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
			if s.Kind == "ssubscribe" && s.Channel == ts.channel {
				b.confirmed(ts)
			}
		})
		rctx = rueidis.WithOnReceiveReturnHook(rctx, func(err error, cc rueidis.CommandClient) error {
			if ctx.Err() != nil { // unsubscribed: tell Redis to stop sending
				uctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = cc.Do(uctx, cc.B().Sunsubscribe().Channel(ts.channel).Build()).Error()
			}
			return err
		})
		err := b.c.Receive(rctx, b.c.B().Ssubscribe().Channel(ts.channel).Build(), func(m rueidis.PubSubMessage) {
			b.deliver(ts, m.Message)
		})
		if ctx.Err() != nil {
			return
		}
		if ts.confirms.Load() > before {
			backoff = 50 * time.Millisecond // it was up for a while: retry soon
		}
		b.log.Debug("bus: subscription lost; subscribing again", "channel", ts.channel, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// ended records that ts's subscription is over.
func (b *Redis) ended(ts *topicSub) {
	close(ts.ended)
	b.mu.Lock()
	if b.leaving[ts.topic] == ts.ended {
		delete(b.leaving, ts.topic)
	}
	b.mu.Unlock()
}

// confirmed runs on rueidis's pipeline goroutine: it must not block.
func (b *Redis) confirmed(ts *topicSub) {
	if ts.confirms.Add(1) == 1 {
		close(ts.ready)
		return
	}
	b.resyncMu.Lock()
	b.resyncQ = append(b.resyncQ, ts)
	b.resyncMu.Unlock()
	select {
	case b.resyncCh <- struct{}{}:
	default:
	}
}

// ResyncAll sends every subscribed topic's handlers an EvResync: the app
// calls it when Redis answers again after an outage, since commands made
// meanwhile (a gap repair) failed.
func (b *Redis) ResyncAll() {
	b.mu.Lock()
	all := make([]*topicSub, 0, len(b.topics))
	for _, ts := range b.topics {
		all = append(all, ts)
	}
	b.mu.Unlock()
	b.resyncMu.Lock()
	b.resyncQ = append(b.resyncQ, all...)
	b.resyncMu.Unlock()
	select {
	case b.resyncCh <- struct{}{}:
	default:
	}
}

// resyncLoop sends EvResync to the handlers of re-subscribed topics.
func (b *Redis) resyncLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.resyncCh:
		}
		b.resyncMu.Lock()
		q := b.resyncQ
		b.resyncQ = nil
		b.resyncMu.Unlock()
		if len(q) > 0 {
			b.log.Info("bus: resyncing after a reconnect", "topics", len(q))
		}
		for _, ts := range q {
			for _, r := range *ts.handlers.Load() {
				r.h(Event{Type: EvResync, Room: ts.room})
			}
		}
	}
}

// deliver decodes one payload and calls the topic's handlers.
func (b *Redis) deliver(ts *topicSub, payload string) {
	var ev Event
	if ts.room != "" {
		// "<epoch> <json>"; a bare JSON object is from a node that predates
		// epochs (issue 8). A group commit (issue 14) publishes its batch at
		// once: "<epoch> <json>\n<json>…", in seq order (JSON holds no raw
		// newline).
		epoch, raw := "", payload
		if !strings.HasPrefix(payload, "{") {
			epoch, raw, _ = strings.Cut(payload, " ")
		}
		for raw != "" {
			var one string
			one, raw, _ = strings.Cut(raw, "\n")
			m, err := decodeMessage([]byte(one))
			if err != nil {
				b.log.Warn("bus: bad message on room channel", "channel", ts.channel, "err", err)
				return
			}
			m.Epoch = epoch
			ev := Event{Type: EvMessage, Room: ts.room, Msg: m}
			for _, r := range *ts.handlers.Load() {
				r.h(ev)
			}
		}
		return
	} else {
		var w wireEvent
		if err := json.Unmarshal([]byte(payload), &w); err != nil {
			b.log.Warn("bus: bad event", "channel", ts.channel, "err", err)
			return
		}
		ev = Event{Type: w.Type, Room: w.Room, User: w.User, Until: w.Until, Data: w.Data}
		if len(w.Msg) > 0 {
			m, err := decodeMessage(w.Msg)
			if err != nil {
				b.log.Warn("bus: bad event message", "channel", ts.channel, "err", err)
				return
			}
			ev.Msg = m
		}
	}
	for _, r := range *ts.handlers.Load() {
		r.h(ev)
	}
}

// decodeMessage decodes a message's JSON and seals it again (same bytes).
func decodeMessage(raw []byte) (*message.Message, error) {
	m := new(message.Message)
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	m.Seal()
	return m, nil
}

// Close implements Bus: it ends every subscription and waits for the
// goroutines holding them.
func (b *Redis) Close() error {
	b.mu.Lock()
	b.closed = true
	b.topics = map[Topic]*topicSub{}
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}
