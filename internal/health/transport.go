package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// tokenKey carries a Session's access token from Session.ctx to transport.RoundTrip.
type tokenKey struct{}

// bearer wraps the token so that printing a context (context.WithValue's String) or the value
// shows "[redacted]", never the token.
type bearer struct{ token string }

func (bearer) String() string   { return "[redacted]" }
func (bearer) GoString() string { return "[redacted]" }

// maxBody bounds a response we buffer: a full day of 1-minute heart rate is ~150 kB, so 32 MiB
// is far beyond any honest answer and stops a runaway body from exhausting memory.
const maxBody = 32 << 20

var (
	// errTruncated marks a body that ended in the middle: a cut connection or proxy. It is
	// transient (retried), unlike a complete body that is wrong (malformed).
	errTruncated = errors.New("response body truncated")
	// errTooLarge marks a body over maxBody.
	errTooLarge = errors.New("response body too large")
	// errNotObject marks a 2xx body that is valid JSON but not an object. The generated client
	// would decode "null" into a nil response with a nil error.
	errNotObject = errors.New("response body is not a JSON object")
)

// bodyError is a failure while reading a 2xx body (connection reset, timeout, short body).
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read response body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// transport adds the Session's Bearer token and normalises successful JSON bodies before the
// generated client decodes them.
type transport struct {
	base http.RoundTripper // nil = http.DefaultTransport
	host string            // the API host; the token is sent to no other host (e.g. on redirect)
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	if b, ok := req.Context().Value(tokenKey{}).(bearer); ok && b.token != "" && req.URL.Host == t.host {
		req = req.Clone(req.Context()) // a RoundTripper must not modify the caller's request
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	resp, err := base.RoundTrip(req)
	if err != nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	if err != nil {
		return nil, &bodyError{err: err}
	}
	if len(body) > maxBody {
		return nil, errTooLarge
	}
	body, err = normalise(body)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// int64Keys are the response fields the generated client declares as int64 with `json:",string"`
// (proto3 JSON) among the messages this package reads. Some producers send them as JSON numbers
// (Home Assistant fixtures, doc §12 item 7), which encoding/json rejects for ",string" fields, so
// integral numbers under these keys are rewritten as strings. batteryLevel and the civil date
// fields are plain numbers in the client and are left alone.
var int64Keys = map[string]bool{
	"countSum": true, "millimetersSum": true, "gainMillimetersSum": true, "activeMinutesSum": true,
	"sumInFatBurnHeartZone": true, "sumInCardioHeartZone": true, "sumInPeakHeartZone": true,
	"beatsPerMinute": true, "count": true, "millimeters": true, "gainMillimeters": true,
	"activeMinutes": true, "activeZoneMinutes": true,
}

// normalise prepares a 2xx body for the generated decoder:
//   - an empty body becomes "{}" (observed for dailyRollUp with no data);
//   - a body that ends inside a JSON value is errTruncated (transient);
//   - valid JSON that is not an object is errNotObject (malformed);
//   - integral JSON numbers under int64Keys become strings.
//
// Anything else that is not valid JSON is passed through unchanged, so the generated client's
// own decode error reports it (classified malformed).
func normalise(body []byte) ([]byte, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return []byte("{}"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w after %d bytes", errTruncated, len(body))
		}
		return body, nil
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, errNotObject
	}
	if !quoteInt64s(v) {
		return body, nil
	}
	out, err := json.Marshal(v)
	if err != nil {
		return body, nil
	}
	return out, nil
}

// quoteInt64s rewrites integral json.Numbers under int64Keys in place and reports whether it
// changed anything.
func quoteInt64s(v any) bool {
	changed := false
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if n, ok := e.(json.Number); ok && int64Keys[k] {
				if _, err := strconv.ParseInt(string(n), 10, 64); err == nil {
					x[k] = string(n)
					changed = true
				}
				continue
			}
			if quoteInt64s(e) {
				changed = true
			}
		}
	case []any:
		for _, e := range x {
			if quoteInt64s(e) {
				changed = true
			}
		}
	}
	return changed
}
