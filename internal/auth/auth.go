package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Google's endpoints (google-health-api.md §8). The authorize URL is the v2 path;
// x/oauth2's endpoints.Google still names the v1 one.
const (
	DefaultAuthURL   = "https://accounts.google.com/o/oauth2/v2/auth"
	DefaultTokenURL  = "https://oauth2.googleapis.com/token"
	DefaultRevokeURL = "https://oauth2.googleapis.com/revoke"
)

// DefaultMargin is how long before expiry a token is refreshed. Ten minutes
// absorbs a ±5 minute clock skew between this host and Google and still leaves
// a whole participant's sync (minutes) inside the token's lifetime.
const DefaultMargin = 10 * time.Minute

// defaultTimeout bounds one token endpoint call when the caller gives no client.
const defaultTimeout = 30 * time.Second

// saveTimeout bounds saving a token the endpoint already issued. The save runs
// detached from the caller's cancellation: once a (possibly rotated) refresh
// token exists, persisting it matters more than stopping promptly.
const saveTimeout = 15 * time.Second

const scopePrefix = "https://www.googleapis.com/auth/googlehealth"

// RequiredScopes are the scopes sync-all needs; a participant who unticked any of
// them must consent again.
var RequiredScopes = []string{
	scopePrefix + ".activity_and_fitness.readonly",
	scopePrefix + ".health_metrics_and_measurements.readonly",
	scopePrefix + ".settings.readonly",
}

var (
	// ErrReconsent is wrapped when the grant is gone (token endpoint
	// invalid_grant, or HTTP 410 from a legacy endpoint): only the participant
	// consenting again can fix it.
	ErrReconsent = errors.New("grant revoked or expired: participant must consent again")
	// ErrTransient is wrapped for network errors, timeouts, HTTP 429 and 5xx from
	// the token endpoint: trying again later may succeed.
	ErrTransient = errors.New("token endpoint temporarily unavailable")
	// ErrClient is wrapped when the endpoint rejects our OAuth client
	// (invalid_client, unauthorized_client): a configuration problem, not the
	// participant's fault, so it must not mark anyone needs_reconsent.
	ErrClient = errors.New("OAuth client rejected: check client id and secret")
	// ErrStateMismatch is returned when a consent callback carries a state other
	// than the one this consent generated (a forged or stale redirect).
	ErrStateMismatch = errors.New("consent state mismatch")
	// ErrAccessDenied is returned when the participant declined consent
	// (error=access_denied on the redirect).
	ErrAccessDenied = errors.New("participant denied access")
)

// Config configures a Manager.
type Config struct {
	ClientID, ClientSecret string
	// AuthURL, TokenURL and RevokeURL default to Google's (DefaultAuthURL, ...).
	AuthURL, TokenURL, RevokeURL string
	// Scopes requested at consent; default RequiredScopes.
	Scopes []string
	// HTTPClient makes the token calls. It must have a Timeout: a token call that
	// hangs would hold a participant's lease forever. Nil means a 30 s client.
	HTTPClient *http.Client
	// Margin: a token expiring within it is refreshed; default DefaultMargin.
	Margin time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives the one line auth writes itself, "token refresh retry"
	// (the caller logs outcomes from the returned errors); default discard.
	Logger *slog.Logger
}

// Manager refreshes tokens and runs the consent flow. It is safe for concurrent
// use by many workers.
type Manager struct {
	oc        oauth2.Config
	client    *http.Client
	revokeURL string
	margin    time.Duration
	now       func() time.Time
	log       *slog.Logger
}

// New validates cfg, fills in defaults and returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("auth: client id is required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: defaultTimeout}
	} else if cfg.HTTPClient.Timeout <= 0 {
		return nil, errors.New("auth: HTTP client for token calls must have a timeout")
	}
	if cfg.Margin < 0 {
		return nil, fmt.Errorf("auth: negative refresh margin %s", cfg.Margin)
	}
	if cfg.Margin == 0 {
		cfg.Margin = DefaultMargin
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = RequiredScopes
	}
	for _, u := range []struct {
		name string
		v    *string
		def  string
	}{{"auth", &cfg.AuthURL, DefaultAuthURL}, {"token", &cfg.TokenURL, DefaultTokenURL}, {"revoke", &cfg.RevokeURL, DefaultRevokeURL}} {
		if *u.v == "" {
			*u.v = u.def
		}
		if p, err := url.Parse(*u.v); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return nil, fmt.Errorf("auth: %s URL is not an absolute http(s) URL", u.name)
		}
	}
	return &Manager{
		oc: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Scopes:       slices.Clone(cfg.Scopes),
			// Credentials in the form body, as Google expects (§8). Auto-detect
			// would first try Basic auth and, on ANY error (invalid_grant
			// included), send the refresh token a second time.
			Endpoint: oauth2.Endpoint{AuthURL: cfg.AuthURL, TokenURL: cfg.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
		},
		client:    cfg.HTTPClient,
		revokeURL: cfg.RevokeURL,
		margin:    cfg.Margin,
		now:       cfg.Now,
		log:       cfg.Logger,
	}, nil
}

// Fresh returns a usable token. It returns cur unchanged when cur expires after
// Now()+Margin and force is false. Otherwise it refreshes, saves the new token
// through saver (compare-and-swap against cur.RefreshToken, committed), and only
// then returns it with refreshed == true. If the save fails, the error wraps the
// save error and no token is returned: a rotated refresh token must never be
// used before it is stored, or a crash would lose the grant.
//
// Errors wrap ErrReconsent (grant gone), ErrTransient (retry later; a network
// error or 5xx was already retried once with the same refresh token) or
// ErrClient (our OAuth client is misconfigured).
func (m *Manager) Fresh(ctx context.Context, userID int64, cur Token, force bool, saver TokenSaver) (tok Token, refreshed bool, err error) {
	if !force && cur.AccessToken != "" && cur.Expiry.After(m.now().Add(m.margin)) {
		return cur, false, nil
	}
	if cur.RefreshToken == "" {
		return Token{}, false, fmt.Errorf("refresh token for user %d: no refresh token stored: %w", userID, ErrReconsent)
	}
	if saver == nil {
		return Token{}, false, fmt.Errorf("refresh token for user %d: no token saver", userID)
	}
	newTok, err := m.refresh(ctx, userID, cur)
	if err != nil {
		return Token{}, false, fmt.Errorf("refresh token for user %d: %w", userID, err)
	}
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if err := saver.SaveToken(saveCtx, userID, cur.RefreshToken, newTok); err != nil {
		return Token{}, false, fmt.Errorf("save refreshed token for user %d: %w", userID, err)
	}
	return newTok, true, nil
}

// refresh makes the refresh_token grant, retrying a transient failure once with
// the SAME refresh token (the endpoint may have issued a new one we never saw;
// Google does not rotate, and a rotating server replays the pair, §13.1).
func (m *Manager) refresh(ctx context.Context, userID int64, cur Token) (Token, error) {
	var err error
	for attempt := 1; ; attempt++ {
		started := m.now()
		var ot *oauth2.Token
		// A ReuseTokenSource built here for one call only, with an expiry in the
		// past, is simply x/oauth2's refresh request; it never outlives Fresh.
		ot, err = m.oc.TokenSource(m.clientCtx(ctx), &oauth2.Token{
			RefreshToken: cur.RefreshToken,
			Expiry:       time.Unix(1, 0),
		}).Token()
		if err == nil {
			return m.convert(ot, started, cur.RefreshToken, cur.Scopes), nil
		}
		err = classify("refresh", err, cur.RefreshToken, m.oc.ClientSecret)
		if attempt >= 2 || !errors.Is(err, ErrTransient) || ctx.Err() != nil {
			return Token{}, err
		}
		m.log.WarnContext(ctx, "token refresh retry", slog.Int64("user_id", userID), slog.String("reason", err.Error()))
	}
}

// clientCtx hands x/oauth2 our client (with its timeout) for one call.
func (m *Manager) clientCtx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, m.client)
}

// convert turns an x/oauth2 token into ours. Expiry is computed from our clock
// at request time plus expires_in (x/oauth2 uses the wall clock after the
// response, which an injected clock cannot drive). Refresh responses usually
// omit refresh_token and scope: the previous values are kept.
func (m *Manager) convert(ot *oauth2.Token, started time.Time, prevRefresh string, prevScopes []string) Token {
	t := Token{AccessToken: ot.AccessToken, RefreshToken: ot.RefreshToken, Expiry: ot.Expiry}
	if ot.ExpiresIn > 0 {
		t.Expiry = started.Add(time.Duration(ot.ExpiresIn) * time.Second)
	}
	if t.RefreshToken == "" { // x/oauth2 already does this for refreshes; exchange has no previous one
		t.RefreshToken = prevRefresh
	}
	if s, ok := ot.Extra("scope").(string); ok && strings.TrimSpace(s) != "" {
		t.Scopes = strings.Fields(s)
	} else {
		t.Scopes = slices.Clone(prevScopes)
	}
	return t
}

// TokenError is a failed token endpoint call, described without secrets. Its
// message is built from the status, the OAuth error code and description only:
// *oauth2.RetrieveError's own message includes the raw response body.
type TokenError struct {
	Op          string // "refresh", "exchange" or "revoke"
	Status      int    // HTTP status; 0 when no response arrived
	Code        string // OAuth "error", e.g. "invalid_grant"
	Description string // OAuth "error_description", secrets scrubbed, shortened
	kind        error  // ErrReconsent, ErrTransient, ErrClient or nil
	err         error  // a network error (never a RetrieveError)
}

// Error implements error.
func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString("token endpoint " + e.Op)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, " (%s)", e.Description)
	}
	if e.err != nil {
		b.WriteString(": " + e.err.Error())
	}
	if e.kind != nil {
		b.WriteString(": " + e.kind.Error())
	}
	return b.String()
}

// Unwrap exposes the class sentinel and the network error to errors.Is/As.
func (e *TokenError) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// classify turns an x/oauth2 (or transport) error into a *TokenError, scrubbing
// the given secrets from any text it keeps.
func classify(op string, err error, secrets ...string) error {
	e := &TokenError{Op: op}
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re):
		if re.Response != nil {
			e.Status = re.Response.StatusCode
		}
		e.Code = scrub(re.ErrorCode, 40, secrets)
		e.Description = scrub(re.ErrorDescription, 200, secrets)
		switch {
		case op == "exchange" && re.ErrorCode == "invalid_grant":
			// A bad, expired or reused authorization code (or a PKCE
			// mismatch): the consent attempt failed, no stored grant is lost.
		case re.ErrorCode == "invalid_grant", e.Status == http.StatusGone:
			e.kind = ErrReconsent
		case re.ErrorCode == "invalid_client", re.ErrorCode == "unauthorized_client":
			e.kind = ErrClient
		case e.Status == http.StatusTooManyRequests, e.Status >= 500:
			e.kind = ErrTransient
		}
	case isNetwork(err):
		e.kind = ErrTransient
		e.err = scrubbedError{err, secrets}
	default:
		// x/oauth2's own messages (unparsable body, missing access_token) carry
		// no body text, but scrub anyway.
		e.Description = scrub(err.Error(), 200, secrets)
	}
	return e
}

func isNetwork(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// scrubbedError keeps errors.Is/As on a network error but scrubs its text.
type scrubbedError struct {
	err     error
	secrets []string
}

func (s scrubbedError) Error() string { return scrub(s.err.Error(), 300, s.secrets) }
func (s scrubbedError) Unwrap() error { return s.err }

// scrub removes secrets from s and bounds its length.
func scrub(s string, max int, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return s
}

// decodeJSON decodes a small JSON body (at most 64 KiB).
func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(v)
}
