package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
	"github.com/studylab/sync-all/internal/tokencrypt"
)

func keyring(t *testing.T, keys ...string) *tokencrypt.Keyring {
	t.Helper()
	k, err := tokencrypt.ParseKeys(strings.Join(keys, ","))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newKey(t *testing.T) string {
	t.Helper()
	k, err := tokencrypt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rawTokens(t *testing.T, st *store.Store, id int64) (access, refresh string) {
	t.Helper()
	if err := st.Pool().QueryRow(context.Background(), `SELECT coalesce(access_token, ''), coalesce(refresh_token, '') FROM fitbit_users WHERE id = $1`, id).Scan(&access, &refresh); err != nil {
		t.Fatal(err)
	}
	return access, refresh
}

func TestTokensEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	st := pgtest.New(t)
	keyA, keyB := newKey(t), newKey(t)
	st.Keys, st.RequireKey = keyring(t, keyA), true
	tok := auth.Token{AccessToken: "ya29.access-secret", RefreshToken: "1//0refresh-secret", Expiry: time.Now().Add(time.Hour).Truncate(time.Second)}
	u, err := st.CreateUser(ctx, store.NewUser{LegacyUserID: "ENC001", Status: store.StatusActive, Token: &tok})
	if err != nil {
		t.Fatal(err)
	}
	access, refresh := rawTokens(t, st, u.ID)
	for _, v := range []string{access, refresh} {
		if !strings.HasPrefix(v, tokencrypt.Prefix) || strings.Contains(v, "secret") {
			t.Fatalf("stored token is not ciphertext: %.30s...", v)
		}
	}
	got, err := st.FindUsers(ctx, []string{"ENC001"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Token.AccessToken != tok.AccessToken || got[0].Token.RefreshToken != tok.RefreshToken {
		t.Fatalf("tokens did not round-trip")
	}
	// Compare-and-swap still works on ciphertext (equal tokens encrypt differently).
	next := tok
	next.AccessToken = "ya29.second"
	if err := st.SaveToken(ctx, u.ID, tok.RefreshToken, next); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveToken(ctx, u.ID, "1//0stale", next); !errors.Is(err, store.ErrStaleToken) {
		t.Fatalf("stale CAS: %v", err)
	}

	// Rotation: key B is current and A stays readable, until rekey moves every row to B.
	st.Keys = keyring(t, keyB, keyA)
	if _, err := st.FindUsers(ctx, []string{"ENC001"}); err != nil {
		t.Fatalf("old key not readable after rotation: %v", err)
	}
	rewritten, current, err := st.RekeyTokens(ctx)
	if err != nil || rewritten != 1 || current != 0 {
		t.Fatalf("rekey: %d rewritten, %d current, %v", rewritten, current, err)
	}
	if rewritten, current, _ := st.RekeyTokens(ctx); rewritten != 0 || current != 1 {
		t.Fatalf("second rekey: %d rewritten, %d current", rewritten, current)
	}
	st.Keys = keyring(t, keyB)
	if got, err := st.FindUsers(ctx, []string{"ENC001"}); err != nil || got[0].Token.AccessToken != "ya29.second" {
		t.Fatalf("after rekey, key B alone: %v", err)
	}
	st.Keys = keyring(t, keyA)
	if _, err := st.FindUsers(ctx, []string{"ENC001"}); !errors.Is(err, tokencrypt.ErrUnknownKey) {
		t.Fatalf("a ring without the row's key: %v, want ErrUnknownKey", err)
	}
}

func TestPlaintextRowsAreReadAndEncryptedOnSave(t *testing.T) {
	ctx := context.Background()
	st := pgtest.New(t)
	tok := auth.Token{AccessToken: "plain-access", RefreshToken: "plain-refresh", Expiry: time.Now().Add(time.Hour)}
	u, err := st.CreateUser(ctx, store.NewUser{LegacyUserID: "PLN001", Status: store.StatusActive, Token: &tok})
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := rawTokens(t, st, u.ID); a != "plain-access" {
		t.Fatalf("without a key the token is stored as given, got %q", a)
	}
	st.Keys, st.RequireKey = keyring(t, newKey(t)), true
	got, err := st.FindUsers(ctx, []string{"PLN001"})
	if err != nil || got[0].Token.RefreshToken != "plain-refresh" {
		t.Fatalf("plaintext row unreadable with a key: %v", err)
	}
	next := tok
	next.AccessToken = "new-access"
	if err := st.SaveToken(ctx, u.ID, "plain-refresh", next); err != nil {
		t.Fatal(err)
	}
	if a, r := rawTokens(t, st, u.ID); !tokencrypt.IsEncrypted(a) || !tokencrypt.IsEncrypted(r) {
		t.Fatalf("plaintext row not encrypted on its next save")
	}

	// A store that requires a key refuses to write a token in the clear.
	noKey := pgtest.New(t)
	noKey.RequireKey = true
	_, err = noKey.CreateUser(ctx, store.NewUser{LegacyUserID: "PLN002", Status: store.StatusActive, Token: &tok})
	if !errors.Is(err, store.ErrNoTokenKey) {
		t.Fatalf("CreateUser without a key: %v, want ErrNoTokenKey", err)
	}
}
