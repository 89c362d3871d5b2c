package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/studylab/sync-all/internal/healthsim"
)

func TestParseFlags(t *testing.T) {
	env := func(k string) string {
		if k == "HEALTHSIM_CLIENT_SECRET" {
			return "from-env"
		}
		return ""
	}
	c, err := parseFlags([]string{"--addr", "127.0.0.1:0", "--participants", "5", "--seed", "9", "--rotate-refresh-tokens",
		"--page-size", "100", "--speed", "60", "--start", "2026-12-04T12:00:00Z", "--grant-lifetime", "168h", "--empty-pages"}, io.Discard, env)
	if err != nil {
		t.Fatal(err)
	}
	want := config{addr: "127.0.0.1:0", speed: 60, start: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), shutdown: 5 * time.Second,
		opts: healthsim.Options{Participants: 5, Seed: 9, RotateRefreshTokens: true, PageSize: 100, EmptyPages: true,
			GrantLifetime: 168 * time.Hour, AccessTokenLifetime: time.Hour, RateLimitPerMinute: 300, ClientID: "sim-client", ClientSecret: "from-env"}}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(config{}), cmpopts.IgnoreFields(healthsim.Options{}, "Now")); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	for _, bad := range [][]string{{"--speed", "0"}, {"--participants", "0"}, {"--start", "yesterday"}, {"extra"}, {"--nope"}} {
		if _, err := parseFlags(bad, io.Discard, env); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestClockSpeed(t *testing.T) {
	start := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	now := clock(start, 3600)
	if got := now(); got.Before(start) || got.After(start.Add(time.Hour)) {
		t.Errorf("simulated now %v right after start", got)
	}
}

// syncBuffer is written by the server goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeLogsWithoutSecretsAndStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	c, err := parseFlags([]string{"--participants", "3"}, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c, ln, &stdout, &stderr) }()
	base := "http://" + ln.Addr().String()

	// A consent and a refresh through the logging middleware.
	verifier := strings.Repeat("v", 43)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {"sim-client"}, "redirect_uri": {"http://127.0.0.1:9/cb"}, "response_type": {"code"},
		"scope": {strings.Join(healthsim.RequiredScopes(), " ")}, "access_type": {"offline"}, "state": {"xyz"},
		"code_challenge": {s256(verifier)}, "code_challenge_method": {"S256"}, "login_hint": {"CRBM3W"}}
	resp, err := client.Get(base + "/o/oauth2/v2/auth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	resp, err = http.PostForm(base+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {"http://127.0.0.1:9/cb"}, "client_id": {"sim-client"}, "client_secret": {"sim-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || code == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	out, logs := stdout.String(), stderr.String()
	if !strings.Contains(out, "healthsim listening on "+base) || !strings.Contains(out, "participant CRBM3W") || !strings.Contains(out, "healthsim stopped") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(logs, "path=/o/oauth2/v2/auth status=302") || !strings.Contains(logs, "path=/token status=200") {
		t.Errorf("request log:\n%s", logs)
	}
	for _, secret := range []string{code, "sim-secret", verifier, "xyz"} {
		if strings.Contains(out+logs, secret) {
			t.Errorf("output contains a secret of length %d", len(secret))
		}
	}
	if strings.Contains(out+logs, "ya29.") || strings.Contains(out+logs, "1//0") {
		t.Errorf("output contains a token")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--speed", "-1"}, io.Discard, &stderr, func(string) string { return "" }); code != 2 {
		t.Errorf("exit code %d, stderr %s", code, stderr.String())
	}
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
