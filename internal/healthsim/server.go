package healthsim

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// OAuth scopes the simulator grants. Reads also accept the read/write variant without ".readonly"
// that older docs show (reference §12 item 6).
const (
	ScopeActivity      = "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly"
	ScopeHealthMetrics = "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly"
	ScopeSettings      = "https://www.googleapis.com/auth/googlehealth.settings.readonly"
	scopePrefix        = "https://www.googleapis.com/auth/googlehealth."
)

// RequiredScopes returns the three scopes sync-all needs (a fresh slice each call).
func RequiredScopes() []string { return []string{ScopeActivity, ScopeHealthMetrics, ScopeSettings} }

// Options configure a Server. The zero value is a usable 20-participant world on the real clock.
type Options struct {
	Now          func() time.Time // injectable clock (default time.Now); tests drive time with it
	Seed         int64            // ids, physiology, days and sync schedules all derive from it
	Participants int              // synthetic participants generated (default 20); participant 0 is CRBM3W
	ClientID     string           // default "sim-client"
	ClientSecret string           // default "sim-secret"
	// RotateRefreshTokens: each refresh issues a new refresh token; the old one dies once the new
	// access or refresh token is used. Replaying the old one before that returns the SAME new pair
	// (the grace that makes crash recovery possible); replaying it after counts Stats.RefreshTokenReuse.
	RotateRefreshTokens bool
	GrantLifetime       time.Duration // 0 = forever; 7*24h = apps in "Testing" status
	AccessTokenLifetime time.Duration // default 1h
	PageSize            int           // max points per page for rollUp/dailyRollUp/list (default 500)
	EmptyPages          bool          // insert empty pages that carry a nextPageToken
	RateLimitPerMinute  int           // per participant (default 300; negative = unlimited)
	RateLimitRolling    bool          // rolling 60 s window instead of fixed clock minutes
}

// Stats are simulator-wide event counters for tests.
type Stats struct {
	InvalidGrants     int // token requests answered invalid_grant
	RefreshTokenReuse int // a refresh token presented again after its replacement was used
	Refreshes         int // successful refresh_token grants (grace replays included)
	GraceReplays      int // refreshes answered with the already issued rotated pair
	CodeExchanges     int // successful authorization_code grants
	Authorizations    int // consents auto-approved (codes issued)
	Revocations       int // grants revoked through /revoke or RevokeGrants
	RateLimited       int // 429 answers from the quota
	FaultsInjected    int // requests answered by a Fault
}

// Server is the simulated Google Health API and Google OAuth. It is an http.Handler serving
// /v4/users/..., /o/oauth2/v2/auth (and the v1 /o/oauth2/auth), /token, /revoke, and the legacy
// Fitbit paths (/1/..., /1.1/..., /oauth2/token, ...) that answer 410 Gone. Safe for concurrent use.
type Server struct {
	opts     Options
	days     dayCache
	mu       sync.Mutex // guards everything below
	parts    []*participant
	byLegacy map[string]*participant
	codes    map[string]*authCode
	access   map[string]*accessToken
	refresh  map[string]*refreshToken
	grants   []*grant
	secrets  []string
	counts   map[countKey]int
	stats    Stats
	rng      *rand.Rand // fault probabilities: seeded, so a run is repeatable
}

type countKey struct{ legacyID, endpoint string }

// New builds the world. Participants are generated at once; their data is generated lazily.
func New(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Participants <= 0 {
		o.Participants = 20
	}
	if o.ClientID == "" {
		o.ClientID = "sim-client"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = "sim-secret"
	}
	if o.AccessTokenLifetime <= 0 {
		o.AccessTokenLifetime = time.Hour
	}
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	if o.RateLimitPerMinute == 0 {
		o.RateLimitPerMinute = 300
	}
	s := &Server{
		opts:     o,
		byLegacy: make(map[string]*participant),
		codes:    make(map[string]*authCode),
		access:   make(map[string]*accessToken),
		refresh:  make(map[string]*refreshToken),
		counts:   make(map[countKey]int),
		rng:      rand.New(rand.NewPCG(uint64(o.Seed), 0x5eed)),
		secrets:  []string{o.ClientSecret},
	}
	for i := range o.Participants {
		id := "CRBM3W"
		if i > 0 {
			for salt := 0; ; salt++ {
				id = legacyID(o.Seed, i, salt)
				if s.byLegacy[id] == nil {
					break
				}
			}
		}
		p := &participant{data: newPdata(o.Seed, Participant{LegacyUserID: id}, i)}
		if i == 1 {
			p.data.oldDevices = 6 // guarantee one participant whose pairedDevices paginate
		}
		s.parts = append(s.parts, p)
		s.byLegacy[id] = p
	}
	return s
}

func (s *Server) now() time.Time { return s.opts.Now().UTC() }

// Participants lists the participants in creation order.
func (s *Server) Participants() []Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Participant, len(s.parts))
	for i, p := range s.parts {
		out[i] = p.data.Participant
	}
	return out
}

// AddParticipant adds (or redefines) a participant. Empty HealthUserID, TimeZone and Email are
// derived from the legacy id; an unknown zone is replaced by a derived one. Data is deterministic
// from (seed, legacy id, zone). Grants, faults and device state of an existing id are kept.
func (s *Server) AddParticipant(p Participant) {
	if p.LegacyUserID == "" {
		return
	}
	pd := newPdata(s.opts.Seed, p, -1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.byLegacy[p.LegacyUserID]; old != nil {
		old.data = pd
		return
	}
	np := &participant{data: pd}
	s.parts = append(s.parts, np)
	s.byLegacy[p.LegacyUserID] = np
}

// Requests counts requests per participant and endpoint: "identity", "settings", "pairedDevices",
// "rollUp", "dailyRollUp", "list", "token", "authorize", "revoke", "legacy", "other". Every request
// that reached the handler counts, including those answered 429 or by a Fault. legacyID "" sums all
// participants plus requests that could not be attributed (missing or unknown token).
func (s *Server) Requests(legacyID, endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if legacyID != "" {
		return s.counts[countKey{legacyID, endpoint}]
	}
	n := 0
	for k, v := range s.counts {
		if k.endpoint == endpoint {
			n += v
		}
	}
	return n
}

// Secrets returns every access token, refresh token and authorization code issued so far, and the
// client secret: tests assert that none of them appears in logs or error strings.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

// Stats returns a snapshot of the event counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Server) countLocked(p *participant, endpoint string) {
	id := ""
	if p != nil {
		id = p.data.LegacyUserID
	}
	s.counts[countKey{id, endpoint}]++
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case path == "/o/oauth2/v2/auth" || path == "/o/oauth2/auth":
		s.serveAuthorize(w, r)
	case path == "/token":
		s.serveToken(w, r)
	case path == "/revoke" || path == "/o/oauth2/revoke":
		s.serveRevoke(w, r)
	case strings.HasPrefix(path, "/v4/"):
		s.serveData(w, r)
	case isLegacyPath(path):
		s.serveLegacy(w, r)
	default:
		s.mu.Lock()
		s.countLocked(nil, "other")
		s.mu.Unlock()
		writeReply(w, rpcError(http.StatusNotFound, "NOT_FOUND", "The requested URL was not found on this server.", ""))
	}
}

// isLegacyPath recognises the Fitbit Web API and Fitbit OAuth, turned off on 2026-11-02.
func isLegacyPath(p string) bool {
	for _, pre := range []string{"/1/", "/1.1/", "/1.2/", "/oauth2/token", "/oauth2/authorize", "/oauth2/revoke", "/oauth2/introspect"} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// serveLegacy answers 410 Gone. The real body is unknown (reference §13 item 12); this one keeps
// the Fitbit error shape so a legacy client can print it.
func (s *Server) serveLegacy(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.countLocked(nil, "legacy")
	s.mu.Unlock()
	writeReply(w, reply{status: http.StatusGone, body: []byte(`{"errors":[{"errorType":"gone","message":"The Fitbit Web API was turned off on 2026-11-02. Use the Google Health API."}],"success":false}` + "\n")})
}

// takeQuotaLocked applies the per-participant quota; ok=false carries the wait until a slot frees.
func (s *Server) takeQuotaLocked(p *participant, now time.Time) (bool, time.Duration) {
	limit := s.opts.RateLimitPerMinute
	if limit < 0 {
		return true, 0
	}
	if s.opts.RateLimitRolling {
		cut := now.Add(-time.Minute)
		i := 0
		for i < len(p.quotaRecent) && !p.quotaRecent[i].After(cut) {
			i++
		}
		p.quotaRecent = p.quotaRecent[i:]
		if len(p.quotaRecent) >= limit {
			return false, p.quotaRecent[0].Add(time.Minute).Sub(now)
		}
		p.quotaRecent = append(p.quotaRecent, now)
		return true, 0
	}
	win := now.Truncate(time.Minute)
	if !win.Equal(p.quotaStart) {
		p.quotaStart, p.quotaCount = win, 0
	}
	if p.quotaCount >= limit {
		return false, win.Add(time.Minute).Sub(now)
	}
	p.quotaCount++
	return true, 0
}

// retryAfterSeconds rounds up, and never says 0: a client told "0" would spin.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// Fault makes a participant's requests fail. Faults whose Path is "" hit every data API request
// (/v4/...); a non-empty Path hits any request whose path contains it, including "/token" and
// "/revoke" (token requests are attributed through their code or refresh token).
type Fault struct {
	Path    string        // substring of the request path (e.g. "heart-rate", "pairedDevices", "identity"); "" = all /v4
	Status  int           // answer with this HTTP status and a google.rpc.Status body (500, 503, 429, ...)
	Latency time.Duration // wait this long first (real time: it exists to trip client timeouts)
	// Body corrupts an otherwise normal 200 answer: "truncated" (the connection drops half way
	// through a body whose Content-Length promised more), "malformed" (valid JSON, wrong types),
	// "garbage" (not JSON), "numbers" (int64 fields as JSON numbers instead of strings, as Home
	// Assistant's fixtures have them), "outside-range" (a roll-up point outside the requested range).
	Body             string
	AccountNotLinked bool          // 400 FAILED_PRECONDITION, reason ACCOUNT_NOT_LINKED
	MissingScope     bool          // 403 PERMISSION_DENIED, reason ACCESS_TOKEN_SCOPE_INSUFFICIENT
	Times            int           // how many requests it hits (0 = every one)
	Probability      float64       // 0 = always, else chance per request (seeded)
	Message          string        // overrides the error message (e.g. MessageUberMint with Status 403)
	Reason           string        // ErrorInfo reason for a Status fault ("" = none)
	RetryAfter       time.Duration // Retry-After header on a Status fault (0 = no header)
}

// MessageUberMint is the 403 message of a user who consented with a legacy Fitbit login (reference §8).
const MessageUberMint = "The caller does not have permission. Could not mint UberMint from GaiaMint"

type faultState struct {
	f    Fault
	left int // remaining hits when f.Times > 0
}

// SetFault installs f for the participant. It replaces an installed fault with the same Path;
// faults with different paths stack, the most recently set one winning when several match.
func (s *Server) SetFault(legacyID string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byLegacy[legacyID]
	if p == nil {
		return
	}
	p.faults = slices.DeleteFunc(p.faults, func(x *faultState) bool { return x.f.Path == f.Path })
	p.faults = append(p.faults, &faultState{f: f, left: f.Times})
}

// ClearFaults removes every fault of the participant.
func (s *Server) ClearFaults(legacyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.byLegacy[legacyID]; p != nil {
		p.faults = nil
	}
}

// pickFaultLocked returns the fault hitting this request, consuming one of its Times.
func (s *Server) pickFaultLocked(p *participant, path string, dataAPI bool) *Fault {
	if p == nil {
		return nil
	}
	for i := len(p.faults) - 1; i >= 0; i-- {
		fs := p.faults[i]
		if fs.f.Path == "" && !dataAPI || fs.f.Path != "" && !strings.Contains(path, fs.f.Path) {
			continue
		}
		if fs.f.Probability > 0 && fs.f.Probability < 1 && s.rng.Float64() >= fs.f.Probability {
			continue
		}
		if fs.f.Times > 0 {
			fs.left--
			if fs.left <= 0 {
				p.faults = append(p.faults[:i:i], p.faults[i+1:]...)
			}
		}
		s.stats.FaultsInjected++
		f := fs.f
		return &f
	}
	return nil
}

// applyFault answers the request from f if f decides the answer; it returns false when the normal
// handler should run (latency-only or body faults). A client that goes away during the latency
// gets nothing (handled=true).
func applyFault(ctx context.Context, w http.ResponseWriter, f *Fault) (handled bool) {
	if f == nil {
		return false
	}
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return true
		}
	}
	switch {
	case f.Status != 0:
		msg := f.Message
		if msg == "" {
			msg = defaultMessage(f.Status)
		}
		rp := rpcError(f.Status, statusName(f.Status), msg, f.Reason)
		if f.RetryAfter > 0 {
			rp.header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
		}
		writeReply(w, rp)
	case f.AccountNotLinked:
		writeReply(w, errAccountNotLinked())
	case f.MissingScope:
		writeReply(w, errScope())
	default:
		return false
	}
	return true
}
