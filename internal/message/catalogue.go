package message

import (
	"math"
	"sort"
)

// GiftDef is one entry of the server's gift catalogue.
type GiftDef struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	ValueCents int64  `json:"value_cents"`
	Icon       string `json:"icon,omitempty"`
}

// DefaultGifts is the catalogue used when the configuration names none.
var DefaultGifts = []GiftDef{
	{ID: "rose", Name: "Rose", ValueCents: 10, Icon: "🌹"},
	{ID: "heart", Name: "Heart", ValueCents: 100, Icon: "💖"},
	{ID: "star", Name: "Star", ValueCents: 500, Icon: "⭐"},
	{ID: "car", Name: "Sports car", ValueCents: 10000, Icon: "🏎️"},
	{ID: "rocket", Name: "Rocket", ValueCents: 50000, Icon: "🚀"},
	{ID: "castle", Name: "Castle", ValueCents: 100000, Icon: "🏰"},
}

// Catalogue is an immutable set of gifts, looked up by id.
type Catalogue struct {
	list []GiftDef
	byID map[string]GiftDef
}

// NewCatalogue builds a catalogue; an empty list means DefaultGifts.
func NewCatalogue(gifts []GiftDef) *Catalogue {
	if len(gifts) == 0 {
		gifts = DefaultGifts
	}
	c := &Catalogue{list: append([]GiftDef(nil), gifts...), byID: make(map[string]GiftDef, len(gifts))}
	sort.SliceStable(c.list, func(i, j int) bool { return c.list[i].ValueCents < c.list[j].ValueCents })
	for _, g := range c.list {
		c.byID[g.ID] = g
	}
	return c
}

// Lookup returns the gift with the given id.
func (c *Catalogue) Lookup(id string) (GiftDef, bool) {
	g, ok := c.byID[id]
	return g, ok
}

// List returns the gifts, cheapest first. The slice must not be modified.
func (c *Catalogue) List() []GiftDef { return c.list }

// Priority bands. The formula (documented in docs/api.md):
//
//	must-deliver kinds            1000
//	gift                          500 + min(499, 25·log2(1 + value_cents·count))
//	pk                            450
//	chat                          100 + 3·level            (level 0–100 → 100–400)
//	notice                        80
//	enter, leave                  10
//
// so any gift outranks any chat, a bigger gift outranks a smaller one, and a
// high-level user's chat outranks a low-level or guest's.
const (
	PriorityMustDeliver = 1000
	priorityGiftBase    = 500
	priorityPK          = 450
	priorityChatBase    = 100
	priorityNotice      = 80
	priorityPresence    = 10
)

// ComputePriority returns the priority of m from its kind, gift value and
// sender level. Clients never choose it.
func ComputePriority(m *Message) int {
	switch {
	case m.Kind.MustDeliver():
		return PriorityMustDeliver
	case m.Kind == KindGift && m.Gift != nil:
		v := float64(m.Gift.ValueCents) * float64(m.Gift.Count)
		return priorityGiftBase + min(499, int(25*math.Log2(1+v)))
	case m.Kind == KindPK:
		return priorityPK
	case m.Kind == KindChat:
		lvl := 0
		if m.User != nil {
			lvl = max(0, min(100, m.User.Level))
		}
		return priorityChatBase + 3*lvl
	case m.Kind == KindNotice:
		return priorityNotice
	case m.Kind == KindEnter || m.Kind == KindLeave:
		return priorityPresence
	}
	return 0
}
