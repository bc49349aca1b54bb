package gateway

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/errs"
	"roomcast/internal/signin"
)

// handleSignin serves POST /api/signin: a one-time code from a sign-in link
// (printed by the first start or `roomcast admin login`) or the admin key
// is exchanged for a studio session, an admin token valid for
// signin.SessionTTL. The code is dead afterwards, on every node.
func (g *Gateway) handleSignin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Code     string `json:"code"`
		AdminKey string `json:"admin_key"`
	}
	if err := decode(w, r, &body); err != nil {
		writeErr(w, err)
		return
	}
	var grant signin.Grant
	switch {
	case body.Code != "":
		var err error
		if grant, err = signin.Redeem(r.Context(), g.d.Store, body.Code, time.Now()); err != nil {
			if errors.Is(err, signin.ErrBadCode) {
				writeErr(w, errs.New(errs.Unauthorized, "this sign-in link is invalid, used or expired; print a new one with `roomcast admin login`"))
				return
			}
			writeErr(w, err)
			return
		}
	case body.AdminKey != "":
		if !auth.CheckKey(body.AdminKey, g.d.AdminKey) {
			writeErr(w, errs.New(errs.Unauthorized, "wrong admin key"))
			return
		}
	default:
		writeErr(w, errs.New(errs.BadRequest, `send {"code": …} from a sign-in link or {"admin_key": …}`))
		return
	}
	tok, c, err := signin.Session(g.d.Signer, grant)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"token": tok, "expires_at": time.Now().Add(signin.SessionTTL).UTC().Format(time.RFC3339),
		"user": map[string]any{"id": c.Sub, "name": c.Name, "role": c.Role}})
}

// handleAnchorLink serves POST /api/rooms/{id}/signin-link: an admin makes
// a one-time studio sign-in link for the room's anchor (valid
// signin.CodeTTL), to hand out with the stream key — the anchor then
// moderates their room without a token from a host app.
func (g *Gateway) handleAnchorLink(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	if !who.Admin {
		writeErr(w, errs.New(errs.Forbidden, "only admins make sign-in links"))
		return
	}
	rm, err := g.d.Rooms.Get(r.Context(), r.PathValue("id"), false)
	if err != nil {
		writeErr(w, err)
		return
	}
	now := time.Now()
	code, err := signin.IssueFor(r.Context(), g.d.Store, now, signin.Grant{Anchor: rm.AnchorID})
	if err != nil {
		writeErr(w, err)
		return
	}
	base := strings.TrimRight(g.cfg.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	writeJSON(w, 200, map[string]any{"url": base + "/studio#code=" + code, "anchor": rm.AnchorID,
		"expires_at": now.Add(signin.CodeTTL).UTC().Format(time.RFC3339)})
}
