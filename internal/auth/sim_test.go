package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/studylab/sync-all/internal/healthsim"
)

// clock is an injectable clock shared by the simulator and the Manager; skew
// lets the Manager's host clock run ahead of or behind the simulator's.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// memSaver is a real in-memory TokenSaver with the store's compare-and-swap
// semantics. It is the test's collaborator (the Postgres-backed saver is
// tested in internal/store); fail makes every save fail.
type memSaver struct {
	mu       sync.Mutex
	tokens   map[int64]Token
	attempts []Token // every token SaveToken was asked to store
	fail     error
}

var errStale = errors.New("stale token (compare-and-swap lost)")

func newMemSaver(userID int64, tok Token) *memSaver {
	return &memSaver{tokens: map[int64]Token{userID: tok}}
}

func (s *memSaver) SaveToken(ctx context.Context, userID int64, prev string, tok Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts = append(s.attempts, tok)
	if s.fail != nil {
		return fmt.Errorf("save token: %w", s.fail)
	}
	if s.tokens[userID].RefreshToken != prev {
		return errStale
	}
	s.tokens[userID] = tok
	return nil
}

func (s *memSaver) get(userID int64) Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[userID]
}

func (s *memSaver) lastAttempt(t *testing.T) Token {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.attempts) == 0 {
		t.Fatal("SaveToken was never called")
	}
	return s.attempts[len(s.attempts)-1]
}

const uid = 7 // the participant's fitbit_users.id in these tests

type env struct {
	sim   *healthsim.Server
	srv   *httptest.Server
	clock *clock
	m     *Manager
	logs  *bytes.Buffer // every log line auth wrote (debug and up)
	pid   string        // the participant's legacy id
}

// setup starts the simulator over real HTTP and a Manager pointed at it. The
// Manager's clock is the simulator's plus skew.
func setup(t *testing.T, o healthsim.Options, skew time.Duration) *env {
	t.Helper()
	c := &clock{now: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)}
	o.Now = c.Now
	sim := healthsim.New(o)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	e := &env{sim: sim, srv: srv, clock: c, logs: &bytes.Buffer{}, pid: sim.Participants()[0].LegacyUserID}
	e.m = e.manager(t, func(cfg *Config) { cfg.Now = func() time.Time { return c.Now().Add(skew) } })
	return e
}

func (e *env) manager(t *testing.T, edit func(*Config)) *Manager {
	t.Helper()
	cfg := Config{
		ClientID: "sim-client", ClientSecret: "sim-secret",
		AuthURL:    e.srv.URL + "/o/oauth2/v2/auth",
		TokenURL:   e.srv.URL + "/token",
		RevokeURL:  e.srv.URL + "/revoke",
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
		Now:        e.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(lockedWriter{w: e.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lockedWriter serialises writes to a test's log buffer (the loopback handler
// logs from its own goroutine).
type lockedWriter struct{ w io.Writer }

var logMu sync.Mutex

func (l lockedWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return l.w.Write(p)
}

func (e *env) logText() string { logMu.Lock(); defer logMu.Unlock(); return e.logs.String() }

// grant gives the participant a token as if they had consented at the
// simulator's current time.
func (e *env) grant(t *testing.T) Token {
	t.Helper()
	access, refresh, expiry := e.sim.Grant(e.pid, nil)
	return Token{AccessToken: access, RefreshToken: refresh, Expiry: expiry, Scopes: RequiredScopes}
}

func (e *env) tokenCalls() int { return e.sim.Requests("", "token") }

// identity makes a real data API call with the access token, as the health
// package would, and returns the HTTP status.
func (e *env) identity(t *testing.T, access string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v4/users/me/identity", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestFreshMargin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		left        time.Duration // token lifetime left when Fresh is called
		force       bool
		wantRefresh bool
	}{
		{"an hour left", time.Hour, false, false},
		{"just over the margin", DefaultMargin + time.Second, false, false},
		{"just under the margin", DefaultMargin - time.Second, false, true},
		{"expired", -time.Minute, false, true},
		{"forced with an hour left", time.Hour, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, healthsim.Options{}, 0)
			cur := e.grant(t)
			e.clock.Set(cur.Expiry.Add(-tc.left))
			saver := newMemSaver(uid, cur)
			before := e.tokenCalls()

			got, refreshed, err := e.m.Fresh(context.Background(), uid, cur, tc.force, saver)
			if err != nil {
				t.Fatalf("Fresh: %v", err)
			}
			if refreshed != tc.wantRefresh {
				t.Fatalf("refreshed = %v, want %v", refreshed, tc.wantRefresh)
			}
			calls := e.tokenCalls() - before
			if !tc.wantRefresh {
				if calls != 0 || got.AccessToken != cur.AccessToken || len(saver.attempts) != 0 {
					t.Errorf("not refreshed, yet %d token calls, %d saves, same access token %v", calls, len(saver.attempts), got.AccessToken == cur.AccessToken)
				}
				return
			}
			if calls != 1 {
				t.Errorf("%d token calls, want 1", calls)
			}
			if got.AccessToken == cur.AccessToken || got.AccessToken == "" {
				t.Error("refresh returned the old (or no) access token")
			}
			if got.RefreshToken != cur.RefreshToken {
				t.Error("non-rotating endpoint: refresh token changed")
			}
			if want := e.clock.Now().Add(time.Hour); got.Expiry.Before(want.Add(-2*time.Second)) || got.Expiry.After(want) {
				t.Errorf("expiry %s, want about now+1h = %s", got.Expiry, want)
			}
			if MissingScopes(got.Scopes) != nil {
				t.Errorf("scopes %v lack required ones", got.Scopes)
			}
			if saved := saver.get(uid); saved.AccessToken != got.AccessToken || saved.RefreshToken != got.RefreshToken || !saved.Expiry.Equal(got.Expiry) {
				t.Error("returned token is not the saved one")
			}
			if st := e.identity(t, got.AccessToken); st != http.StatusOK {
				t.Errorf("data call with the refreshed token: HTTP %d", st)
			}
		})
	}
}

func TestRotatedRefreshTokenSavedBeforeUse(t *testing.T) {
	t.Parallel()
	e := setup(t, healthsim.Options{RotateRefreshTokens: true}, 0)
	cur := e.grant(t)
	saver := newMemSaver(uid, cur)
	ctx := context.Background()

	got, refreshed, err := e.m.Fresh(ctx, uid, cur, true, saver)
	if err != nil || !refreshed {
		t.Fatalf("Fresh = %v, %v", refreshed, err)
	}
	if got.RefreshToken == cur.RefreshToken {
		t.Fatal("rotating simulator returned the same refresh token")
	}
	if saved := saver.get(uid); saved.RefreshToken != got.RefreshToken || saved.AccessToken != got.AccessToken {
		t.Error("the rotated refresh token was returned without being saved")
	}
	// The next refresh starts from the saved token and rotates again.
	got2, _, err := e.m.Fresh(ctx, uid, saver.get(uid), true, saver)
	if err != nil || got2.RefreshToken == got.RefreshToken {
		t.Fatalf("second rotation: %v (same refresh token: %v)", err, got2.RefreshToken == got.RefreshToken)
	}
	if st := e.sim.Stats(); st.RefreshTokenReuse != 0 || st.InvalidGrants != 0 {
		t.Errorf("simulator saw refresh token reuse %d, invalid grants %d", st.RefreshTokenReuse, st.InvalidGrants)
	}
}

func TestFailedSaveNeverReturnsTheNewToken(t *testing.T) {
	t.Parallel()
	e := setup(t, healthsim.Options{RotateRefreshTokens: true}, 0)
	cur := e.grant(t)
	saveErr := errors.New("database is down")
	saver := newMemSaver(uid, cur)
	saver.fail = saveErr
	ctx := context.Background()
	dataBefore := e.sim.Requests(e.pid, "identity")

	got, refreshed, err := e.m.Fresh(ctx, uid, cur, true, saver)
	if !errors.Is(err, saveErr) {
		t.Fatalf("Fresh error = %v, want it to wrap the save error", err)
	}
	if refreshed || got.AccessToken != "" || got.RefreshToken != "" {
		t.Fatalf("a failed save returned a token (refreshed=%v)", refreshed)
	}
	// The endpoint did issue a new pair (the saver was asked to store it) ...
	issued := saver.lastAttempt(t)
	if issued.RefreshToken == cur.RefreshToken || !contains(e.sim.Secrets(), issued.AccessToken) {
		t.Fatal("the simulator did not issue a rotated pair")
	}
	if saver.get(uid).RefreshToken != cur.RefreshToken {
		t.Fatal("the failing saver stored something")
	}
	if e.sim.Requests(e.pid, "identity") != dataBefore {
		t.Error("a data call happened")
	}
	// ... which was never used: the simulator replays the SAME pair for the old
	// refresh token only while neither new token has been presented to it.
	saver.fail = nil
	again, refreshed, err := e.m.Fresh(ctx, uid, cur, true, saver)
	if err != nil || !refreshed {
		t.Fatalf("retry after the failed save: %v", err)
	}
	if again.AccessToken != issued.AccessToken || again.RefreshToken != issued.RefreshToken {
		t.Error("the simulator did not replay the pair: the new token had been used")
	}
	if st := e.sim.Stats(); st.RefreshTokenReuse != 0 || st.InvalidGrants != 0 {
		t.Errorf("simulator stats %+v: the old refresh token was treated as reused", st)
	}
	if st := e.identity(t, again.AccessToken); st != http.StatusOK {
		t.Errorf("data call with the saved token: HTTP %d", st)
	}
}

func TestFreshCompareAndSwapLost(t *testing.T) {
	t.Parallel()
	e := setup(t, healthsim.Options{}, 0)
	cur := e.grant(t)
	// Another worker already stored a newer token for this participant.
	saver := newMemSaver(uid, Token{RefreshToken: "someone-else's"})
	got, refreshed, err := e.m.Fresh(context.Background(), uid, cur, true, saver)
	if !errors.Is(err, errStale) || refreshed || got.AccessToken != "" {
		t.Fatalf("Fresh = %v, %v; want the CAS error and no token", refreshed, err)
	}
}

func TestReconsent(t *testing.T) {
	t.Parallel()
	t.Run("revoked", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		cur := e.grant(t)
		e.sim.RevokeGrants(e.pid)
		before := e.tokenCalls()
		_, _, err := e.m.Fresh(context.Background(), uid, cur, true, newMemSaver(uid, cur))
		assertReconsent(t, err)
		if n := e.tokenCalls() - before; n != 1 {
			t.Errorf("%d token calls, want 1 (invalid_grant is not retried)", n)
		}
	})
	t.Run("testing app grant expired after 7 days", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{GrantLifetime: 7 * 24 * time.Hour}, 0)
		cur := e.grant(t)
		saver := newMemSaver(uid, cur)
		e.clock.Advance(6 * 24 * time.Hour)
		tok, _, err := e.m.Fresh(context.Background(), uid, cur, false, saver)
		if err != nil {
			t.Fatalf("day 6: %v", err)
		}
		e.clock.Advance(24*time.Hour + time.Minute)
		_, _, err = e.m.Fresh(context.Background(), uid, tok, false, saver)
		assertReconsent(t, err)
	})
	t.Run("legacy token endpoint 410", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		cur := e.grant(t)
		m := e.manager(t, func(c *Config) { c.TokenURL = e.srv.URL + "/oauth2/token" })
		_, _, err := m.Fresh(context.Background(), uid, cur, true, newMemSaver(uid, cur))
		assertReconsent(t, err)
	})
	t.Run("no refresh token stored", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		_, _, err := e.m.Fresh(context.Background(), uid, Token{}, false, newMemSaver(uid, Token{}))
		assertReconsent(t, err)
		if e.tokenCalls() != 0 {
			t.Error("token endpoint called without a refresh token")
		}
	})
}

func assertReconsent(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrReconsent) || errors.Is(err, ErrTransient) || errors.Is(err, ErrClient) {
		t.Fatalf("error %v: want ErrReconsent only", err)
	}
}

func TestInvalidClientIsNotReconsent(t *testing.T) {
	t.Parallel()
	e := setup(t, healthsim.Options{}, 0)
	cur := e.grant(t)
	m := e.manager(t, func(c *Config) { c.ClientSecret = "wrong-secret" })
	_, _, err := m.Fresh(context.Background(), uid, cur, true, newMemSaver(uid, cur))
	if !errors.Is(err, ErrClient) || errors.Is(err, ErrReconsent) || errors.Is(err, ErrTransient) {
		t.Fatalf("error %v: want ErrClient only", err)
	}
	// The participant's grant is intact: the right client still refreshes.
	if _, _, err := e.m.Fresh(context.Background(), uid, cur, true, newMemSaver(uid, cur)); err != nil {
		t.Errorf("after a client error the grant is gone: %v", err)
	}
}

func TestTransientRetriedOnceWithSameRefreshToken(t *testing.T) {
	t.Parallel()
	t.Run("one 503 then success", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{RotateRefreshTokens: true}, 0)
		cur := e.grant(t)
		e.sim.SetFault(e.pid, healthsim.Fault{Path: "token", Status: http.StatusServiceUnavailable, Times: 1})
		before := e.tokenCalls()
		got, refreshed, err := e.m.Fresh(context.Background(), uid, cur, true, newMemSaver(uid, cur))
		if err != nil || !refreshed {
			t.Fatalf("Fresh: %v", err)
		}
		if n := e.tokenCalls() - before; n != 2 {
			t.Errorf("%d token calls, want 2", n)
		}
		if e.sim.Stats().InvalidGrants != 0 || e.identity(t, got.AccessToken) != http.StatusOK {
			t.Error("the retry did not yield a working token")
		}
		if !strings.Contains(e.logText(), "token refresh retry") {
			t.Errorf("retry not logged:\n%s", e.logText())
		}
	})
	t.Run("503 twice gives ErrTransient", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		cur := e.grant(t)
		e.sim.SetFault(e.pid, healthsim.Fault{Path: "token", Status: http.StatusServiceUnavailable})
		before := e.tokenCalls()
		_, _, err := e.m.Fresh(context.Background(), uid, cur, true, newMemSaver(uid, cur))
		if !errors.Is(err, ErrTransient) || errors.Is(err, ErrReconsent) {
			t.Fatalf("error %v: want ErrTransient", err)
		}
		if n := e.tokenCalls() - before; n != 2 {
			t.Errorf("%d token calls, want 2 (one retry)", n)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		cur := e.grant(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + ln.Addr().String() + "/token"
		ln.Close() // nothing listens there any more
		m := e.manager(t, func(c *Config) { c.TokenURL = dead })
		_, _, err = m.Fresh(context.Background(), uid, cur, true, newMemSaver(uid, cur))
		if !errors.Is(err, ErrTransient) {
			t.Fatalf("error %v: want ErrTransient", err)
		}
		if strings.Count(e.logText(), "token refresh retry") != 1 {
			t.Errorf("want exactly one retry logged:\n%s", e.logText())
		}
	})
}

// TestClockSkew drives two hours of simulator time a minute at a time with the
// host clock 5 minutes ahead or behind, and uses the token for a data call at
// every step: it must never be expired from the API's point of view.
func TestClockSkew(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{-5 * time.Minute, 5 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			e := setup(t, healthsim.Options{}, skew)
			tok := e.grant(t)
			saver := newMemSaver(uid, tok)
			refreshes := 0
			for step := 0; step < 120; step++ {
				got, refreshed, err := e.m.Fresh(context.Background(), uid, tok, false, saver)
				if err != nil {
					t.Fatalf("minute %d: %v", step, err)
				}
				if refreshed {
					refreshes++
				}
				tok = got
				if st := e.identity(t, tok.AccessToken); st != http.StatusOK {
					t.Fatalf("minute %d (skew %s): data call HTTP %d: token refreshed too late", step, skew, st)
				}
				e.clock.Advance(time.Minute)
			}
			// About one refresh per 50 minutes: not refreshing on every call.
			if refreshes < 2 || refreshes > 3 {
				t.Errorf("%d refreshes in 2 h, want 2 or 3", refreshes)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// noRedirects is a browser that stops at the simulator's redirect, as when
// the participant copies the redirect URL by hand (--no-browser).
func noRedirects() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// authorize opens the consent URL without following the redirect and returns
// the Location the simulator sends the browser to.
func authorize(t *testing.T, consentURL string) string {
	t.Helper()
	resp, err := noRedirects().Get(consentURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 3 {
		t.Fatalf("authorize: HTTP %d, want a redirect", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func TestConsentLoopback(t *testing.T) {
	t.Parallel()
	e := setup(t, healthsim.Options{}, 0)
	p := e.sim.Participants()[0]
	var page string
	var status int
	tok, err := e.m.AuthorizeLoopback(context.Background(), p.Email, func(u string) {
		// The participant's browser: follows the simulator's redirect to the
		// loopback callback.
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
		if err != nil {
			t.Errorf("browser: %v", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page, status = string(b), resp.StatusCode
	})
	if err != nil {
		t.Fatalf("AuthorizeLoopback: %v", err)
	}
	if status != http.StatusOK || !strings.Contains(page, "Consent received") {
		t.Errorf("browser got HTTP %d: %s", status, page)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || MissingScopes(tok.Scopes) != nil {
		t.Fatalf("token incomplete: %v", tok)
	}
	if e.sim.Requests("", "authorize") != 1 || e.tokenCalls() != 1 {
		t.Errorf("authorize %d, token %d calls; want 1, 1", e.sim.Requests("", "authorize"), e.tokenCalls())
	}
	if st := e.identity(t, tok.AccessToken); st != http.StatusOK {
		t.Errorf("data call with the consented token: HTTP %d", st)
	}
	// The refresh token from consent works.
	if _, _, err := e.m.Fresh(context.Background(), uid, tok, true, newMemSaver(uid, tok)); err != nil {
		t.Errorf("refresh of the consented token: %v", err)
	}
}

func TestConsentNoBrowser(t *testing.T) {
	t.Parallel()
	e := setup(t, healthsim.Options{}, 0)
	p := e.sim.Participants()[0]
	ctx := context.Background()
	for _, bare := range []bool{false, true} {
		c, err := e.m.NewConsent("https://www.google.com", p.Email)
		if err != nil {
			t.Fatal(err)
		}
		pasted := authorize(t, c.URL())
		if bare { // the participant copied only the code
			u, _ := url.Parse(pasted)
			pasted = u.Query().Get("code")
		}
		code, state, err := ParseRedirect(pasted)
		if err != nil {
			t.Fatalf("ParseRedirect: %v", err)
		}
		if bare != (state == "") {
			t.Fatalf("bare=%v but state %q", bare, state)
		}
		tok, err := e.m.Exchange(ctx, c, code, state)
		if err != nil {
			t.Fatalf("Exchange (bare=%v): %v", bare, err)
		}
		if e.identity(t, tok.AccessToken) != http.StatusOK {
			t.Errorf("bare=%v: token does not work", bare)
		}
	}
}

func TestConsentRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("wrong state in Exchange", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		c, _ := e.m.NewConsent("https://www.google.com", "")
		code, _, err := ParseRedirect(authorize(t, c.URL()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.m.Exchange(ctx, c, code, "forged-state")
		if !errors.Is(err, ErrStateMismatch) {
			t.Fatalf("error %v, want ErrStateMismatch", err)
		}
		if e.tokenCalls() != 0 {
			t.Error("the code was sent to the token endpoint despite the wrong state")
		}
	})
	t.Run("PKCE verifier checked by the endpoint", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		c, _ := e.m.NewConsent("https://www.google.com", "")
		code, state, _ := ParseRedirect(authorize(t, c.URL()))
		other, _ := e.m.NewConsent("https://www.google.com", "")
		c.verifier = other.verifier // an attacker holding the code but not our verifier
		if _, err := e.m.Exchange(ctx, c, code, state); err == nil {
			t.Fatal("exchange with the wrong verifier succeeded: PKCE not enforced")
		}
	})
	for name, forged := range map[string]*string{"wrong": ptr("forged"), "missing": nil} {
		t.Run(name+" state at the loopback callback", func(t *testing.T) {
			t.Parallel()
			e := setup(t, healthsim.Options{}, 0)
			var status int
			_, err := e.m.AuthorizeLoopback(ctx, "", func(u string) {
				loc, _ := url.Parse(authorize(t, u))
				q := loc.Query()
				if forged != nil {
					q.Set("state", *forged)
				} else {
					q.Del("state") // Exchange accepts "" (a pasted bare code); the callback must not
				}
				loc.RawQuery = q.Encode()
				resp, err := noRedirects().Get(loc.String())
				if err != nil {
					t.Errorf("callback: %v", err)
					return
				}
				resp.Body.Close()
				status = resp.StatusCode
			})
			if !errors.Is(err, ErrStateMismatch) || status != http.StatusBadRequest {
				t.Fatalf("error %v, page HTTP %d; want ErrStateMismatch and 400", err, status)
			}
			if e.tokenCalls() != 0 {
				t.Error("code exchanged despite the bad state")
			}
		})
	}
	t.Run("access denied at the loopback callback", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		var page string
		_, err := e.m.AuthorizeLoopback(ctx, "", func(u string) {
			cu, _ := url.Parse(u)
			q := cu.Query()
			deny := q.Get("redirect_uri") + "?error=access_denied&state=" + url.QueryEscape(q.Get("state"))
			resp, err := noRedirects().Get(deny)
			if err != nil {
				t.Errorf("callback: %v", err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = string(b)
		})
		if !errors.Is(err, ErrAccessDenied) || !strings.Contains(page, "not granted") {
			t.Fatalf("error %v, page %q; want ErrAccessDenied", err, page)
		}
	})
	t.Run("context cancelled while waiting", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		cctx, cancel := context.WithCancel(ctx)
		var callback string
		_, err := e.m.AuthorizeLoopback(cctx, "", func(u string) {
			cu, _ := url.Parse(u)
			callback = cu.Query().Get("redirect_uri")
			cancel() // the operator pressed ^C instead of consenting
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
		cu, _ := url.Parse(callback)
		if conn, err := net.Dial("tcp", cu.Host); err == nil {
			conn.Close()
			t.Error("loopback listener still open after return")
		}
	})
	t.Run("scopes unticked on the consent screen", func(t *testing.T) {
		t.Parallel()
		e := setup(t, healthsim.Options{}, 0)
		e.sim.SetGrantedScopes(e.pid, RequiredScopes[:2])
		c, _ := e.m.NewConsent("https://www.google.com", e.sim.Participants()[0].Email)
		code, state, _ := ParseRedirect(authorize(t, c.URL()))
		tok, err := e.m.Exchange(ctx, c, code, state)
		if err != nil {
			t.Fatal(err)
		}
		if got := MissingScopes(tok.Scopes); len(got) != 1 || got[0] != RequiredScopes[2] {
			t.Errorf("MissingScopes(%v) = %v, want the settings scope", tok.Scopes, got)
		}
	})
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	e := setup(t, healthsim.Options{}, 0)
	cur := e.grant(t)
	if err := e.m.Revoke(context.Background(), cur.RefreshToken); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	_, _, err := e.m.Fresh(context.Background(), uid, cur, true, newMemSaver(uid, cur))
	assertReconsent(t, err)
	if err := e.m.Revoke(context.Background(), cur.RefreshToken); err != nil {
		t.Errorf("revoking an already revoked token: %v", err)
	}

	// A 503 from the revoke endpoint is retried once.
	next := e.grant(t)
	e.sim.SetFault(e.pid, healthsim.Fault{Path: "revoke", Status: http.StatusServiceUnavailable, Times: 1})
	before := e.sim.Requests("", "revoke")
	if err := e.m.Revoke(context.Background(), next.AccessToken); err != nil {
		t.Fatalf("Revoke after one 503: %v", err)
	}
	if n := e.sim.Requests("", "revoke") - before; n != 2 {
		t.Errorf("%d revoke calls, want 2", n)
	}
	if st := e.identity(t, next.AccessToken); st != http.StatusUnauthorized {
		t.Errorf("data call after revoke: HTTP %d, want 401", st)
	}
}

// TestNoSecretsInErrorsOrLogs runs every failing path against one simulator
// and checks that nothing it issued (Server.Secrets: tokens, codes, the client
// secret) appears in an error string or a log line auth produced.
func TestNoSecretsInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	e := setup(t, healthsim.Options{RotateRefreshTokens: true}, 0)
	ctx := context.Background()
	var errs []error
	fail := func(what string, err error) {
		if err == nil {
			t.Errorf("%s: want an error", what)
			return
		}
		errs = append(errs, err)
	}

	cur := e.grant(t)
	saver := newMemSaver(uid, cur)
	saver.fail = errors.New("disk full")
	_, _, err := e.m.Fresh(ctx, uid, cur, true, saver)
	fail("failed save", err)
	_, _, err = e.m.Fresh(ctx, uid, cur, true, newMemSaver(uid, Token{RefreshToken: "other"}))
	fail("lost CAS", err)

	e.sim.SetFault(e.pid, healthsim.Fault{Path: "token", Status: http.StatusInternalServerError})
	_, _, err = e.m.Fresh(ctx, uid, cur, true, newMemSaver(uid, cur))
	fail("5xx twice", err)
	e.sim.ClearFaults(e.pid)

	bad := e.manager(t, func(c *Config) { c.ClientSecret = "sim-secret-but-wrong" })
	_, _, err = bad.Fresh(ctx, uid, cur, true, newMemSaver(uid, cur))
	fail("invalid client", err)
	legacy := e.manager(t, func(c *Config) { c.TokenURL = e.srv.URL + "/oauth2/token" })
	_, _, err = legacy.Fresh(ctx, uid, cur, true, newMemSaver(uid, cur))
	fail("legacy 410", err)

	c, _ := e.m.NewConsent("https://www.google.com", "")
	code, state, err := ParseRedirect(authorize(t, c.URL()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.m.Exchange(ctx, c, code, "forged")
	fail("wrong state", err)
	good := c.verifier
	c.verifier = oauth2.GenerateVerifier()
	_, err = e.m.Exchange(ctx, c, code, state)
	fail("wrong verifier", err)
	c.verifier = good
	if _, err := e.m.Exchange(ctx, c, code, state); err != nil {
		t.Logf("exchange after a failed PKCE attempt: %v (codes may be single-use)", err)
	}
	_, err = e.m.Exchange(ctx, c, code+"x", state)
	fail("unknown code", err)
	_, err = e.m.Exchange(ctx, c, code, state) // replayed code
	fail("replayed code", err)

	_, err = e.m.AuthorizeLoopback(ctx, "", func(u string) {
		loc, _ := url.Parse(authorize(t, u))
		q := loc.Query()
		q.Set("state", "forged")
		loc.RawQuery = q.Encode()
		if resp, err := noRedirects().Get(loc.String()); err == nil {
			resp.Body.Close()
		}
	})
	fail("loopback wrong state", err)

	e.sim.RevokeGrants(e.pid)
	_, _, err = e.m.Fresh(ctx, uid, cur, true, newMemSaver(uid, cur))
	fail("revoked", err)

	secrets := e.sim.Secrets()
	if len(secrets) < 4 {
		t.Fatalf("simulator reports only %d secrets", len(secrets))
	}
	secrets = append(secrets, "sim-secret-but-wrong", c.verifier)
	logs := e.logText()
	if !strings.Contains(logs, "token refresh retry") {
		t.Errorf("expected retry log lines, got:\n%s", logs)
	}
	for _, s := range secrets {
		if len(s) < 6 { // guard against a degenerate secret matching everything
			t.Fatalf("suspiciously short secret %q", s)
		}
		for _, err := range errs {
			if msg := fmt.Sprintf("%v|%+v|%#v", err, err, err.Error()); strings.Contains(msg, s) {
				t.Errorf("error leaks a secret: %s", err)
			}
		}
		if strings.Contains(logs, s) {
			t.Errorf("log leaks a secret:\n%s", logs)
		}
	}
	t.Logf("%d errors checked, e.g.:", len(errs))
	for _, err := range errs {
		t.Log("  ", err)
	}
}
