package syncer

import (
	"context"
	"errors"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
)

// Failure reasons, the `reason` attribute of an ERROR line. A contract with operators' greps.
const (
	ReasonReconsent   = "reconsent"
	ReasonRateLimited = "rate_limited"
	ReasonAPI         = "api"
	ReasonNetwork     = "network"
	ReasonDB          = "db"
	ReasonMalformed   = "malformed"
)

// dbError marks a failure of our own database, as opposed to the API's.
type dbError struct{ err error }

func (e dbError) Error() string { return e.err.Error() }
func (e dbError) Unwrap() error { return e.err }

// classify maps an error from any step to the reason an operator acts on.
func classify(err error) string {
	var de dbError
	switch {
	case errors.As(err, &de):
		return ReasonDB
	case errors.Is(err, auth.ErrReconsent):
		return ReasonReconsent
	case errors.Is(err, auth.ErrTransient):
		return ReasonNetwork
	case errors.Is(err, auth.ErrClient):
		return ReasonAPI
	}
	var he *health.Error
	if !errors.As(err, &he) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return ReasonNetwork
		}
		return ReasonAPI
	}
	switch he.Kind {
	case health.KindReconsent:
		return ReasonReconsent
	case health.KindRateLimited:
		return ReasonRateLimited
	case health.KindTransient:
		return ReasonNetwork
	case health.KindMalformed:
		return ReasonMalformed
	default:
		return ReasonAPI
	}
}
