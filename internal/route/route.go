// Package route is the route service (R17, R22): it tells each client
// whether to use the WebSocket or short polling, by an admin-set rollout
// percentage and allow/deny lists of user ids, device ids and app versions.
package route

import (
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"sync/atomic"
)

// Rules decide the transport. Deny lists win over allow lists, allow lists
// over the percentage.
type Rules struct {
	Percent       int      `json:"percent"` // 0–100: share of clients sent to the WebSocket
	AllowUsers    []string `json:"allow_users,omitempty"`
	DenyUsers     []string `json:"deny_users,omitempty"`
	AllowDevices  []string `json:"allow_devices,omitempty"`
	DenyDevices   []string `json:"deny_devices,omitempty"`
	AllowVersions []string `json:"allow_versions,omitempty"`
	DenyVersions  []string `json:"deny_versions,omitempty"`
}

// DefaultRules sends everyone to the WebSocket.
func DefaultRules() Rules { return Rules{Percent: 100} }

// Valid checks r.
func (r Rules) Valid() bool { return r.Percent >= 0 && r.Percent <= 100 }

// Transports.
const (
	WS   = "ws"
	Poll = "poll"
)

type compiled struct {
	raw           Rules
	allowU, denyU map[string]bool
	allowD, denyD map[string]bool
	allowV, denyV map[string]bool
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Router decides per client; its rules can be swapped at run time.
type Router struct{ cur atomic.Pointer[compiled] }

// New returns a Router with rules r.
func New(r Rules) *Router {
	rt := &Router{}
	rt.Set(r)
	return rt
}

// Set replaces the rules.
func (rt *Router) Set(r Rules) {
	rt.cur.Store(&compiled{raw: r, allowU: set(r.AllowUsers), denyU: set(r.DenyUsers), allowD: set(r.AllowDevices),
		denyD: set(r.DenyDevices), allowV: set(r.AllowVersions), denyV: set(r.DenyVersions)})
}

// Rules returns the current rules.
func (rt *Router) Rules() Rules { return rt.cur.Load().raw }

// Decide returns WS or Poll for a client.
func (rt *Router) Decide(uid, device, version string) string {
	c := rt.cur.Load()
	switch {
	case uid != "" && c.denyU[uid], device != "" && c.denyD[device], version != "" && c.denyV[version]:
		return Poll
	case uid != "" && c.allowU[uid], device != "" && c.allowD[device], version != "" && c.allowV[version]:
		return WS
	}
	key := uid
	if key == "" {
		key = device
	}
	var bucket int
	if key == "" { // anonymous: the percentage applies per request
		bucket = rand.IntN(100)
	} else { // a known client stays on its side of the rollout
		h := fnv.New32a()
		h.Write([]byte(key))
		bucket = int(h.Sum32() % 100)
	}
	if bucket < c.raw.Percent {
		return WS
	}
	return Poll
}

// MarshalRules encodes rules for storage.
func MarshalRules(r Rules) string {
	b, _ := json.Marshal(r)
	return string(b)
}
