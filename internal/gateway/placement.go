package gateway

import (
	"net/http"

	"roomcast/internal/placement"
)

// Placement is what the gateway reads of the hot-room placement (R14): the
// table the cluster agreed on. nil (single node, or placement off) places
// nothing.
type Placement interface {
	Table() *placement.Table
}

// selfURL is this node's base URL: --advertise, else the one the request
// reached.
func (g *Gateway) selfURL(r *http.Request) string {
	if g.cfg.Advertise != "" {
		return g.cfg.Advertise
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// table is the current placement table (nil: nothing placed).
func (g *Gateway) table() *placement.Table {
	if g.d.Placement == nil {
		return nil
	}
	return g.d.Placement.Table()
}

// nodesFor lists where a client (key: its user, device or address) should
// connect for room, best first: the room's placed nodes when it is hot,
// else this node (cold rooms stay where their viewers are).
func (g *Gateway) nodesFor(r *http.Request, room, key string) []string {
	if nodes := g.table().For(room, key); len(nodes) > 0 {
		return nodes
	}
	return []string{g.selfURL(r)}
}

// moveFor is the node a client of room connected here should move to, or
// "" when this node is one of the room's placed nodes or the room is cold.
// The client is served either way: a stale table never refuses anyone.
func (g *Gateway) moveFor(room, key string) string {
	t := g.table()
	if t.Serves(room, g.cfg.Advertise) {
		return ""
	}
	if nodes := t.For(room, key); len(nodes) > 0 {
		return nodes[0]
	}
	return ""
}

// placementKey is what spreads a hot room's clients over its nodes: the
// user, else the device, else the address.
func placementKey(uid, device, ip string) string {
	switch {
	case uid != "":
		return "u:" + uid
	case device != "":
		return "d:" + device
	}
	return "a:" + ip
}
