package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Consent is one authorization-code request: its redirect URL, random state and
// PKCE verifier. Use it for exactly one Exchange.
type Consent struct {
	redirectURL string
	state       string
	verifier    string
	url         string
}

// URL is the authorization URL to open in the participant's browser.
func (c *Consent) URL() string { return c.url }

// RedirectURL is the redirect_uri this consent was built for.
func (c *Consent) RedirectURL() string { return c.redirectURL }

// stateMatches compares in constant time so that a local attacker probing the
// loopback port learns nothing from response timing.
func (c *Consent) stateMatches(state string) bool {
	return subtle.ConstantTimeCompare([]byte(state), []byte(c.state)) == 1
}

// NewConsent builds an authorization-code request with PKCE S256,
// access_type=offline (for a refresh token), prompt=consent (otherwise Google
// sends a refresh token only on the very first consent) and a random state.
// loginHint ("" for none) preselects the participant's Google account.
func (m *Manager) NewConsent(redirectURL string, loginHint string) (*Consent, error) {
	if u, err := url.Parse(redirectURL); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, errors.New("auth: consent redirect URL must be absolute")
	}
	state, err := randomState()
	if err != nil {
		return nil, err
	}
	c := &Consent{redirectURL: redirectURL, state: state, verifier: oauth2.GenerateVerifier()}
	oc := m.oc
	oc.RedirectURL = redirectURL
	opts := []oauth2.AuthCodeOption{
		oauth2.AccessTypeOffline,
		oauth2.SetAuthURLParam("prompt", "consent"),
		oauth2.S256ChallengeOption(c.verifier),
	}
	if loginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", loginHint))
	}
	c.url = oc.AuthCodeURL(state, opts...)
	return c, nil
}

func randomState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: random state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Exchange trades an authorization code for a token, sending the PKCE
// code_verifier. A non-empty state that differs from the consent's is refused
// with ErrStateMismatch. An empty state means the participant pasted a bare
// code (ParseRedirect); it is accepted because PKCE already binds the code to
// this consent's verifier: a code issued for anyone else's request fails.
//
// The token's Scopes are those the endpoint reports granted (check them with
// MissingScopes); when it reports none, the requested scopes were granted
// (RFC 6749 §5.1).
func (m *Manager) Exchange(ctx context.Context, c *Consent, code, state string) (Token, error) {
	if c == nil {
		return Token{}, errors.New("auth: exchange without a consent")
	}
	if state != "" && !c.stateMatches(state) {
		return Token{}, fmt.Errorf("exchange code: %w", ErrStateMismatch)
	}
	if code == "" {
		return Token{}, errors.New("exchange code: empty authorization code")
	}
	oc := m.oc
	oc.RedirectURL = c.redirectURL
	started := m.now()
	ot, err := oc.Exchange(m.clientCtx(ctx), code, oauth2.VerifierOption(c.verifier))
	if err != nil {
		return Token{}, fmt.Errorf("exchange code: %w", classify("exchange", err, code, c.verifier, m.oc.ClientSecret))
	}
	tok := m.convert(ot, started, "", m.oc.Scopes)
	if tok.RefreshToken == "" {
		// Without it the participant would need consent again within the hour.
		return Token{}, errors.New("exchange code: token response has no refresh token (was access_type=offline honoured?)")
	}
	return tok, nil
}

// ParseRedirect extracts the code and state from what a participant pasted: the
// full redirect URL (or just its query string), or a bare code, for which state
// is "". An error=... redirect (ErrAccessDenied for access_denied) is returned
// as an error. Error messages never repeat the input, which may hold a code.
func ParseRedirect(s string) (code, state string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", errors.New("parse redirect: empty input")
	}
	var q url.Values
	switch {
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil {
			return "", "", errors.New("parse redirect: not a valid URL")
		}
		q = u.Query()
	case strings.HasPrefix(s, "?") || strings.Contains(s, "code=") || strings.Contains(s, "error="):
		q, err = url.ParseQuery(strings.TrimPrefix(s, "?"))
		if err != nil {
			return "", "", errors.New("parse redirect: not a valid query string")
		}
	default:
		if strings.ContainsAny(s, " \t\r\n&?#") {
			return "", "", errors.New("parse redirect: neither a redirect URL nor an authorization code")
		}
		// Copied from an address bar, Google's "4/0A..." codes may arrive escaped.
		if c, err := url.QueryUnescape(s); err == nil {
			s = c
		}
		return s, "", nil
	}
	if err := redirectError(q); err != nil {
		return "", "", fmt.Errorf("parse redirect: %w", err)
	}
	code = q.Get("code")
	if code == "" {
		return "", "", errors.New("parse redirect: no code parameter")
	}
	return code, q.Get("state"), nil
}

// redirectError reports an error=... redirect. The code is an OAuth token
// (RFC 6749 §4.1.2.1), short and secret-free; it is still bounded.
func redirectError(q url.Values) error {
	e := q.Get("error")
	switch {
	case e == "":
		return nil
	case e == "access_denied":
		return ErrAccessDenied
	default:
		return fmt.Errorf("authorization failed: %s", scrub(e, 40, nil))
	}
}

// loopbackReadTimeout bounds each browser request to the callback server; the
// callback does the code exchange (bounded by the token client's timeout)
// before it answers, so the write timeout is generous.
const (
	loopbackReadTimeout  = 10 * time.Second
	loopbackWriteTimeout = 2 * time.Minute
)

var callbackPage = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>sync-all</title></head>
<body style="font-family:sans-serif;margin:3em"><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// AuthorizeLoopback runs the installed-app consent flow: it listens on
// 127.0.0.1:0, builds a consent whose redirect is
// http://127.0.0.1:<port>/callback, calls show with the URL (print it or open a
// browser), waits for the callback or ctx, exchanges the code, answers the
// browser with a small page saying how it went, and shuts the listener down.
// The callback must carry this consent's state (ErrStateMismatch otherwise);
// a declined consent yields ErrAccessDenied.
func (m *Manager) AuthorizeLoopback(ctx context.Context, loginHint string, show func(url string)) (Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Token{}, fmt.Errorf("consent: listen on loopback: %w", err)
	}
	redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", ln.Addr().(*net.TCPAddr).Port)
	c, err := m.NewConsent(redirect, loginHint)
	if err != nil {
		ln.Close()
		return Token{}, err
	}

	type result struct {
		tok Token
		err error
	}
	done := make(chan result, 1)
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		handled := false
		once.Do(func() {
			handled = true
			tok, err := m.callback(ctx, c, r.URL.Query())
			page := struct{ Title, Text string }{"Consent received", "sync-all has your authorization. You can close this tab."}
			status := http.StatusOK
			if err != nil {
				status = http.StatusBadRequest
				page.Title, page.Text = "Consent failed", callbackFailure(err)
			}
			writePage(w, status, page)
			done <- result{tok, err}
		})
		if !handled {
			writePage(w, http.StatusGone, struct{ Title, Text string }{"Already handled", "This consent was already completed. You can close this tab."})
		}
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: loopbackReadTimeout,
		ReadTimeout:       loopbackReadTimeout,
		WriteTimeout:      loopbackWriteTimeout,
		IdleTimeout:       loopbackReadTimeout,
	}
	go srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed after Shutdown
	defer func() {
		// Graceful: the browser gets its page before the listener goes.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx) //nolint:errcheck // nothing useful to do on a failed close
		// Shutdown closes only listeners Serve has started on; if the Serve goroutine has not
		// run yet, the port would stay open until it does.
		ln.Close()
	}()

	show(c.URL())
	select {
	case r := <-done:
		if r.err != nil {
			return Token{}, fmt.Errorf("consent: %w", r.err)
		}
		return r.tok, nil
	case <-ctx.Done():
		return Token{}, fmt.Errorf("consent: waiting for the browser: %w", ctx.Err())
	}
}

// callback validates one redirect to the loopback server and exchanges its code.
// Unlike Exchange, a missing state is refused: a real redirect always has one.
func (m *Manager) callback(ctx context.Context, c *Consent, q url.Values) (Token, error) {
	if !c.stateMatches(q.Get("state")) {
		return Token{}, ErrStateMismatch
	}
	if err := redirectError(q); err != nil {
		return Token{}, err
	}
	code := q.Get("code")
	if code == "" {
		return Token{}, errors.New("callback has no code parameter")
	}
	return m.Exchange(ctx, c, code, q.Get("state"))
}

func callbackFailure(err error) string {
	switch {
	case errors.Is(err, ErrAccessDenied):
		return "Access was not granted, so sync-all cannot read your data. Close this tab and start again to retry."
	case errors.Is(err, ErrStateMismatch):
		return "This response does not belong to the consent sync-all started. Close this tab and start again."
	default:
		return "sync-all could not complete the authorization; see its output for the reason."
	}
}

func writePage(w http.ResponseWriter, status int, page any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	callbackPage.Execute(w, page) //nolint:errcheck // the browser went away; the result is reported through the channel
}

// Revoke revokes a token (access or refresh) at the revoke endpoint: the grant
// ends for the participant. A token the endpoint no longer knows
// (invalid_token) counts as revoked. A network error or 5xx is retried once.
func (m *Manager) Revoke(ctx context.Context, token string) error {
	if token == "" {
		return errors.New("revoke: empty token")
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = m.revokeOnce(ctx, token)
		if err == nil || attempt >= 2 || !errors.Is(err, ErrTransient) || ctx.Err() != nil {
			return err
		}
	}
}

func (m *Manager) revokeOnce(ctx context.Context, token string) error {
	form := url.Values{"token": {token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.revokeURL, strings.NewReader(form.Encode()))
	if err != nil {
		return errors.New("revoke: cannot build request")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := m.client.Do(req)
	if err != nil {
		return fmt.Errorf("revoke: %w", classify("revoke", err, token, m.oc.ClientSecret))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	// Reuse x/oauth2's error-body parsing through the same classifier.
	oe := parseOAuthError(resp)
	if oe.ErrorCode == "invalid_token" {
		return nil
	}
	return fmt.Errorf("revoke: %w", classify("revoke", oe, token, m.oc.ClientSecret))
}

// parseOAuthError reads an RFC 6749 §5.2 error body into a RetrieveError.
func parseOAuthError(resp *http.Response) *oauth2.RetrieveError {
	re := &oauth2.RetrieveError{Response: resp}
	var body struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if err := decodeJSON(resp, &body); err == nil {
		re.ErrorCode, re.ErrorDescription = body.Error, body.ErrorDescription
	}
	return re
}

// MissingScopes returns the RequiredScopes that are not in granted, in
// RequiredScopes order; nil when all were granted.
func MissingScopes(granted []string) []string {
	var missing []string
	for _, s := range RequiredScopes {
		if !slices.Contains(granted, s) {
			missing = append(missing, s)
		}
	}
	return missing
}
