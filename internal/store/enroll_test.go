package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

func TestListUsersByStatus(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	a := newUser(t, st, "AAAAAA")
	b := newUser(t, st, "BBBBBB")
	if _, err := st.ImportPending(ctx, "CCCCCC", "pending one"); err != nil {
		t.Fatal(err)
	}
	if err := st.SetStatus(ctx, b.ID, store.StatusDisabled, ""); err != nil {
		t.Fatal(err)
	}
	for status, want := range map[string][]string{
		"":                         {"AAAAAA", "BBBBBB", "CCCCCC"},
		store.StatusActive:         {"AAAAAA"},
		store.StatusDisabled:       {"BBBBBB"},
		store.StatusPendingConsent: {"CCCCCC"},
		store.StatusNeedsReconsent: nil,
	} {
		got, err := st.ListUsers(ctx, status)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, handles(got)); diff != "" {
			t.Errorf("ListUsers(%q) (-want +got):\n%s", status, diff)
		}
	}
	all, _ := st.ListUsers(ctx, "")
	if all[0].Token.RefreshToken != a.Token.RefreshToken {
		t.Errorf("ListUsers does not carry the token the syncer needs")
	}
}

func TestActivateUserKeepsIDAndHistory(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	if _, err := st.ImportPending(ctx, "CRBM3W", "migrated"); err != nil {
		t.Fatal(err)
	}
	pending, err := st.FindUsers(ctx, []string{"CRBM3W"})
	if err != nil {
		t.Fatal(err)
	}
	u := pending[0]
	// A failure streak from before the re-consent.
	if err := st.SetStatus(ctx, u.ID, store.StatusNeedsReconsent, "invalid_grant"); err != nil {
		t.Fatal(err)
	}
	tok := auth.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC), Scopes: auth.RequiredScopes}
	checked := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	got, err := st.ActivateUser(ctx, store.Activation{UserID: u.ID, LegacyUserID: "CRBM3W", HealthUserID: "h1",
		Token: tok, Timezone: "Asia/Seoul", CheckedAt: checked})
	if err != nil {
		t.Fatal(err)
	}
	want := store.User{ID: u.ID, LegacyUserID: "CRBM3W", HealthUserID: "h1", Label: "migrated", Status: store.StatusActive,
		Token: tok, Timezone: "Asia/Seoul", TimezoneCheckedAt: checked, LastErrorAt: got.LastErrorAt}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("activated (-want +got):\n%s", diff)
	}

	// A new participant; then one whose health id is taken.
	n, err := st.ActivateUser(ctx, store.Activation{LegacyUserID: "NEWONE", HealthUserID: "h2", Label: "new", Token: tok, Timezone: "UTC"})
	if err != nil {
		t.Fatal(err)
	}
	if n.ID == u.ID || n.Status != store.StatusActive || n.Label != "new" {
		t.Errorf("created %+v", n)
	}
	_, err = st.ActivateUser(ctx, store.Activation{LegacyUserID: "OTHER1", HealthUserID: "h1", Token: tok})
	if !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("health id of another participant: err = %v, want ErrDuplicate", err)
	}
	_, err = st.ActivateUser(ctx, store.Activation{UserID: 9999, HealthUserID: "h9", Token: tok})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: err = %v, want ErrNotFound", err)
	}
}

func TestImportIsIdempotentAndNeverDowngrades(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	active := newUser(t, st, "AAAAAA")

	steps := []struct {
		legacy, label string
		want          store.Change
	}{
		{"PPPPPP", "first", store.Created},
		{"PPPPPP", "first", store.Unchanged},
		{"PPPPPP", "", store.Unchanged}, // no label given keeps it
		{"PPPPPP", "second", store.Updated},
		{"AAAAAA", "participant AAAAAA", store.Unchanged},
		{"AAAAAA", "relabelled", store.Updated},
	}
	for _, s := range steps {
		got, err := st.ImportPending(ctx, s.legacy, s.label)
		if err != nil || got != s.want {
			t.Errorf("ImportPending(%s, %q) = %v, %v; want %v", s.legacy, s.label, got, err, s.want)
		}
	}
	us, err := st.FindUsers(ctx, []string{"AAAAAA", "PPPPPP"})
	if err != nil {
		t.Fatal(err)
	}
	if a := us[0]; a.Status != store.StatusActive || a.Token.RefreshToken != active.Token.RefreshToken || a.Label != "relabelled" {
		t.Errorf("active participant after a pending import: %+v", a)
	}
	if p := us[1]; p.Status != store.StatusPendingConsent || p.Label != "second" {
		t.Errorf("pending participant: %+v", p)
	}

	tok := auth.Token{AccessToken: "at2", RefreshToken: "rt2", Scopes: auth.RequiredScopes}
	got, err := st.ImportActive(ctx, store.Activation{LegacyUserID: "PPPPPP", HealthUserID: "hp", Token: tok, Timezone: "UTC"})
	if err != nil || got != store.Updated {
		t.Fatalf("ImportActive on a pending participant = %v, %v", got, err)
	}
	got, err = st.ImportActive(ctx, store.Activation{LegacyUserID: "NNNNNN", HealthUserID: "hn", Label: "n", Token: tok})
	if err != nil || got != store.Created {
		t.Fatalf("ImportActive new = %v, %v", got, err)
	}
	if _, err := st.ImportActive(ctx, store.Activation{LegacyUserID: "XXXXXX", HealthUserID: "hp", Token: tok}); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("health id of another participant: err = %v, want ErrDuplicate", err)
	}
	p, _ := st.FindUsers(ctx, []string{"PPPPPP"})
	if p[0].Status != store.StatusActive || p[0].HealthUserID != "hp" || p[0].Label != "second" || p[0].Token.RefreshToken != "rt2" {
		t.Errorf("imported active: %+v", p[0])
	}
	if err := st.SetStatus(ctx, p[0].ID, store.StatusDisabled, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportActive(ctx, store.Activation{LegacyUserID: "PPPPPP", HealthUserID: "hp", Token: tok}); !errors.Is(err, store.ErrDisabled) {
		t.Errorf("disabled participant: err = %v, want ErrDisabled", err)
	}
	if _, err := st.FindUsers(ctx, []string{"XXXXXX"}); err == nil {
		t.Errorf("a refused import stored a row")
	}
}

func TestEnableClearAndDelete(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	a := newUser(t, st, "AAAAAA")
	b := newUser(t, st, "BBBBBB")

	if _, err := st.EnableUser(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("enable an active participant: err = %v, want ErrNotFound", err)
	}
	if err := st.SetStatus(ctx, a.ID, store.StatusDisabled, ""); err != nil {
		t.Fatal(err)
	}
	if s, err := st.EnableUser(ctx, a.ID); err != nil || s != store.StatusActive {
		t.Errorf("enable with a token = %q, %v; want active", s, err)
	}

	if err := st.ClearTokens(ctx, a.ID, store.StatusNeedsReconsent, "revoked by the operator"); err != nil {
		t.Fatal(err)
	}
	got, _ := st.FindUsers(ctx, []string{"AAAAAA"})
	if u := got[0]; u.Token.AccessToken != "" || u.Token.RefreshToken != "" || !u.Token.Expiry.IsZero() || u.Token.Scopes != nil ||
		u.Status != store.StatusNeedsReconsent || u.LastError != "revoked by the operator" {
		t.Errorf("after ClearTokens: %+v", u)
	}
	// A run that started from the old token cannot put it back.
	if err := st.SaveToken(ctx, a.ID, a.Token.RefreshToken, auth.Token{AccessToken: "x", RefreshToken: "y"}); !errors.Is(err, store.ErrStaleToken) {
		t.Errorf("SaveToken after ClearTokens: err = %v, want ErrStaleToken", err)
	}
	if err := st.SetStatus(ctx, a.ID, store.StatusDisabled, ""); err != nil {
		t.Fatal(err)
	}
	if s, err := st.EnableUser(ctx, a.ID); err != nil || s != store.StatusPendingConsent {
		t.Errorf("enable without a token = %q, %v; want pending_consent", s, err)
	}

	// Delete cascades to every data table and leaves the other participant alone.
	loc, _ := time.LoadLocation("America/New_York")
	date := health.Date{Year: 2026, Month: 11, Day: 20}
	for _, u := range []store.User{a, b} {
		if _, err := st.UpsertDay(ctx, u.ID, loc, fullDay(date, loc, 1), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.DeleteUser(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteUser(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
	for _, table := range []string{"fitbit_users", "daily_summaries", "intraday_heart_rate", "intraday_steps", "intraday_calories"} {
		col := "user_id"
		if table == "fitbit_users" {
			col = "id"
		}
		var gone, kept int
		if err := st.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE `+col+` = $1), count(*) FILTER (WHERE `+col+` = $2) FROM `+table, a.ID, b.ID).Scan(&gone, &kept); err != nil {
			t.Fatal(err)
		}
		if gone != 0 || kept == 0 {
			t.Errorf("%s: %d rows of the deleted participant, %d of the other", table, gone, kept)
		}
	}
}
