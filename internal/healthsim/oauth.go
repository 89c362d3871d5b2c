package healthsim

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// codeLifetime is how long an authorization code can be exchanged (Google: 10 minutes).
const codeLifetime = 10 * time.Minute

type authCode struct {
	p           *participant
	clientID    string
	redirectURI string
	challenge   string
	scopes      []string
	offline     bool
	issued      time.Time
	used        bool
}

// grant is one consent: what the participant allowed, for which client, since when.
type grant struct {
	p        *participant
	clientID string
	scopes   []string
	created  time.Time
	revoked  bool
}

type refreshToken struct {
	value      string
	g          *grant
	prev       *refreshToken // the token this one replaced (rotation mode)
	next       *refreshToken // its issued replacement, until that is used
	nextAccess *accessToken  // the access token issued with next (returned again on a grace replay)
	dead       bool          // replaced, and the replacement has been used
}

type accessToken struct {
	value  string
	g      *grant
	expiry time.Time
	pair   *refreshToken // the refresh token issued together with it, if any
}

// used marks rt (or its paired access token) as used: from now on the token it replaced is dead.
func (rt *refreshToken) used() {
	if rt != nil && rt.prev != nil {
		rt.prev.dead = true
	}
}

// randToken is an opaque secret of realistic length; crypto/rand because tokens need not be
// deterministic and tests must not be able to guess them.
func randToken(prefix string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("healthsim: crypto/rand: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)[:n]
}

func (s *Server) grantExpired(g *grant, now time.Time) bool {
	return s.opts.GrantLifetime > 0 && now.Sub(g.created) > s.opts.GrantLifetime
}

func (s *Server) liveGrantLocked(p *participant, now time.Time) bool {
	for _, g := range s.grants {
		if g.p == p && !g.revoked && !s.grantExpired(g, now) {
			return true
		}
	}
	return false
}

func (s *Server) newGrantLocked(p *participant, clientID string, scopes []string, now time.Time) *grant {
	g := &grant{p: p, clientID: clientID, scopes: slices.Clone(scopes), created: now}
	s.grants = append(s.grants, g)
	return g
}

func (s *Server) issueAccessLocked(g *grant, pair *refreshToken, now time.Time) *accessToken {
	// ~160 chars like Google's ya29 tokens, well inside the documented 2048-byte limit.
	at := &accessToken{value: randToken("ya29.", 158), g: g, expiry: now.Add(s.opts.AccessTokenLifetime), pair: pair}
	s.access[at.value] = at
	s.secrets = append(s.secrets, at.value)
	return at
}

func (s *Server) issueRefreshLocked(g *grant, prev *refreshToken) *refreshToken {
	rt := &refreshToken{value: randToken("1//0", 99), g: g, prev: prev}
	s.refresh[rt.value] = rt
	s.secrets = append(s.secrets, rt.value)
	return rt
}

// Grant creates a consent directly (as if the participant had approved it) and returns its tokens:
// test setup without the browser round trip. nil scopes = the three required scopes.
func (s *Server) Grant(legacyID string, scopes []string) (access, refresh string, expiry time.Time) {
	if scopes == nil {
		scopes = RequiredScopes()
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byLegacy[legacyID]
	if p == nil {
		return "", "", time.Time{}
	}
	g := s.newGrantLocked(p, s.opts.ClientID, scopes, now)
	rt := s.issueRefreshLocked(g, nil)
	at := s.issueAccessLocked(g, rt, now)
	return at.value, rt.value, at.expiry
}

// SetGrantedScopes sets what the consent screen will grant the participant: the granted scopes are
// the requested ones intersected with scopes (nil = all requested, empty = the user denies access).
func (s *Server) SetGrantedScopes(legacyID string, scopes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.byLegacy[legacyID]; p != nil {
		if scopes == nil {
			p.grantable = nil
		} else {
			p.grantable = append([]string{}, scopes...)
		}
	}
}

// RevokeGrants revokes every grant of the participant, as when they remove the app in their Google
// account: refresh answers invalid_grant and data calls with its access tokens answer 401.
func (s *Server) RevokeGrants(legacyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		if g.p.data.LegacyUserID == legacyID && !g.revoked {
			g.revoked = true
			s.stats.Revocations++
		}
	}
}

// validRedirect accepts loopback http redirects (installed apps, any port and path) and any https
// redirect (web clients such as the setup guide's https://www.google.com).
func validRedirect(s string) bool {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		if h == "localhost" {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	return false
}

func knownScope(sc string) bool {
	switch sc {
	case "openid", "email", "profile":
		return true
	}
	return strings.HasPrefix(sc, "https://www.googleapis.com/auth/")
}

// errorPage is what Google shows instead of redirecting when the client or redirect is wrong.
func errorPage(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!DOCTYPE html><html><body><h1>Access blocked: authorization error</h1><p>Error %d: %s</p><p>%s</p></body></html>\n",
		status, html.EscapeString(code), html.EscapeString(desc))
}

func redirectWith(w http.ResponseWriter, r *http.Request, redirect string, params url.Values) {
	u, _ := url.Parse(redirect) // validated by validRedirect
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// serveAuthorize auto-approves a consent. Problems with the client or redirect get an error page
// (a redirect could leak to an attacker); every other problem is reported to the redirect URI.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := s.now()
	redirect, state := q.Get("redirect_uri"), q.Get("state")
	fail := func(code, desc string) {
		v := url.Values{"error": {code}, "error_description": {desc}}
		if state != "" {
			v.Set("state", state)
		}
		redirectWith(w, r, redirect, v)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if q.Get("client_id") != s.opts.ClientID {
		s.countLocked(nil, "authorize")
		errorPage(w, http.StatusUnauthorized, "invalid_client", "The OAuth client was not found.")
		return
	}
	if redirect == "" {
		s.countLocked(nil, "authorize")
		errorPage(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: redirect_uri")
		return
	}
	if !validRedirect(redirect) {
		s.countLocked(nil, "authorize")
		errorPage(w, http.StatusBadRequest, "redirect_uri_mismatch", "The redirect URI in the request does not match the ones authorized for the OAuth client.")
		return
	}

	p := s.loginHintLocked(q.Get("login_hint"), now)
	s.countLocked(p, "authorize")
	if f := s.pickFaultLocked(p, r.URL.Path, false); f != nil && f.Status != 0 {
		errorPage(w, f.Status, statusName(f.Status), defaultMessage(f.Status))
		return
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "Invalid response_type: only code is supported")
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) < 43:
		fail("invalid_request", "PKCE is required: code_challenge and code_challenge_method=S256")
		return
	case q.Get("scope") == "":
		fail("invalid_request", "Missing required parameter: scope")
		return
	case p == nil && q.Get("login_hint") != "":
		fail("access_denied", "The simulator has no participant matching login_hint")
		return
	case p == nil:
		fail("access_denied", "Every simulated participant already has a live grant; pass login_hint")
		return
	}
	requested := strings.Fields(q.Get("scope"))
	for _, sc := range requested {
		if !knownScope(sc) {
			fail("invalid_scope", "Some requested scopes were invalid.")
			return
		}
	}
	var granted []string
	for _, sc := range requested {
		if (p.grantable == nil || slices.Contains(p.grantable, sc)) && !slices.Contains(granted, sc) {
			granted = append(granted, sc)
		}
	}
	if q.Get("include_granted_scopes") == "true" {
		for _, g := range s.grants {
			if g.p == p && !g.revoked && !s.grantExpired(g, now) {
				for _, sc := range g.scopes {
					if !slices.Contains(granted, sc) {
						granted = append(granted, sc)
					}
				}
			}
		}
	}
	if len(granted) == 0 {
		fail("access_denied", "The user denied access")
		return
	}
	ac := &authCode{
		p: p, clientID: s.opts.ClientID, redirectURI: redirect, challenge: q.Get("code_challenge"),
		scopes: granted, offline: q.Get("access_type") == "offline", issued: now,
	}
	code := randToken("4/0", 70)
	s.codes[code] = ac
	s.secrets = append(s.secrets, code)
	s.stats.Authorizations++
	v := url.Values{"code": {code}, "scope": {strings.Join(granted, " ")}}
	if state != "" {
		v.Set("state", state)
	}
	redirectWith(w, r, redirect, v)
}

// loginHintLocked picks the consenting participant: by legacy id, email or health user id, or the
// first one without a live grant.
func (s *Server) loginHintLocked(hint string, now time.Time) *participant {
	if hint != "" {
		for _, p := range s.parts {
			d := p.data
			if strings.EqualFold(hint, d.LegacyUserID) || strings.EqualFold(hint, d.Email) || hint == d.HealthUserID {
				return p
			}
		}
		return nil
	}
	for _, p := range s.parts {
		if !s.liveGrantLocked(p, now) {
			return p
		}
	}
	return nil
}

// tokenResponse is Google's token endpoint JSON.
type tokenResponse struct {
	AccessToken           string `json:"access_token"`
	ExpiresIn             int    `json:"expires_in"`
	RefreshToken          string `json:"refresh_token,omitempty"`
	RefreshTokenExpiresIn int    `json:"refresh_token_expires_in,omitempty"`
	Scope                 string `json:"scope"`
	TokenType             string `json:"token_type"`
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func oauthErr(status int, code, desc string) reply {
	return jsonReply(status, oauthError{Error: code, Description: desc})
}

func (s *Server) invalidGrantLocked(desc string) reply {
	s.stats.InvalidGrants++
	return oauthErr(http.StatusBadRequest, "invalid_grant", desc)
}

const expiredOrRevoked = "Token has been expired or revoked."

// clientCredentials reads client authentication from HTTP Basic (form-encoded, RFC 6749 §2.3.1,
// which is what x/oauth2 sends) or from the body.
func clientCredentials(r *http.Request) (id, secret string) {
	if u, p, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
		return id, secret
	}
	return r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.mu.Lock()
		s.countLocked(nil, "token")
		s.mu.Unlock()
		writeReply(w, oauthErr(http.StatusMethodNotAllowed, "invalid_request", "Invalid request method: use POST"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeReply(w, oauthErr(http.StatusBadRequest, "invalid_request", "Could not parse the request body"))
		return
	}
	id, secret := clientCredentials(r)
	form := r.PostForm

	// Phase 1: attribute the request and pick a fault; the fault's latency is served unlocked.
	s.mu.Lock()
	var p *participant
	switch form.Get("grant_type") {
	case "authorization_code":
		if ac := s.codes[form.Get("code")]; ac != nil {
			p = ac.p
		}
	case "refresh_token":
		if rt := s.refresh[form.Get("refresh_token")]; rt != nil {
			p = rt.g.p
		}
	}
	s.countLocked(p, "token")
	fault := s.pickFaultLocked(p, r.URL.Path, false)
	s.mu.Unlock()
	if applyFault(r.Context(), w, fault) {
		return
	}

	now := s.now()
	s.mu.Lock()
	rp := s.tokenLocked(id, secret, form, now)
	s.mu.Unlock()
	rp.header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	rp.header().Set("Pragma", "no-cache")
	sendWithFault(w, rp, fault)
}

func (s *Server) tokenLocked(id, secret string, form url.Values, now time.Time) reply {
	if id != s.opts.ClientID {
		return oauthErr(http.StatusUnauthorized, "invalid_client", "The OAuth client was not found.")
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) != 1 {
		return oauthErr(http.StatusUnauthorized, "invalid_client", "Unauthorized")
	}
	switch form.Get("grant_type") {
	case "authorization_code":
		return s.exchangeLocked(form, now)
	case "refresh_token":
		return s.refreshLocked(form.Get("refresh_token"), now)
	case "":
		return oauthErr(http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type")
	}
	return oauthErr(http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+form.Get("grant_type"))
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~", c)) {
			return false
		}
	}
	return true
}

func (s *Server) exchangeLocked(form url.Values, now time.Time) reply {
	ac := s.codes[form.Get("code")]
	switch {
	case form.Get("code") == "":
		return oauthErr(http.StatusBadRequest, "invalid_request", "Missing required parameter: code")
	case ac == nil:
		return s.invalidGrantLocked("Malformed auth code.")
	case ac.used || now.Sub(ac.issued) > codeLifetime:
		return s.invalidGrantLocked("Bad Request")
	case form.Get("redirect_uri") != ac.redirectURI:
		return oauthErr(http.StatusBadRequest, "redirect_uri_mismatch", "Bad Request")
	case form.Get("code_verifier") == "":
		return s.invalidGrantLocked("Missing code verifier.")
	case !validVerifier(form.Get("code_verifier")) || subtle.ConstantTimeCompare([]byte(s256(form.Get("code_verifier"))), []byte(ac.challenge)) != 1:
		// The code stays usable: the legitimate client may still present the right verifier.
		return s.invalidGrantLocked("Invalid code verifier.")
	}
	ac.used = true
	g := s.newGrantLocked(ac.p, ac.clientID, ac.scopes, now)
	var rt *refreshToken
	if ac.offline {
		rt = s.issueRefreshLocked(g, nil)
	}
	at := s.issueAccessLocked(g, rt, now)
	s.stats.CodeExchanges++
	return s.tokenReplyLocked(g, at, rt, now)
}

func (s *Server) tokenReplyLocked(g *grant, at *accessToken, rt *refreshToken, now time.Time) reply {
	tr := tokenResponse{
		AccessToken: at.value,
		ExpiresIn:   max(0, int(at.expiry.Sub(now)/time.Second)-1), // Google says 3599 for an hour
		Scope:       strings.Join(g.scopes, " "),
		TokenType:   "Bearer",
	}
	if rt != nil {
		tr.RefreshToken = rt.value
	}
	if s.opts.GrantLifetime > 0 {
		// Google adds this for time-based grants (reference §13 item 2: unverified for Health).
		tr.RefreshTokenExpiresIn = max(0, int((g.created.Add(s.opts.GrantLifetime).Sub(now))/time.Second))
	}
	return jsonReply(http.StatusOK, tr)
}

func (s *Server) refreshLocked(value string, now time.Time) reply {
	rt := s.refresh[value]
	switch {
	case value == "":
		return oauthErr(http.StatusBadRequest, "invalid_request", "Missing required parameter: refresh_token")
	case rt == nil, rt.g.revoked, s.grantExpired(rt.g, now):
		return s.invalidGrantLocked(expiredOrRevoked)
	case rt.dead:
		s.stats.RefreshTokenReuse++
		return s.invalidGrantLocked(expiredOrRevoked)
	}
	rt.used()
	s.stats.Refreshes++
	g := rt.g
	if !s.opts.RotateRefreshTokens {
		at := s.issueAccessLocked(g, rt, now)
		return s.tokenReplyLocked(g, at, nil, now)
	}
	if rt.next != nil {
		// Grace: the client probably lost our previous answer; give it the same pair again.
		s.stats.GraceReplays++
		if !now.Before(rt.nextAccess.expiry) {
			rt.nextAccess = s.issueAccessLocked(g, rt.next, now)
		}
		return s.tokenReplyLocked(g, rt.nextAccess, rt.next, now)
	}
	next := s.issueRefreshLocked(g, rt)
	at := s.issueAccessLocked(g, next, now)
	rt.next, rt.nextAccess = next, at
	return s.tokenReplyLocked(g, at, next, now)
}

// serveRevoke revokes the grant behind an access or refresh token (form or query "token").
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	_ = r.ParseForm()
	tok := r.Form.Get("token")
	s.mu.Lock()
	var g *grant
	if at := s.access[tok]; at != nil {
		g = at.g
	} else if rt := s.refresh[tok]; rt != nil {
		g = rt.g
	}
	var p *participant
	if g != nil {
		p = g.p
	}
	s.countLocked(p, "revoke")
	fault := s.pickFaultLocked(p, r.URL.Path, false)
	known := g != nil && !g.revoked
	if known && (fault == nil || fault.Status == 0) {
		g.revoked = true
		s.stats.Revocations++
	}
	s.mu.Unlock()
	if applyFault(r.Context(), w, fault) {
		return
	}
	if !known {
		writeReply(w, oauthErr(http.StatusBadRequest, "invalid_token", "Token expired or revoked"))
		return
	}
	writeReply(w, reply{status: http.StatusOK, body: []byte("{}\n")})
}
