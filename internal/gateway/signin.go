package gateway

import (
	"errors"
	"net/http"
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
	switch {
	case body.Code != "":
		if err := signin.Redeem(r.Context(), g.d.Store, body.Code, time.Now()); err != nil {
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
	tok, err := signin.Session(g.d.Signer)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"token": tok, "expires_at": time.Now().Add(signin.SessionTTL).UTC().Format(time.RFC3339),
		"user": map[string]any{"id": "admin", "name": "admin", "role": auth.RoleAdmin}})
}
