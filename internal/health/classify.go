package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"google.golang.org/api/googleapi"
)

// Reasons (google.rpc.ErrorInfo.reason) that mean the grant is unusable until the participant
// consents again (doc §8, §9).
const (
	reasonAccountNotLinked  = "ACCOUNT_NOT_LINKED"
	reasonScopeInsufficient = "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
)

// classify turns an error from a generated call's Do (or from our transport) into *Error,
// with every trace of token scrubbed from the text. It is the single place that decides what
// a failure means; callers only look at Kind.
func classify(op string, err error, token string) *Error {
	var he *Error
	if errors.As(err, &he) {
		return he
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return classifyAPI(op, ge, token)
	}
	e := &Error{Op: op, Err: scrubErr(err, token)}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		e.Kind = KindTransient
	case errors.Is(err, errTooLarge), errors.Is(err, errNotObject):
		e.Kind = KindMalformed
	case errors.Is(err, errTruncated), errors.Is(err, io.ErrUnexpectedEOF):
		e.Kind, e.Reason = KindTransient, "TRUNCATED"
	default:
		var ue *url.Error
		if errors.As(err, &ue) {
			e.Kind = transportKind(ue.Err)
			break
		}
		// Not HTTP, not context, not ours: Do's remaining failure mode is decoding the body
		// (syntax errors, wrong types, ",string" fields given something else).
		e.Kind = KindMalformed
	}
	return e
}

// transportKind classifies the cause inside *url.Error: failures of the network or of the
// server's connection are transient; anything else (bad scheme, TLS trust, a redirect policy)
// is a configuration problem that retrying will not fix.
func transportKind(err error) Kind {
	var be *bodyError
	var ne net.Error
	var oe *net.OpError
	var de *net.DNSError
	switch {
	case errors.As(err, &be),
		errors.As(err, &oe), errors.As(err, &de),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return KindTransient
	case errors.As(err, &ne) && ne.Timeout():
		return KindTransient
	}
	return KindAPI
}

// classifyAPI classifies a non-2xx answer by status and google.rpc.Status details.
func classifyAPI(op string, ge *googleapi.Error, token string) *Error {
	st := parseStatus(ge)
	e := &Error{Op: op, Status: ge.Code, Reason: st.reason, Err: &scrubbed{msg: serverMessage(ge.Code, st, token), err: ge}}
	if e.Reason == "" {
		e.Reason = st.status
	}
	switch {
	case st.reason == reasonAccountNotLinked,
		st.reason == reasonScopeInsufficient,
		ge.Code == http.StatusForbidden && insufficientScope(ge),
		// A legacy-Fitbit-login account: Google sends no reason, only this message (doc §8).
		ge.Code == http.StatusForbidden && strings.Contains(st.message, "UberMint"),
		ge.Code == http.StatusGone:
		e.Kind = KindReconsent
	case ge.Code == http.StatusTooManyRequests:
		e.Kind = KindRateLimited
		e.RetryAfter = retryAfter(ge.Header, st.retryDelay)
	case ge.Code >= 500, ge.Code == http.StatusRequestTimeout:
		e.Kind = KindTransient
	default:
		// 401 included: the caller may force one token refresh and try again.
		e.Kind = KindAPI
	}
	return e
}

// insufficientScope reports a missing scope signalled the older ways: errors[].reason or the
// WWW-Authenticate challenge (RFC 6750 insufficient_scope).
func insufficientScope(ge *googleapi.Error) bool {
	for _, it := range ge.Errors {
		if it.Reason == "insufficientPermissions" || it.Reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
			return true
		}
	}
	return strings.Contains(ge.Header.Get("WWW-Authenticate"), "insufficient_scope")
}

// rpcStatus is what we read of a google.rpc.Status error body.
type rpcStatus struct {
	status, reason, message string
	retryDelay              time.Duration
}

// parseStatus reads status, the first ErrorInfo reason and a RetryInfo delay from the body;
// googleapi.Error keeps details only as untyped maps and drops "status".
func parseStatus(ge *googleapi.Error) rpcStatus {
	var body struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Type       string `json:"@type"`
				Reason     string `json:"reason"`
				RetryDelay string `json:"retryDelay"`
			} `json:"details"`
		} `json:"error"`
	}
	st := rpcStatus{message: ge.Message}
	if json.Unmarshal([]byte(ge.Body), &body) != nil {
		return st
	}
	st.status = body.Error.Status
	if st.message == "" {
		st.message = body.Error.Message
	}
	for _, d := range body.Error.Details {
		switch {
		case strings.HasSuffix(d.Type, "google.rpc.ErrorInfo") && st.reason == "":
			st.reason = d.Reason
		case strings.HasSuffix(d.Type, "google.rpc.RetryInfo"):
			if dd, err := time.ParseDuration(d.RetryDelay); err == nil && dd > 0 {
				st.retryDelay = dd
			}
		}
	}
	return st
}

// retryAfter reads Retry-After (delta seconds or an HTTP date, measured against the response's
// own Date header so a skewed or simulated server clock gives the right wait), else the
// google.rpc.RetryInfo delay; 0 when neither is usable.
func retryAfter(h http.Header, fromBody time.Duration) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n > 0 && n < int64(24*time.Hour/time.Second) {
				return time.Duration(n) * time.Second
			}
		} else if at, err := http.ParseTime(v); err == nil {
			now := time.Now()
			if d, err := http.ParseTime(h.Get("Date")); err == nil {
				now = d
			}
			if d := at.Sub(now); d > 0 {
				return d
			}
		}
	}
	return fromBody
}

// maxMessage bounds how much server text an error string carries.
const maxMessage = 300

// serverMessage is the text kept from an error answer: the status line and the server's message,
// never the raw body or headers.
func serverMessage(code int, st rpcStatus, token string) string {
	msg := "server answered " + strconv.Itoa(code)
	if st.message != "" {
		m := st.message
		if len(m) > maxMessage {
			m = m[:maxMessage]
			for !utf8.ValidString(m) {
				m = m[:len(m)-1]
			}
			m += "…"
		}
		msg += ": " + m
	}
	return scrub(msg, token)
}

// scrubbed is an error whose text was cleaned of credentials; errors.As still reaches the cause
// (e.g. *googleapi.Error for callers that need the raw body).
type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }

func scrubErr(err error, token string) error {
	return &scrubbed{msg: scrub(err.Error(), token), err: err}
}

// scrub removes the token and anything presented as a Bearer credential from s. url.Error only
// carries the URL (the token travels in a header), so this is defence in depth.
func scrub(s, token string) string {
	const redacted = "[redacted]"
	if token != "" {
		s = strings.ReplaceAll(s, token, redacted)
	}
	for _, p := range []string{"Bearer ", "bearer "} {
		for i := 0; i < len(s); {
			j := strings.Index(s[i:], p)
			if j < 0 {
				break
			}
			start := i + j + len(p)
			end := start
			for end < len(s) && !strings.ContainsRune(" \t\r\n\"',;", rune(s[end])) {
				end++
			}
			if end > start && s[start:end] != redacted {
				s = s[:start] + redacted + s[end:]
				end = start + len(redacted)
			}
			i = end
		}
	}
	return s
}
