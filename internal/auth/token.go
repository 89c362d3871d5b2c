package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// redacted replaces a secret wherever a Token is printed, logged or marshalled.
const redacted = "[redacted]"

// Token is one participant's OAuth token set as sync-all stores it.
//
// Every way of printing it (fmt verbs including %#v, slog, encoding/json) redacts
// both tokens, so that a stray log line or error message cannot leak them. Code
// that must persist the real values (the store) reads the fields directly.
type Token struct {
	AccessToken  string
	RefreshToken string
	Expiry       time.Time
	// Scopes are the scopes the participant actually granted, as reported by the
	// token endpoint's "scope" field (users can untick scopes on the consent screen).
	Scopes []string
}

// String implements fmt.Stringer with both tokens redacted.
func (t Token) String() string {
	return fmt.Sprintf("auth.Token{AccessToken:%s RefreshToken:%s Expiry:%s Scopes:%v}",
		mask(t.AccessToken), mask(t.RefreshToken), t.Expiry.UTC().Format(time.RFC3339), t.Scopes)
}

// GoString implements fmt.GoStringer (%#v) with both tokens redacted.
func (t Token) GoString() string {
	return fmt.Sprintf("auth.Token{AccessToken:%q, RefreshToken:%q, Expiry:%s, Scopes:%#v}",
		mask(t.AccessToken), mask(t.RefreshToken), t.Expiry.UTC().Format(time.RFC3339), t.Scopes)
}

// Format implements fmt.Formatter. Without it, verbs such as %x or %d would
// bypass String and print the raw fields; every verb therefore gets the
// redacted form (%#v the Go-syntax one).
func (t Token) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, t.GoString())
		return
	}
	fmt.Fprint(f, t.String())
}

// LogValue implements slog.LogValuer: a group with the tokens redacted, so
// handlers (text or JSON) never see the secrets.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_token", mask(t.AccessToken)),
		slog.String("refresh_token", mask(t.RefreshToken)),
		slog.Time("expiry", t.Expiry),
		slog.Any("scopes", t.Scopes),
	)
}

// MarshalJSON redacts both tokens. JSON is for diagnostics (for example a
// --json listing); nothing persists a Token as JSON, so the secrets are never
// needed in this form.
func (t Token) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		AccessToken  string    `json:"access_token"`
		RefreshToken string    `json:"refresh_token"`
		Expiry       time.Time `json:"expiry"`
		Scopes       []string  `json:"scopes"`
	}{mask(t.AccessToken), mask(t.RefreshToken), t.Expiry, t.Scopes})
}

// mask hides a secret but keeps "absent" visible, which is what debugging needs.
func mask(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// TokenSaver persists a refreshed token. It is declared here, at the consumer;
// *store.Store satisfies it.
type TokenSaver interface {
	// SaveToken stores tok for userID only if the stored refresh token still
	// equals prevRefreshToken (compare-and-swap), committed before it returns.
	// Any error (store.ErrStaleToken among them) means tok must not be used.
	SaveToken(ctx context.Context, userID int64, prevRefreshToken string, tok Token) error
}
