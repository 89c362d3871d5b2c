package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

const (
	testAccess  = "ya29.ACCESS-secret-value"
	testRefresh = "1//REFRESH-secret-value"
)

func testToken() Token {
	return Token{
		AccessToken:  testAccess,
		RefreshToken: testRefresh,
		Expiry:       time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
		Scopes:       []string{RequiredScopes[0]},
	}
}

func assertNoSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, sec := range []string{testAccess, testRefresh, "ACCESS-secret", "REFRESH-secret"} {
		if strings.Contains(s, sec) {
			t.Errorf("%s leaks %q: %s", what, sec, s)
		}
	}
}

func TestTokenFmtRedacts(t *testing.T) {
	t.Parallel()
	tok := testToken()
	type holder struct { // a Token inside a caller's struct, as store.User has it
		ID    int64
		Token Token
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v"} {
		for name, arg := range map[string]any{
			"value": tok, "pointer": &tok, "nested": holder{1, tok}, "nested pointer": &holder{1, tok},
			"slice": []Token{tok}, "map": map[string]Token{"a": tok},
		} {
			got := fmt.Sprintf(format, arg)
			assertNoSecrets(t, format+" of "+name, got)
			if !strings.Contains(got, redacted) { // every verb shows the redacted form, never hex of the secret
				t.Errorf("%s of %s: %q lacks %q", format, name, got, redacted)
			}
		}
	}
	// The non-secret fields stay useful.
	if got := tok.String(); !strings.Contains(got, "2026-11-20T10:00:00Z") || !strings.Contains(got, RequiredScopes[0]) {
		t.Errorf("String() = %q, want expiry and scopes", got)
	}
	// An absent token shows as absent, not as redacted.
	if got := (Token{}).String(); strings.Contains(got, redacted) {
		t.Errorf("empty token String() = %q, want no %q", got, redacted)
	}
	// Errors wrapping a formatted token.
	err := fmt.Errorf("save %v: %w", tok, fmt.Errorf("inner %+v", &tok))
	assertNoSecrets(t, "error", err.Error())
}

func TestTokenSlogRedacts(t *testing.T) {
	t.Parallel()
	tok := testToken()
	for _, tc := range []struct {
		name string
		h    func(*bytes.Buffer) slog.Handler
	}{
		{"text", func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		}},
		{"json", func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(tc.h(&buf))
			log.Info("token", "tok", tok, "ptr", &tok, slog.Any("any", tok), slog.Group("g", "tok", tok))
			log.With("tok", tok).Debug("with")
			out := buf.String()
			assertNoSecrets(t, tc.name+" handler", out)
			if got := strings.Count(out, redacted); got != 10 {
				t.Errorf("%d redaction markers, want 10 (5 tokens x 2):\n%s", got, out)
			}
			if !strings.Contains(out, "expiry") {
				t.Errorf("no expiry attribute:\n%s", out)
			}
		})
	}
}

func TestTokenJSONRedacts(t *testing.T) {
	t.Parallel()
	tok := testToken()
	for name, v := range map[string]any{"value": tok, "pointer": &tok, "nested": struct{ T Token }{tok}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		assertNoSecrets(t, "json "+name, string(b))
		if !bytes.Contains(b, []byte(redacted)) || !bytes.Contains(b, []byte(`"expiry":"2026-11-20T10:00:00Z"`)) {
			t.Errorf("json %s = %s", name, b)
		}
	}
}
