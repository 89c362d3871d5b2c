package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/api/googleapi"
)

const testToken = "ya29.a0-secret-access-token"

// apiError builds the *googleapi.Error the generated client returns for a status and body, by
// running googleapi.CheckResponse on a real response value.
func apiError(t *testing.T, status int, header http.Header, body string) error {
	t.Helper()
	if header == nil {
		header = http.Header{}
	}
	err := googleapi.CheckResponse(&http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body))})
	if err == nil {
		t.Fatalf("CheckResponse(%d) = nil", status)
	}
	return err
}

func rpcBody(code int, status, message, reason string, extra ...string) string {
	details := []string{}
	if reason != "" {
		details = append(details, fmt.Sprintf(`{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":%q,"domain":"googleapis.com"}`, reason))
	}
	details = append(details, extra...)
	return fmt.Sprintf(`{"error":{"code":%d,"message":%q,"status":%q,"details":[%s]}}`, code, message, status, strings.Join(details, ","))
}

func TestClassifyAPIErrors(t *testing.T) {
	t.Parallel()
	date := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		status     int
		header     http.Header
		body       string
		kind       Kind
		reason     string
		retryAfter time.Duration
	}{
		{name: "account not linked", status: 400, body: rpcBody(400, "FAILED_PRECONDITION", "The account is not linked to Google Health.", "ACCOUNT_NOT_LINKED"),
			kind: KindReconsent, reason: "ACCOUNT_NOT_LINKED"},
		{name: "missing scope", status: 403, body: rpcBody(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
			kind: KindReconsent, reason: "ACCESS_TOKEN_SCOPE_INSUFFICIENT"},
		{name: "missing scope via challenge", status: 403, header: http.Header{"Www-Authenticate": {`Bearer realm="x", error="insufficient_scope"`}},
			body: rpcBody(403, "PERMISSION_DENIED", "denied", ""), kind: KindReconsent, reason: "PERMISSION_DENIED"},
		{name: "legacy login", status: 403, body: rpcBody(403, "PERMISSION_DENIED", "The caller does not have permission. Could not mint UberMint from GaiaMint", ""),
			kind: KindReconsent, reason: "PERMISSION_DENIED"},
		{name: "service disabled", status: 403, body: rpcBody(403, "PERMISSION_DENIED", "API not enabled", "SERVICE_DISABLED"),
			kind: KindAPI, reason: "SERVICE_DISABLED"},
		{name: "legacy gone", status: 410, body: "Gone", kind: KindReconsent},
		{name: "unauthenticated", status: 401, body: rpcBody(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", "CREDENTIALS_MISSING"),
			kind: KindAPI, reason: "CREDENTIALS_MISSING"},
		{name: "rate limited seconds", status: 429, header: http.Header{"Retry-After": {"17"}},
			body: rpcBody(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "RATE_LIMIT_EXCEEDED"), kind: KindRateLimited, reason: "RATE_LIMIT_EXCEEDED", retryAfter: 17 * time.Second},
		{name: "rate limited date", status: 429,
			header: http.Header{"Retry-After": {date.Add(42 * time.Second).Format(http.TimeFormat)}, "Date": {date.Format(http.TimeFormat)}},
			body:   rpcBody(429, "RESOURCE_EXHAUSTED", "Quota exceeded", ""), kind: KindRateLimited, reason: "RESOURCE_EXHAUSTED", retryAfter: 42 * time.Second},
		{name: "rate limited retry info", status: 429,
			body: rpcBody(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "RATE_LIMIT_EXCEEDED", `{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"3.5s"}`),
			kind: KindRateLimited, reason: "RATE_LIMIT_EXCEEDED", retryAfter: 3500 * time.Millisecond},
		{name: "rate limited no hint", status: 429, body: "{}", kind: KindRateLimited},
		{name: "internal", status: 500, body: rpcBody(500, "INTERNAL", "Internal error", ""), kind: KindTransient, reason: "INTERNAL"},
		{name: "unavailable html", status: 503, body: "<html>busy</html>", kind: KindTransient},
		{name: "bad gateway", status: 502, body: "", kind: KindTransient},
		{name: "invalid filter", status: 400, body: rpcBody(400, "INVALID_ARGUMENT", "bad filter", "INVALID_DATA_POINT_FILTER"), kind: KindAPI, reason: "INVALID_DATA_POINT_FILTER"},
		{name: "not found", status: 404, body: "not found", kind: KindAPI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := classify("op", apiError(t, tc.status, tc.header, tc.body), testToken)
			if e.Kind != tc.kind || e.Status != tc.status || e.Reason != tc.reason || e.RetryAfter != tc.retryAfter {
				t.Errorf("got kind %v status %d reason %q retry %v; want %v %d %q %v",
					e.Kind, e.Status, e.Reason, e.RetryAfter, tc.kind, tc.status, tc.reason, tc.retryAfter)
			}
			if KindOf(fmt.Errorf("wrapped: %w", e)) != tc.kind {
				t.Errorf("KindOf through a wrap = %v", KindOf(e))
			}
			var ge *googleapi.Error
			if !errors.As(e, &ge) || ge.Code != tc.status {
				t.Errorf("errors.As *googleapi.Error failed through %v", e)
			}
		})
	}
}

func TestClassifyOtherErrors(t *testing.T) {
	t.Parallel()
	u := func(err error) error {
		return &url.Error{Op: "Post", URL: "http://127.0.0.1:1/v4/users/me/dataTypes/steps/dataPoints:rollUp?alt=json", Err: err}
	}
	var syntaxErr error
	{
		var v any
		syntaxErr = json.Unmarshal([]byte(`{"a":`), &v)
	}
	for _, tc := range []struct {
		name string
		err  error
		kind Kind
	}{
		{"deadline", context.DeadlineExceeded, KindTransient},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), KindTransient},
		{"refused", u(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), KindTransient},
		{"reset", u(syscall.ECONNRESET), KindTransient},
		{"server closed", u(io.EOF), KindTransient},
		{"dns", u(&net.DNSError{Err: "no such host", Name: "health.example"}), KindTransient},
		{"client timeout", u(timeoutErr{}), KindTransient},
		{"short body", u(&bodyError{err: io.ErrUnexpectedEOF}), KindTransient},
		{"truncated json", u(fmt.Errorf("%w after 10 bytes", errTruncated)), KindTransient},
		{"too large", u(errTooLarge), KindMalformed},
		{"bad scheme", u(errors.New(`unsupported protocol scheme "ftp"`)), KindAPI},
		{"syntax", syntaxErr, KindMalformed},
		{"string tag", errors.New("json: invalid use of ,string struct tag, trying to unmarshal unquoted value into int64"), KindMalformed},
		{"ours", &Error{Kind: KindRateLimited}, KindRateLimited},
	} {
		if got := classify("op", tc.err, testToken).Kind; got != tc.kind {
			t.Errorf("%s: kind %v, want %v", tc.name, got, tc.kind)
		}
	}
	if KindOf(errors.New("other")) != KindAPI || KindOf(context.DeadlineExceeded) != KindTransient || KindOf(nil) != KindAPI {
		t.Error("KindOf on plain errors")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "Client.Timeout exceeded" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestErrorTextHasNoToken(t *testing.T) {
	t.Parallel()
	// A server that echoes the credential back in its message, and a transport error that
	// somehow mentions it: neither may reach the error text.
	errs := []error{
		apiError(t, 401, nil, rpcBody(401, "UNAUTHENTICATED", "Invalid token "+testToken+" for Authorization: Bearer "+testToken, "")),
		apiError(t, 500, nil, "upstream said Authorization: Bearer "+testToken),
		&url.Error{Op: "Get", URL: "http://x/?access_token=" + testToken, Err: io.EOF},
	}
	for _, err := range errs {
		e := classify("op", err, testToken)
		if s := e.Error(); strings.Contains(s, testToken) || strings.Contains(s, "a0-secret") {
			t.Errorf("token in error text: %s", s)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"Authorization: Bearer abc.def", "Authorization: Bearer [redacted]"},
		{`"Bearer abc" and bearer xyz`, `"Bearer [redacted]" and bearer [redacted]`},
		{"Bearer ", "Bearer "},
		{"x " + testToken + " y", "x [redacted] y"},
	} {
		if got := scrub(tc.in, testToken); got != tc.want {
			t.Errorf("scrub(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	e := &Error{Kind: KindRateLimited, Op: "rollUp steps", Status: 429, Reason: "RATE_LIMIT_EXCEEDED", RetryAfter: 5 * time.Second, Err: errors.New("server answered 429")}
	want := "health: rollUp steps: rate_limited (status 429 RATE_LIMIT_EXCEEDED) retry after 5s: server answered 429"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	inner := errors.New("cause")
	if !errors.Is(&Error{Err: inner}, inner) {
		t.Error("Unwrap does not reach the cause")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	base := 100 * time.Millisecond
	for attempt := 1; attempt <= 12; attempt++ {
		full := min(base<<(attempt-1), maxBackoff)
		for range 50 {
			d := backoff(base, attempt)
			if d < full/2 || d > full {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
}
