package store_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

func TestCreateAndFindUsers(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	a := newUser(t, st, "AAAAAA")
	b := newUser(t, st, "BBBBBB")
	pending, err := st.CreateUser(ctx, store.NewUser{HealthUserID: "h-only", Label: "no legacy id"})
	if err != nil {
		t.Fatal(err)
	}
	if pending.Status != store.StatusPendingConsent || pending.LegacyUserID != "" ||
		pending.Token.AccessToken != "" || pending.Token.RefreshToken != "" || pending.Token.Scopes != nil {
		t.Errorf("pending user = %+v", pending)
	}
	if pending.Handle() != "h-only" || a.Handle() != "AAAAAA" {
		t.Errorf("handles %q, %q", pending.Handle(), a.Handle())
	}

	want := store.User{ID: a.ID, LegacyUserID: "AAAAAA", HealthUserID: "h-AAAAAA", Label: "participant AAAAAA",
		Status: store.StatusActive, Timezone: "America/New_York",
		Token: auth.Token{AccessToken: "at-AAAAAA", RefreshToken: "rt-AAAAAA",
			Expiry: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Scopes: []string{"a", "b"}}}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("created user (-want +got):\n%s", diff)
	}

	// All active, by id order; the pending user is not active.
	all, err := st.FindUsers(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID {
		t.Errorf("FindUsers(nil) = %v", handles(all))
	}
	// By legacy id, health id and numeric id, in the order asked, without duplicates.
	got, err := st.FindUsers(ctx, []string{"h-BBBBBB", fmt.Sprint(pending.ID), "AAAAAA", "BBBBBB"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"BBBBBB", "h-only", "AAAAAA"}, handles(got)); diff != "" {
		t.Errorf("FindUsers by ids (-want +got):\n%s", diff)
	}
	_, err = st.FindUsers(ctx, []string{"AAAAAA", "NOPE01", "424242"})
	var unknown *store.UnknownUsersError
	if !errors.As(err, &unknown) || !cmp.Equal(unknown.IDs, []string{"NOPE01", "424242"}) {
		t.Errorf("FindUsers unknown: err = %v", err)
	}

	if _, err := st.CreateUser(ctx, store.NewUser{LegacyUserID: "AAAAAA"}); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("duplicate legacy id: err = %v, want ErrDuplicate", err)
	}
	if _, err := st.CreateUser(ctx, store.NewUser{LegacyUserID: "CCCCCC", Status: "paused"}); err == nil {
		t.Error("invalid status accepted")
	}
}

func handles(us []store.User) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Handle())
	}
	return out
}

func TestSetStatusAndTimezone(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	u := newUser(t, st, "STATUS")
	if err := st.SetStatus(ctx, u.ID, store.StatusNeedsReconsent, "invalid_grant"); err != nil {
		t.Fatal(err)
	}
	checked := time.Date(2026, 11, 12, 8, 0, 0, 0, time.UTC)
	if err := st.SetTimezone(ctx, u.ID, "Europe/Berlin", checked); err != nil {
		t.Fatal(err)
	}
	got, err := st.FindUsers(ctx, []string{"STATUS"})
	if err != nil {
		t.Fatal(err)
	}
	g := got[0]
	if g.Status != store.StatusNeedsReconsent || g.LastError != "invalid_grant" || g.LastErrorAt.IsZero() ||
		g.Timezone != "Europe/Berlin" || !g.TimezoneCheckedAt.Equal(checked) {
		t.Errorf("after SetStatus/SetTimezone: %+v", g)
	}
	if err := st.SetStatus(ctx, u.ID, "bogus", ""); err == nil {
		t.Error("bogus status accepted")
	}
	if err := st.SetStatus(ctx, 987654, store.StatusDisabled, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if err := st.SetTimezone(ctx, 987654, "UTC", checked); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
}

func TestSaveTokenCompareAndSwap(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	u := newUser(t, st, "TOKENS")
	tok2 := auth.Token{AccessToken: "at-2", RefreshToken: "rt-2", Expiry: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), Scopes: []string{"x"}}
	if err := st.SaveToken(ctx, u.ID, "rt-TOKENS", tok2); err != nil {
		t.Fatal(err)
	}
	// A stale previous refresh token changes nothing and says so.
	stale := auth.Token{AccessToken: "at-3", RefreshToken: "rt-3", Expiry: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := st.SaveToken(ctx, u.ID, "rt-TOKENS", stale); !errors.Is(err, store.ErrStaleToken) {
		t.Fatalf("stale save: err = %v, want ErrStaleToken", err)
	}
	got, err := st.FindUsers(ctx, []string{"TOKENS"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok2, got[0].Token); diff != "" {
		t.Errorf("token after stale save (-want +got):\n%s", diff)
	}
	if err := st.SaveToken(ctx, 123456, "x", tok2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if err := st.SaveToken(ctx, u.ID, "rt-2", auth.Token{AccessToken: "only"}); err == nil {
		t.Error("token without refresh token accepted")
	}

	// Many savers racing from the same previous token: exactly one wins.
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.SaveToken(ctx, u.ID, "rt-2", auth.Token{AccessToken: fmt.Sprint("at-r", i), RefreshToken: fmt.Sprint("rt-r", i)})
		}()
	}
	wg.Wait()
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
		case !errors.Is(err, store.ErrStaleToken):
			t.Errorf("saver %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Errorf("%d concurrent savers won, want exactly 1", winners)
	}
}

// Concurrent claimers, from separate pools as separate processes would be, never get the same
// user, and together claim every active user.
func TestClaimNextConcurrent(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	const users, stores, perStore = 60, 3, 4
	var claimers []*store.Store
	for range stores {
		st, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		claimers = append(claimers, st)
	}
	want := map[int64]bool{}
	for i := range users {
		want[newUser(t, claimers[0], legacyID(i)).ID] = true
	}
	// Not claimable: not active.
	for _, status := range []string{store.StatusPendingConsent, store.StatusNeedsReconsent, store.StatusDisabled} {
		if _, err := claimers[0].CreateUser(ctx, store.NewUser{LegacyUserID: "X" + status[:5], Status: status}); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	claimed := map[int64]int{}
	var wg sync.WaitGroup
	for s, st := range claimers {
		for w := range perStore {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					u, err := st.ClaimNext(ctx, store.ClaimRequest{Holder: fmt.Sprintf("s%d-w%d", s, w), Lease: time.Hour})
					if errors.Is(err, store.ErrNotFound) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					claimed[u.ID]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	var dup, extra []int64
	for id, n := range claimed {
		if n > 1 {
			dup = append(dup, id)
		}
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if len(dup) > 0 || len(extra) > 0 || len(claimed) != users {
		t.Errorf("claimed %d distinct users (want %d); claimed twice: %v; not claimable but claimed: %v",
			len(claimed), users, dup, extra)
	}
}

func TestClaimLeaseAndInterval(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	clock := &manualClock{t: time.Date(2026, 11, 12, 10, 0, 0, 0, time.UTC)}
	st.Now = clock.Now
	a := newUser(t, st, "LEASEA")
	b := newUser(t, st, "LEASEB")
	req := store.ClaimRequest{Holder: "run-1", Lease: 10 * time.Minute, MinInterval: time.Hour}

	// Never-claimed users first, in id order.
	first, err := st.ClaimNext(ctx, req)
	if err != nil || first.ID != a.ID {
		t.Fatalf("first claim = %v, %v; want %s", first.Handle(), err, a.Handle())
	}
	second, err := st.ClaimNext(ctx, req)
	if err != nil || second.ID != b.ID {
		t.Fatalf("second claim = %v, %v; want %s", second.Handle(), err, b.Handle())
	}
	if _, err := st.ClaimNext(ctx, req); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("third claim: err = %v, want ErrNotFound (both leased)", err)
	}

	// The run "crashes": nothing is released. Before the lease ends nobody gets them ...
	clock.Advance(9 * time.Minute)
	crashReq := store.ClaimRequest{Holder: "run-2", Lease: 10 * time.Minute}
	if _, err := st.ClaimNext(ctx, crashReq); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim during lease: %v", err)
	}
	// ... after it, the oldest claim is free again.
	clock.Advance(2 * time.Minute)
	again, err := st.ClaimNext(ctx, crashReq)
	if err != nil || again.ID != a.ID {
		t.Fatalf("claim after lease expiry = %v, %v; want %s", again.Handle(), err, a.Handle())
	}

	// Release by a holder that lost the lease records the outcome but does not free run-2's claim.
	at := clock.Now()
	if err := st.Release(ctx, a.ID, "run-1", store.Outcome{OK: true, At: at, DeviceLastSyncAt: at.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if u, err := st.ClaimNext(ctx, store.ClaimRequest{Holder: "run-3", Lease: time.Minute, Only: []int64{a.ID}}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("user held by run-2 was claimed by run-3: %v %v", u.Handle(), err)
	}
	// run-2 releases: the lease clears, and MinInterval keeps a run from picking it up at once,
	// unless it is asked for by id.
	if err := st.Release(ctx, a.ID, "run-2", store.Outcome{OK: false, Error: "boom", At: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if u, err := st.ClaimNext(ctx, store.ClaimRequest{Holder: "run-4", Lease: time.Minute, MinInterval: time.Hour}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MinInterval ignored: claimed %v %v", u.Handle(), err)
	}
	only, err := st.ClaimNext(ctx, store.ClaimRequest{Holder: "run-4", Lease: time.Minute, MinInterval: time.Hour, Only: []int64{a.ID}})
	if err != nil || only.ID != a.ID {
		t.Fatalf("Only claim = %v, %v", only.Handle(), err)
	}
	if only.LastError != "boom" || only.ConsecutiveFailures != 1 || !only.LastSuccessAt.Equal(at) ||
		!only.DeviceLastSyncAt.Equal(at.Add(-time.Hour)) {
		t.Errorf("outcomes not recorded: %+v", only)
	}

	// A successful release clears the error, resets failures, moves device sync only forward,
	// and can set a status (which makes the user unclaimable).
	later := clock.Now()
	if err := st.Release(ctx, a.ID, "run-4", store.Outcome{OK: true, At: later, DeviceLastSyncAt: at.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := st.Release(ctx, b.ID, "run-1", store.Outcome{OK: false, Error: "reconsent", Status: store.StatusNeedsReconsent, At: later}); err != nil {
		t.Fatal(err)
	}
	us, err := st.FindUsers(ctx, []string{"LEASEA", "LEASEB"})
	if err != nil {
		t.Fatal(err)
	}
	if g := us[0]; g.LastError != "" || g.ConsecutiveFailures != 0 || !g.LastSuccessAt.Equal(later) ||
		!g.DeviceLastSyncAt.Equal(at.Add(-time.Hour)) {
		t.Errorf("after OK release: %+v", g)
	}
	if g := us[1]; g.Status != store.StatusNeedsReconsent || g.ConsecutiveFailures != 1 {
		t.Errorf("after reconsent release: %+v", g)
	}
	clock.Advance(24 * time.Hour)
	var ids []int64
	for {
		u, err := st.ClaimNext(ctx, store.ClaimRequest{Holder: "run-5", Lease: time.Minute})
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if !cmp.Equal(ids, []int64{a.ID}) {
		t.Errorf("claimable after a day: %v, want only %d (the other needs re-consent)", ids, a.ID)
	}
	if err := st.Release(ctx, 55555, "x", store.Outcome{OK: true}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("release unknown user: %v", err)
	}
}

func TestCountActiveAndStatus(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	a := newUser(t, st, "CNTAAA")
	newUser(t, st, "CNTBBB")
	c := newUser(t, st, "CNTCCC")
	if err := st.SetStatus(ctx, c.ID, store.StatusNeedsReconsent, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		only []int64
		want int
	}{{nil, 2}, {[]int64{a.ID, c.ID}, 1}, {[]int64{}, 0}} {
		if n, err := st.CountActive(ctx, tc.only); err != nil || n != tc.want {
			t.Errorf("CountActive(%v) = %d, %v; want %d", tc.only, n, err, tc.want)
		}
	}
	if n, err := st.CountStatus(ctx, store.StatusNeedsReconsent); err != nil || n != 1 {
		t.Errorf("CountStatus(needs_reconsent) = %d, %v; want 1", n, err)
	}
}

// A run gets each participant once, even with MinInterval 0 and the participant named in Only,
// and does not take back one that another run claimed after it began (two runs with MinInterval 0
// would otherwise pass participants back and forth for ever); a later run gets them again.
func TestClaimOncePerRun(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	a := newUser(t, st, "ONCEA")
	b := newUser(t, st, "ONCEB")
	c := newUser(t, st, "ONCEC")
	mark := func() int64 {
		t.Helper()
		m, err := st.ClaimMark(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	claim := func(r store.ClaimRequest) (store.User, error) {
		t.Helper()
		u, err := st.ClaimNext(ctx, r)
		if err == nil {
			if err := st.Release(ctx, u.ID, r.Holder, store.Outcome{OK: true}); err != nil {
				t.Fatal(err)
			}
		}
		return u, err
	}
	run1 := store.ClaimRequest{Holder: "run-1", Lease: time.Minute, ClaimedBefore: mark()}
	run2 := store.ClaimRequest{Holder: "run-2", Lease: time.Minute, ClaimedBefore: mark()}
	if u, err := claim(run1); err != nil || u.ID != a.ID {
		t.Fatalf("run-1 first claim = %v, %v; want %s", u.Handle(), err, a.Handle())
	}
	if u, err := claim(run2); err != nil || u.ID != b.ID {
		t.Fatalf("run-2 claim = %v, %v; want %s (not %s, which run-1 had)", u.Handle(), err, b.Handle(), a.Handle())
	}
	if u, err := claim(run1); err != nil || u.ID != c.ID {
		t.Fatalf("run-1 second claim = %v, %v; want %s", u.Handle(), err, c.Handle())
	}
	for _, r := range []store.ClaimRequest{run1, run2} {
		if u, err := claim(r); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s claimed %s again: %v", r.Holder, u.Handle(), err)
		}
		named := r
		named.Only = []int64{a.ID, b.ID, c.ID}
		if u, err := claim(named); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s claimed %s again (named): %v", r.Holder, u.Handle(), err)
		}
	}
	// Without a mark (backfill's claims) and for a run that starts now, released users are claimable.
	noMark := run1
	noMark.ClaimedBefore = 0
	if u, err := claim(noMark); err != nil || u.ID != a.ID {
		t.Fatalf("claim without a mark = %v, %v; want %s", u.Handle(), err, a.Handle())
	}
	run3 := store.ClaimRequest{Holder: "run-3", Lease: time.Minute, ClaimedBefore: mark()}
	if u, err := claim(run3); err != nil || u.ID != b.ID {
		t.Fatalf("run-3 claim = %v, %v; want %s", u.Handle(), err, b.Handle())
	}
}
