package health

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Kind says what the job should do about a failed call.
type Kind int

const (
	// KindAPI is any other failure: a 4xx that is our bug, a 401 (the caller may force-refresh the
	// token once and retry), or an unknown error.
	KindAPI Kind = iota
	// KindReconsent means the grant cannot be used any more: account not linked, a missing scope, a
	// legacy-login account ("UberMint"), or the legacy API's 410. Only a new consent fixes it.
	KindReconsent
	// KindRateLimited is a 429: defer the participant, RetryAfter says for how long when known.
	KindRateLimited
	// KindTransient is a 5xx, timeout, connection failure, truncated body or cancelled context:
	// try again later (the client already retried up to MaxAttempts).
	KindTransient
	// KindMalformed is a response that decoded to something impossible (bad JSON, wrong types,
	// windows outside the requested range). It is counted, never written.
	KindMalformed
)

// String returns the stable lowercase name used in logs and metrics.
func (k Kind) String() string {
	switch k {
	case KindAPI:
		return "api"
	case KindReconsent:
		return "reconsent"
	case KindRateLimited:
		return "rate_limited"
	case KindTransient:
		return "network"
	case KindMalformed:
		return "malformed"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the error type every call in this package returns.
type Error struct {
	Kind       Kind
	Op         string        // what was attempted, e.g. "rollUp heart-rate"
	Status     int           // HTTP status when there was a response, else 0
	Reason     string        // google.rpc.ErrorInfo reason or status (e.g. "ACCOUNT_NOT_LINKED"), if any
	RetryAfter time.Duration // from Retry-After on 429, 0 when the server gave none
	Err        error         // underlying cause, already scrubbed of credentials
}

// Error formats the error without any credential: Op, kind, status and reason, then the cause.
func (e *Error) Error() string {
	msg := "health: " + e.Op + ": " + e.Kind.String()
	if e.Status != 0 {
		msg += fmt.Sprintf(" (status %d", e.Status)
		if e.Reason != "" {
			msg += " " + e.Reason
		}
		msg += ")"
	} else if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" retry after %s", e.RetryAfter)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause, so errors.Is(err, context.DeadlineExceeded) works.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err: that of the *Error it wraps; KindTransient for a context deadline
// or cancellation (the participant can be tried again next run); KindAPI for anything else.
func KindOf(err error) Kind {
	var he *Error
	if errors.As(err, &he) {
		return he.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return KindTransient
	}
	return KindAPI
}
