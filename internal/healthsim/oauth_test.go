package healthsim_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/studylab/sync-all/internal/healthsim"
)

const redirectURI = "http://127.0.0.1:53682/callback"

func (f *fixture) oauthConfig() *oauth2.Config {
	return &oauth2.Config{
		ClientID: "sim-client", ClientSecret: "sim-secret", RedirectURL: redirectURI,
		Scopes: healthsim.RequiredScopes(),
		// In params, not auto-detect: auto-detect retries a failed call with the other style, which
		// would double the counts this file asserts.
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/o/oauth2/v2/auth", TokenURL: f.srv.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
}

// authorize runs the consent with x/oauth2's URL and returns the redirect's query.
func (f *fixture) authorize(t *testing.T, verifier, hint string, extra ...oauth2.AuthCodeOption) url.Values {
	t.Helper()
	opts := append([]oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier)}, extra...)
	if hint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", hint))
	}
	u := f.oauthConfig().AuthCodeURL("st-123", opts...)
	return f.follow(t, u)
}

func (f *fixture) follow(t *testing.T, authURL string) url.Values {
	t.Helper()
	r := f.do(t, http.MethodGet, strings.TrimPrefix(authURL, f.srv.URL), "", nil)
	if r.status != http.StatusFound {
		t.Fatalf("authorize: status %d, body %s", r.status, r.body)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURI {
		t.Fatalf("redirected to %s, want %s", got, redirectURI)
	}
	return loc.Query()
}

func TestConsentWithPKCE(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	cfg := f.oauthConfig()
	verifier := oauth2.GenerateVerifier()
	q := f.authorize(t, verifier, "CRBM3W")
	if q.Get("state") != "st-123" || q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("redirect query %v", q)
	}
	if got, want := q.Get("scope"), strings.Join(healthsim.RequiredScopes(), " "); got != want {
		t.Errorf("granted scope %q, want %q", got, want)
	}
	ctx := context.Background()

	_, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("wrong verifier: got %v, want invalid_grant", err)
	}
	if _, err := cfg.Exchange(ctx, q.Get("code")); !errors.As(err, &re) || re.ErrorDescription != "Missing code verifier." {
		t.Fatalf("no verifier: got %v", err)
	}

	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" || !strings.HasPrefix(tok.RefreshToken, "1//0") || tok.TokenType != "Bearer" {
		t.Errorf("token %+v", tok)
	}
	if n := len(tok.AccessToken); n < 150 || n > 2048 {
		t.Errorf("access token length %d, want a realistic ~160", n)
	}
	if got := tok.Extra("scope"); got != strings.Join(healthsim.RequiredScopes(), " ") {
		t.Errorf("token scope %v", got)
	}
	if ei, _ := tok.Extra("expires_in").(float64); ei != 3599 {
		t.Errorf("expires_in %v, want 3599", tok.Extra("expires_in"))
	}
	id, err := f.service(t, tok.AccessToken).Users.GetIdentity("users/me/identity").Do()
	if err != nil || id.LegacyUserId != "CRBM3W" {
		t.Fatalf("identity %+v, %v", id, err)
	}

	// A code is single-use.
	if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("reused code: got %v, want invalid_grant", err)
	}
	st := f.sim.Stats()
	if st.CodeExchanges != 1 || st.Authorizations != 1 || st.InvalidGrants != 3 {
		t.Errorf("stats %+v", st)
	}
	if f.sim.Requests("CRBM3W", "authorize") != 1 || f.sim.Requests("CRBM3W", "token") != 4 {
		t.Errorf("counters authorize=%d token=%d", f.sim.Requests("CRBM3W", "authorize"), f.sim.Requests("CRBM3W", "token"))
	}
	secrets := f.sim.Secrets()
	for _, s := range []string{"sim-secret", q.Get("code"), tok.AccessToken, tok.RefreshToken} {
		if !slices.Contains(secrets, s) {
			t.Errorf("Secrets() misses an issued secret of length %d", len(s))
		}
	}
}

func TestConsentBasicAuthAndOnline(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	cfg := f.oauthConfig()
	cfg.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	verifier := oauth2.GenerateVerifier()
	// Without access_type=offline Google issues no refresh token.
	u := cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "crbm3w@participants.study.example"))
	q := f.follow(t, u)
	tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Errorf("online consent issued a refresh token")
	}
	cfg.ClientSecret = "wrong"
	q = f.follow(t, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	_, err = cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized || re.ErrorCode != "invalid_client" {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestAuthorizeRejects(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	base := url.Values{
		"client_id": {"sim-client"}, "redirect_uri": {redirectURI}, "response_type": {"code"},
		"scope": {strings.Join(healthsim.RequiredScopes(), " ")}, "state": {"s1"}, "access_type": {"offline"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "login_hint": {"CRBM3W"},
	}
	with := func(k, v string) url.Values {
		q := url.Values{}
		for kk, vv := range base {
			q[kk] = vv
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return q
	}
	pages := []struct {
		name   string
		q      url.Values
		status int
	}{
		{"unknown client", with("client_id", "other"), http.StatusUnauthorized},
		{"no redirect", with("redirect_uri", ""), http.StatusBadRequest},
		{"non-loopback http redirect", with("redirect_uri", "http://example.com/cb"), http.StatusBadRequest},
	}
	for _, tc := range pages {
		if r := f.do(t, http.MethodGet, "/o/oauth2/v2/auth?"+tc.q.Encode(), "", nil); r.status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, r.status, tc.status)
		}
	}
	redirects := []struct {
		name, err string
		q         url.Values
	}{
		{"no PKCE", "invalid_request", with("code_challenge", "")},
		{"plain PKCE", "invalid_request", with("code_challenge_method", "plain")},
		{"implicit flow", "unsupported_response_type", with("response_type", "token")},
		{"no scope", "invalid_request", with("scope", "")},
		{"bad scope", "invalid_scope", with("scope", "fitbit.activity")},
		{"unknown participant", "access_denied", with("login_hint", "NOPE99")},
	}
	for _, tc := range redirects {
		r := f.do(t, http.MethodGet, "/o/oauth2/v2/auth?"+tc.q.Encode(), "", nil)
		loc, _ := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || loc.Query().Get("error") != tc.err || loc.Query().Get("state") != "s1" || loc.Query().Get("code") != "" {
			t.Errorf("%s: status %d location %s, want error=%s", tc.name, r.status, r.header.Get("Location"), tc.err)
		}
	}
	// localhost and https redirects are fine.
	for _, ru := range []string{"http://localhost:8080", "http://[::1]:9/cb", "https://www.google.com"} {
		r := f.do(t, http.MethodGet, "/o/oauth2/v2/auth?"+with("redirect_uri", ru).Encode(), "", nil)
		if loc, _ := url.Parse(r.header.Get("Location")); r.status != http.StatusFound || loc.Query().Get("code") == "" {
			t.Errorf("redirect %s refused: %d %s", ru, r.status, r.body)
		}
	}
}

func TestExchangeChecks(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	cfg := f.oauthConfig()
	verifier := oauth2.GenerateVerifier()
	ctx := context.Background()
	var re *oauth2.RetrieveError

	q := f.authorize(t, verifier, "CRBM3W")
	other := *cfg
	other.RedirectURL = "http://127.0.0.1:1/other"
	if _, err := other.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !errors.As(err, &re) || re.ErrorCode != "redirect_uri_mismatch" {
		t.Errorf("redirect mismatch: %v", err)
	}
	f.clock.Advance(10*time.Minute + time.Second)
	if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("expired code: %v", err)
	}
}

func TestAuthorizeWithoutHintPicksParticipantWithoutGrant(t *testing.T) {
	f := newFixture(t, healthsim.Options{Participants: 3})
	ps := f.sim.Participants()
	f.sim.Grant(ps[0].LegacyUserID, nil)
	verifier := oauth2.GenerateVerifier()
	q := f.authorize(t, verifier, "")
	tok, err := f.oauthConfig().Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.service(t, tok.AccessToken).Users.GetIdentity("users/me/identity").Do()
	if err != nil || id.LegacyUserId != ps[1].LegacyUserID {
		t.Fatalf("consented as %+v (%v), want %s", id, err, ps[1].LegacyUserID)
	}
	f.sim.Grant(ps[2].LegacyUserID, nil)
	r := f.do(t, http.MethodGet, strings.TrimPrefix(f.oauthConfig().AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), f.srv.URL), "", nil)
	if loc, _ := url.Parse(r.header.Get("Location")); loc.Query().Get("error") != "access_denied" {
		t.Errorf("everyone granted: %s", r.header.Get("Location"))
	}
}

func TestGrantedScopesNarrowAccess(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	f.sim.SetGrantedScopes("CRBM3W", []string{healthsim.ScopeActivity, healthsim.ScopeHealthMetrics})
	verifier := oauth2.GenerateVerifier()
	q := f.authorize(t, verifier, "CRBM3W")
	if got := q.Get("scope"); got != healthsim.ScopeActivity+" "+healthsim.ScopeHealthMetrics {
		t.Fatalf("granted %q", got)
	}
	tok, err := f.oauthConfig().Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	svc := f.service(t, tok.AccessToken)
	if _, err := svc.Users.GetIdentity("users/me/identity").Do(); err != nil {
		t.Errorf("identity needs any scope: %v", err)
	}
	_, err = svc.Users.GetSettings("users/me/settings").Do()
	if ae := apiError(t, err); ae.HTTPCode() != 403 || ae.Reason() != "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
		t.Errorf("settings without scope: %v", err)
	}
	// A token with only the settings scope cannot read heart rate.
	access, _, _ := f.sim.Grant("CRBM3W", []string{healthsim.ScopeSettings})
	r := f.do(t, http.MethodPost, dataPath("heart-rate", ":rollUp"), access, rollUpBody(defaultNow.Add(-time.Hour), defaultNow, "60s"))
	if st, reason := r.rpc(t); r.status != 403 || st != "PERMISSION_DENIED" || reason != "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
		t.Errorf("heart rate with settings scope: %d %s %s", r.status, st, reason)
	}
	f.sim.SetGrantedScopes("CRBM3W", []string{})
	r = f.do(t, http.MethodGet, strings.TrimPrefix(f.oauthConfig().AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "CRBM3W")), f.srv.URL), "", nil)
	if loc, _ := url.Parse(r.header.Get("Location")); loc.Query().Get("error") != "access_denied" {
		t.Errorf("user denying everything: %s", r.header.Get("Location"))
	}
}

type tokenReply struct {
	status int
	m      map[string]any
}

func (f *fixture) refresh(t *testing.T, rt string) tokenReply {
	t.Helper()
	r := f.do(t, http.MethodPost, "/token", "", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"sim-client"}, "client_secret": {"sim-secret"},
	})
	return tokenReply{r.status, r.json(t)}
}

func (tr tokenReply) str(k string) string { s, _ := tr.m[k].(string); return s }

func TestRefreshWithoutRotation(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	access, refresh, expiry := f.sim.Grant("CRBM3W", nil)
	if !expiry.Equal(defaultNow.Add(time.Hour)) {
		t.Errorf("expiry %v", expiry)
	}
	tr := f.refresh(t, refresh)
	if tr.status != 200 || tr.str("access_token") == "" || tr.str("access_token") == access || tr.m["expires_in"] != 3599.0 ||
		tr.str("token_type") != "Bearer" || tr.str("scope") != strings.Join(healthsim.RequiredScopes(), " ") {
		t.Fatalf("refresh: %d %v", tr.status, tr.m)
	}
	if _, ok := tr.m["refresh_token"]; ok {
		t.Errorf("non-rotating refresh returned a refresh_token")
	}
	if again := f.refresh(t, refresh); again.status != 200 {
		t.Errorf("refresh token should stay valid: %v", again.m)
	}
	// Basic client authentication works too.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("sim-client", "sim-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("basic auth refresh: %v %v", resp, err)
	}
	resp.Body.Close()

	// The old access token expires after an hour; the refreshed one too.
	f.clock.Advance(time.Hour)
	r := f.do(t, http.MethodGet, "/v4/users/me/identity", access, nil)
	if st, reason := r.rpc(t); r.status != 401 || st != "UNAUTHENTICATED" || reason != "ACCESS_TOKEN_EXPIRED" {
		t.Errorf("expired token: %d %s %s", r.status, st, reason)
	}
	if f.sim.Stats().Refreshes != 3 {
		t.Errorf("stats %+v", f.sim.Stats())
	}
	bad := f.refresh(t, "1//0nonsense")
	if bad.status != 400 || bad.str("error") != "invalid_grant" || bad.str("error_description") != "Token has been expired or revoked." {
		t.Errorf("unknown refresh token: %v", bad.m)
	}
}

func TestRotationGraceAndReuse(t *testing.T) {
	f := newFixture(t, healthsim.Options{RotateRefreshTokens: true})
	_, r1, _ := f.sim.Grant("CRBM3W", nil)
	first := f.refresh(t, r1)
	a2, r2 := first.str("access_token"), first.str("refresh_token")
	if first.status != 200 || r2 == "" || r2 == r1 {
		t.Fatalf("rotation: %v", first.m)
	}
	// Crash recovery: the answer was lost, the old token is presented again and yields the same pair.
	replay := f.refresh(t, r1)
	if replay.str("access_token") != a2 || replay.str("refresh_token") != r2 {
		t.Fatalf("grace replay returned a different pair")
	}
	if st := f.sim.Stats(); st.GraceReplays != 1 || st.RefreshTokenReuse != 0 {
		t.Errorf("stats %+v", st)
	}
	// Using the new access token ends the grace: the old refresh token is now dead.
	if r := f.do(t, http.MethodGet, "/v4/users/me/identity", a2, nil); r.status != 200 {
		t.Fatalf("new access token: %d", r.status)
	}
	if dead := f.refresh(t, r1); dead.status != 400 || dead.str("error") != "invalid_grant" {
		t.Fatalf("old token after replacement was used: %v", dead.m)
	}
	if st := f.sim.Stats(); st.RefreshTokenReuse != 1 {
		t.Errorf("reuse not counted: %+v", st)
	}
	// The replacement works and rotates again; using r3 for a refresh kills r2 likewise.
	second := f.refresh(t, r2)
	r3 := second.str("refresh_token")
	if second.status != 200 || r3 == "" || r3 == r2 {
		t.Fatalf("second rotation %v", second.m)
	}
	if third := f.refresh(t, r3); third.status != 200 {
		t.Fatalf("third rotation %v", third.m)
	}
	if dead := f.refresh(t, r2); dead.status != 400 {
		t.Fatalf("r2 after r3 was used: %v", dead.m)
	}
	if st := f.sim.Stats(); st.RefreshTokenReuse != 2 || st.InvalidGrants != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestGrantExpiresInTestingMode(t *testing.T) {
	f := newFixture(t, healthsim.Options{GrantLifetime: 7 * 24 * time.Hour})
	_, rt, _ := f.sim.Grant("CRBM3W", nil)
	f.clock.Advance(6 * 24 * time.Hour)
	ok := f.refresh(t, rt)
	if ok.status != 200 || ok.m["refresh_token_expires_in"] != float64(24*3600) {
		t.Fatalf("day 6: %v", ok.m)
	}
	f.clock.Advance(24*time.Hour + time.Second)
	gone := f.refresh(t, rt)
	if gone.status != 400 || gone.str("error") != "invalid_grant" || gone.str("error_description") != "Token has been expired or revoked." {
		t.Fatalf("day 7+: %d %v", gone.status, gone.m)
	}
	if f.sim.Stats().InvalidGrants != 1 {
		t.Errorf("stats %+v", f.sim.Stats())
	}
}

func TestRevocation(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	access, rt, _ := f.sim.Grant("CRBM3W", nil)
	if r := f.do(t, http.MethodPost, "/revoke", "", url.Values{"token": {rt}}); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := f.refresh(t, rt); r.status != 400 || r.str("error") != "invalid_grant" {
		t.Errorf("refresh after revoke: %v", r.m)
	}
	if r := f.do(t, http.MethodGet, "/v4/users/me/identity", access, nil); r.status != 401 {
		t.Errorf("access after revoke: %d", r.status)
	}
	if r := f.do(t, http.MethodPost, "/revoke", "", url.Values{"token": {rt}}); r.status != 400 {
		t.Errorf("second revoke: %d", r.status)
	}

	a2, r2, _ := f.sim.Grant("CRBM3W", nil)
	f.sim.RevokeGrants("CRBM3W")
	if r := f.do(t, http.MethodGet, "/v4/users/me/identity", a2, nil); r.status != 401 {
		t.Errorf("data after RevokeGrants: %d", r.status)
	}
	if r := f.refresh(t, r2); r.status != 400 {
		t.Errorf("refresh after RevokeGrants: %v", r.m)
	}
	if st := f.sim.Stats(); st.Revocations != 2 {
		t.Errorf("stats %+v", st)
	}
	if f.sim.Requests("CRBM3W", "revoke") != 2 {
		t.Errorf("revoke counter %d", f.sim.Requests("CRBM3W", "revoke"))
	}
}
