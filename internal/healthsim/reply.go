package healthsim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// reply is a finished answer, kept as bytes so that body faults can corrupt it before it is sent.
type reply struct {
	status int
	body   []byte
	hdr    http.Header
}

func (r *reply) header() http.Header {
	if r.hdr == nil {
		r.hdr = make(http.Header)
	}
	return r.hdr
}

func jsonReply(status int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshalled; failing here is a simulator bug.
		panic("healthsim: marshal: " + err.Error())
	}
	return reply{status: status, body: append(b, '\n')}
}

func writeReply(w http.ResponseWriter, r reply) {
	for k, v := range r.hdr {
		w.Header()[k] = v
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(r.status)
	w.Write(r.body)
}

// google.rpc.Status as JSON. The generated client's error parser (gax apierror) decodes this with
// protojson, which rejects unknown fields, so nothing else may appear here.
type rpcStatusBody struct {
	Error rpcStatus `json:"error"`
}

type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Details []any  `json:"details,omitempty"`
}

type errorInfo struct {
	Type     string            `json:"@type"`
	Reason   string            `json:"reason"`
	Domain   string            `json:"domain"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type quotaFailure struct {
	Type       string           `json:"@type"`
	Violations []quotaViolation `json:"violations"`
}

type quotaViolation struct {
	Subject     string `json:"subject"`
	Description string `json:"description"`
}

type badRequest struct {
	Type            string           `json:"@type"`
	FieldViolations []fieldViolation `json:"fieldViolations"`
}

type fieldViolation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

const (
	typeErrorInfo    = "type.googleapis.com/google.rpc.ErrorInfo"
	typeQuotaFailure = "type.googleapis.com/google.rpc.QuotaFailure"
	typeBadRequest   = "type.googleapis.com/google.rpc.BadRequest"
	// The reference's fixtures use this domain for Health reasons (§13 item 15: unverified).
	errorDomain = "googleapis.com"
)

// rpcError builds a google.rpc.Status answer; reason "" omits the ErrorInfo.
func rpcError(code int, status, msg, reason string, extra ...any) reply {
	st := rpcStatus{Code: code, Message: msg, Status: status}
	if reason != "" {
		st.Details = append(st.Details, errorInfo{Type: typeErrorInfo, Reason: reason, Domain: errorDomain,
			Metadata: map[string]string{"service": "health.googleapis.com"}})
	}
	st.Details = append(st.Details, extra...)
	return jsonReply(code, rpcStatusBody{Error: st})
}

// invalidArgument is a 400 with a BadRequest field violation, as Google's validation answers.
func invalidArgument(field, msg string) reply {
	return rpcError(http.StatusBadRequest, "INVALID_ARGUMENT", msg, "",
		badRequest{Type: typeBadRequest, FieldViolations: []fieldViolation{{Field: field, Description: msg}}})
}

// invalidFilter is a 400 carrying one of the filter reasons of the reference's §9 table.
func invalidFilter(reason, msg string) reply {
	return rpcError(http.StatusBadRequest, "INVALID_ARGUMENT", msg, reason)
}

func errAccountNotLinked() reply {
	return rpcError(http.StatusBadRequest, "FAILED_PRECONDITION", "The account is not linked to Google Health.", "ACCOUNT_NOT_LINKED")
}

func errScope() reply {
	r := rpcError(http.StatusForbidden, "PERMISSION_DENIED", "Request had insufficient authentication scopes.", "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
	r.header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="insufficient_scope"`)
	return r
}

func errUnauthenticated(reason string) reply {
	r := rpcError(http.StatusUnauthorized, "UNAUTHENTICATED",
		"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
		reason)
	r.header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
	return r
}

func errRateLimited(retry time.Duration) reply {
	r := rpcError(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED",
		"Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'health.googleapis.com' for consumer 'project_number:000000000000'.",
		"RATE_LIMIT_EXCEEDED",
		quotaFailure{Type: typeQuotaFailure, Violations: []quotaViolation{{Subject: "project:000000000000", Description: "Quota exceeded"}}})
	r.header().Set("Retry-After", retryAfterSeconds(retry))
	return r
}

func errNotFound() reply {
	return rpcError(http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", "")
}

// statusName maps an HTTP status to the google.rpc.Code name Google pairs with it.
func statusName(code int) string {
	switch code {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 409:
		return "ABORTED"
	case 412:
		return "FAILED_PRECONDITION"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 499:
		return "CANCELLED"
	case 501:
		return "UNIMPLEMENTED"
	case 503:
		return "UNAVAILABLE"
	case 504:
		return "DEADLINE_EXCEEDED"
	}
	if code >= 500 {
		return "INTERNAL"
	}
	return "UNKNOWN"
}

func defaultMessage(code int) string {
	switch code {
	case 400:
		return "Request contains an invalid argument."
	case 401:
		return "Request had invalid authentication credentials."
	case 403:
		return "The caller does not have permission"
	case 404:
		return "Requested entity was not found."
	case 429:
		return "Resource has been exhausted (e.g. check quota)."
	case 500:
		return "Internal error encountered."
	case 503:
		return "The service is currently unavailable."
	case 504:
		return "The request timed out."
	}
	return http.StatusText(code)
}

// malformedBody has every top-level field any endpoint returns, each with the wrong JSON type.
const malformedBody = `{"name":12,"legacyUserId":{"x":1},"healthUserId":[1],"timeZone":7,"utcOffset":false,` +
	`"pairedDevices":"none","nextPageToken":3,"rollupDataPoints":{"steps":"many"},"dataPoints":"x",` +
	`"access_token":17,"expires_in":"soon","token_type":[],"refresh_token":{}}` + "\n"

var int64Field = regexp.MustCompile(`"(countSum|millimetersSum|gainMillimetersSum|activeMinutesSum|sumInFatBurnHeartZone|sumInCardioHeartZone|sumInPeakHeartZone|beatsPerMinute)":"(-?[0-9]+)"`)

// corrupt applies a Body fault to a successful reply. "truncated" is handled by the writer.
func corrupt(r reply, kind string) reply {
	switch kind {
	case "malformed":
		r.body = []byte(malformedBody)
	case "garbage":
		r.body = []byte("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n")
	case "numbers":
		r.body = int64Field.ReplaceAll(r.body, []byte(`"$1":$2`))
	case "outside-range":
		r.body = outsideRange(r.body)
	}
	return r
}

// outsideRange appends a copy of the last roll-up point moved 400 days later.
func outsideRange(body []byte) []byte {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	pts, _ := m["rollupDataPoints"].([]any)
	var pt map[string]any
	if len(pts) > 0 {
		pt, _ = pts[len(pts)-1].(map[string]any)
	}
	if pt == nil {
		pt = map[string]any{"startTime": "2999-01-01T00:00:00Z", "endTime": "2999-01-01T00:01:00Z", "steps": map[string]any{"countSum": "1"}}
	} else {
		cp := make(map[string]any, len(pt))
		for k, v := range pt {
			cp[k] = v
		}
		for _, k := range []string{"startTime", "endTime"} {
			if s, ok := cp[k].(string); ok {
				if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
					cp[k] = ts(t.AddDate(0, 0, 400))
				}
			}
		}
		for _, k := range []string{"civilStartTime", "civilEndTime"} {
			if c, ok := cp[k].(map[string]any); ok {
				if d, ok := c["date"].(map[string]any); ok {
					y, _ := d["year"].(float64)
					cp[k] = map[string]any{"date": map[string]any{"year": y + 1, "month": d["month"], "day": d["day"]}}
				}
			}
		}
		pt = cp
	}
	m["rollupDataPoints"] = append(pts, pt)
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return append(out, '\n')
}

// writeTruncated sends half of a body that Content-Length promised in full, then drops the
// connection: the client sees an unexpected EOF, as with a proxy timing out mid-response.
func writeTruncated(w http.ResponseWriter, r reply) {
	for k, v := range r.hdr {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(r.status)
	w.Write(r.body[:len(r.body)/2])
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler) // net/http closes the connection without logging
}

// ts formats an instant as proto3 JSON does: RFC 3339 in UTC with "Z".
func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// sendWithFault writes r, corrupted by the fault's Body if any.
func sendWithFault(w http.ResponseWriter, r reply, f *Fault) {
	if f != nil && f.Body != "" && r.status == http.StatusOK {
		if f.Body == "truncated" {
			writeTruncated(w, r)
			return
		}
		r = corrupt(r, f.Body)
	}
	writeReply(w, r)
}
