package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

func TestMissingScopes(t *testing.T) {
	t.Parallel()
	all := RequiredScopes
	for _, tc := range []struct {
		name    string
		granted []string
		want    []string
	}{
		{"all", all, nil},
		{"all plus extra, any order", []string{all[2], "openid", all[0], all[1]}, nil},
		{"none", nil, all},
		{"settings unticked", all[:2], all[2:]},
		{"only settings", all[2:], all[:2]},
		{"readonly suffix matters", []string{strings.TrimSuffix(all[0], ".readonly"), all[1], all[2]}, all[:1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, MissingScopes(tc.granted)); diff != "" {
				t.Errorf("MissingScopes(%v) (-want +got):\n%s", tc.granted, diff)
			}
		})
	}
}

func TestParseRedirect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		in                string
		wantCode, wantSt  string
		wantErr, wantDeny bool
	}{
		{name: "loopback URL", in: "http://127.0.0.1:5555/callback?state=st4te&code=4/0Abc-def&scope=x", wantCode: "4/0Abc-def", wantSt: "st4te"},
		{name: "escaped code in URL", in: "https://www.google.com/?code=4%2F0Abc&state=s", wantCode: "4/0Abc", wantSt: "s"},
		{name: "surrounding whitespace", in: "  https://www.google.com/?state=s&code=abc\n", wantCode: "abc", wantSt: "s"},
		{name: "query string only", in: "?code=abc&state=s", wantCode: "abc", wantSt: "s"},
		{name: "query string without ?", in: "state=s&code=abc", wantCode: "abc", wantSt: "s"},
		{name: "bare code", in: "4/0AbcDEF_ghi-jkl", wantCode: "4/0AbcDEF_ghi-jkl"},
		{name: "bare escaped code", in: "4%2F0Abc", wantCode: "4/0Abc"},
		{name: "access denied", in: "http://127.0.0.1:1/callback?error=access_denied&state=s", wantErr: true, wantDeny: true},
		{name: "other error", in: "?error=invalid_scope&state=s", wantErr: true},
		{name: "no code", in: "http://127.0.0.1:1/callback?state=s", wantErr: true},
		{name: "empty", in: "   ", wantErr: true},
		{name: "garbage with spaces", in: "hello world", wantErr: true},
		{name: "bad URL", in: "http://[::1/callback?code=x", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, state, err := ParseRedirect(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseRedirect(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if errors.Is(err, ErrAccessDenied) != tc.wantDeny {
				t.Errorf("errors.Is(%v, ErrAccessDenied) = %v, want %v", err, !tc.wantDeny, tc.wantDeny)
			}
			if err != nil && strings.Contains(err.Error(), "code=") {
				t.Errorf("error %q repeats the input", err)
			}
			if code != tc.wantCode || state != tc.wantSt {
				t.Errorf("ParseRedirect(%q) = %q, %q; want %q, %q", tc.in, code, state, tc.wantCode, tc.wantSt)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	const secret = "1//the-refresh-token"
	resp := func(status int) *http.Response {
		return &http.Response{StatusCode: status, Status: http.StatusText(status)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want error // sentinel, nil = none of them
	}{
		{"invalid_grant", &oauth2.RetrieveError{Response: resp(400), ErrorCode: "invalid_grant", ErrorDescription: "Token has been expired or revoked."}, ErrReconsent},
		{"legacy 410", &oauth2.RetrieveError{Response: resp(410), Body: []byte(`gone ` + secret)}, ErrReconsent},
		{"invalid_client", &oauth2.RetrieveError{Response: resp(401), ErrorCode: "invalid_client"}, ErrClient},
		{"unauthorized_client", &oauth2.RetrieveError{Response: resp(400), ErrorCode: "unauthorized_client"}, ErrClient},
		{"503", &oauth2.RetrieveError{Response: resp(503), Body: []byte(secret)}, ErrTransient},
		{"429", &oauth2.RetrieveError{Response: resp(429)}, ErrTransient},
		{"invalid_request", &oauth2.RetrieveError{Response: resp(400), ErrorCode: "invalid_request", ErrorDescription: "bad " + secret}, nil},
		{"network", &url.Error{Op: "Post", URL: "https://oauth2.example/token", Err: errors.New("connection refused")}, ErrTransient},
		{"other", errors.New("oauth2: server response missing access_token"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := classify("refresh", tc.err, secret)
			for _, s := range []error{ErrReconsent, ErrClient, ErrTransient} {
				if got, want := errors.Is(err, s), s == tc.want; got != want {
					t.Errorf("errors.Is(%q, %q) = %v, want %v", err, s, got, want)
				}
			}
			if msg := fmt.Sprintf("%v %+v", err, err); strings.Contains(msg, secret) || strings.Contains(msg, "the-refresh") {
				t.Errorf("error leaks the secret: %s", msg)
			}
			var te *TokenError
			if !errors.As(err, &te) || te.Op != "refresh" {
				t.Errorf("%v is not a *TokenError for refresh", err)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no client id", Config{}},
		{"client without timeout", Config{ClientID: "c", HTTPClient: &http.Client{}}},
		{"negative margin", Config{ClientID: "c", Margin: -1}},
		{"relative token URL", Config{ClientID: "c", TokenURL: "/token"}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: New succeeded, want error", tc.name)
		}
	}
	m, err := New(Config{ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if m.margin != DefaultMargin || m.client.Timeout == 0 || m.oc.Endpoint.TokenURL != DefaultTokenURL || m.revokeURL != DefaultRevokeURL {
		t.Errorf("defaults not applied: margin %s timeout %s token %s", m.margin, m.client.Timeout, m.oc.Endpoint.TokenURL)
	}
}

func TestConsentURL(t *testing.T) {
	t.Parallel()
	m, err := New(Config{ClientID: "cid", ClientSecret: "csecret", AuthURL: "https://auth.example/o/oauth2/v2/auth"})
	if err != nil {
		t.Fatal(err)
	}
	c1, err := m.NewConsent("http://127.0.0.1:9/callback", "p@example.org")
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := m.NewConsent("http://127.0.0.1:9/callback", "")
	u, err := url.Parse(c1.URL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	want := map[string]string{
		"response_type": "code", "client_id": "cid", "redirect_uri": "http://127.0.0.1:9/callback",
		"access_type": "offline", "prompt": "consent", "code_challenge_method": "S256",
		"login_hint": "p@example.org", "scope": strings.Join(RequiredScopes, " "),
		"state": c1.state, "code_challenge": oauth2.S256ChallengeFromVerifier(c1.verifier),
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if strings.Contains(c1.URL(), "csecret") || strings.Contains(c1.URL(), c1.verifier) {
		t.Error("consent URL carries the client secret or the verifier")
	}
	if c1.state == c2.state || c1.verifier == c2.verifier || len(c1.state) < 32 {
		t.Error("state/verifier not random per consent")
	}
	if u2, _ := url.Parse(c2.URL()); u2.Query().Has("login_hint") {
		t.Error("empty login hint sent")
	}
}

func TestConvertKeepsOldRefreshTokenAndScopes(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	m, err := New(Config{ClientID: "c", Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	old := []string{"a", "b"}
	for _, tc := range []struct {
		name string
		in   *oauth2.Token
		want Token
	}{
		{"response without refresh token or scope",
			(&oauth2.Token{AccessToken: "new", ExpiresIn: 3599}).WithExtra(map[string]any{"expires_in": 3599}),
			Token{AccessToken: "new", RefreshToken: "old-rt", Expiry: start.Add(3599 * time.Second), Scopes: old}},
		{"empty scope string",
			(&oauth2.Token{AccessToken: "new", ExpiresIn: 60}).WithExtra(map[string]any{"scope": " "}),
			Token{AccessToken: "new", RefreshToken: "old-rt", Expiry: start.Add(time.Minute), Scopes: old}},
		{"rotated refresh token and narrowed scopes",
			(&oauth2.Token{AccessToken: "new", RefreshToken: "new-rt", ExpiresIn: 3600}).WithExtra(map[string]any{"scope": "b  c"}),
			Token{AccessToken: "new", RefreshToken: "new-rt", Expiry: start.Add(time.Hour), Scopes: []string{"b", "c"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := m.convert(tc.in, start, "old-rt", old)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("convert (-want +got):\n%s", diff)
			}
		})
	}
}
