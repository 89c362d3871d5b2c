package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
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
// own decode error reports it (classified malformed). The common case, an object whose braces
// balance, is rewritten in one pass over its bytes and left for the generated decoder to check;
// anything else is decoded here, to tell a cut-off body from a wrong one.
func normalise(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return []byte("{}"), nil
	}
	if trimmed[0] == '{' {
		if out, ok := quoteInt64s(body); ok {
			return out, nil
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // a number too large for float64 is still a value, not an error
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
	return body, nil // an object followed by garbage: the generated decoder reports it
}

// quoteInt64s returns b with every integral number that is the value of a key in int64Keys
// quoted (b itself when there is none: nothing is copied then), and whether b is one balanced
// value: every string closed, and its brackets closing exactly at its end. It does not check the
// rest of the grammar; the generated decoder does.
func quoteInt64s(b []byte) ([]byte, bool) {
	var out []byte // nil until the first rewrite
	last, depth, closed := 0, 0, false
	for i := 0; i < len(b); {
		c := b[i]
		if c != '"' {
			switch c {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth < 0 {
					return b, false
				}
				closed = closed || depth == 0
			default:
				if closed && c != ' ' && c != '\t' && c != '\n' && c != '\r' {
					return b, false // something after the value
				}
			}
			i++
			continue
		}
		if closed {
			return b, false
		}
		// A string: find its end, skipping escaped characters.
		j, escaped := i+1, false
		for ; j < len(b) && b[j] != '"'; j++ {
			if b[j] == '\\' {
				escaped = true
				j++
			}
		}
		if j >= len(b) {
			return b, false // unterminated
		}
		str := b[i+1 : j]
		i = skipSpace(b, j+1)
		if i >= len(b) || b[i] != ':' {
			continue // a value, not a key
		}
		v := skipSpace(b, i+1)
		if v >= len(b) || (b[v] != '-' && (b[v] < '0' || b[v] > '9')) {
			i = v
			continue
		}
		e := v
		for e < len(b) && strings.IndexByte("+-.0123456789eE", b[e]) >= 0 {
			e++
		}
		if isInt64Key(str, escaped) {
			if _, err := strconv.ParseInt(string(b[v:e]), 10, 64); err == nil {
				out = append(out, b[last:v]...)
				out = append(out, '"')
				out = append(out, b[v:e]...)
				out = append(out, '"')
				last = e
			}
		}
		i = e
	}
	if depth != 0 || !closed {
		return b, false
	}
	if out == nil {
		return b, true
	}
	return append(out, b[last:]...), true
}

// isInt64Key reports whether the raw key (between its quotes) names an int64Keys field.
func isInt64Key(raw []byte, escaped bool) bool {
	if !escaped {
		return int64Keys[string(raw)]
	}
	var k string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &k) != nil {
		return false
	}
	return int64Keys[k]
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
