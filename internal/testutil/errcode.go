package testutil

import "roomcast/internal/errs"

// ErrCode is the client-facing code of err ("" for nil), for tests that
// check which refusal they got.
func ErrCode(err error) string {
	if err == nil {
		return ""
	}
	return errs.From(err).Code
}
