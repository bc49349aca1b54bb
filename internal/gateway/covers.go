package gateway

import "roomcast/internal/record"

// withCovers sets each session's cover_url: the last picture of an ended
// session, a recent one of a live session (issue 15).
func (g *Gateway) withCovers(ss []record.Session) {
	if g.d.SessionCover == nil {
		return
	}
	for i := range ss {
		ss[i].Cover = g.d.SessionCover(ss[i].Room, ss[i].StartedAt, ss[i].EndedAt)
	}
}
