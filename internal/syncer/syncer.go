// Package syncer runs one sync pass: it claims participants, brings each one's token, time zone
// and device watermark up to date, fetches the local days that changed and upserts them, with
// bounded concurrency. A failing participant is a result, never a reason to stop the others.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/logging"
	"github.com/studylab/sync-all/internal/store"
)

// Options are one run's knobs (the `run` command's flags).
type Options struct {
	Holder         string        // lease holder: host, pid and run id, unique per process
	Concurrency    int           // participants in flight at once
	MinInterval    time.Duration // skip participants claimed less than this ago (unless named)
	UserTimeout    time.Duration // budget for one participant
	MaxCatchupDays int           // oldest local day fetched for a device that was offline
	TimezoneTTL    time.Duration // settings are re-read at most this often
	Date           *health.Date  // re-sync this local day only, whatever the watermark
	Users          []store.User  // named with --user; nil = every active participant
	DryRun         bool          // fetch and count, write no data
	ForceRefresh   bool          // refresh every token, whatever its expiry
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.UserTimeout <= 0 {
		o.UserTimeout = 2 * time.Minute
	}
	if o.MaxCatchupDays <= 0 {
		o.MaxCatchupDays = 7
	}
	if o.TimezoneTTL <= 0 {
		o.TimezoneTTL = 24 * time.Hour
	}
}

// lease is how long a claim protects a participant: the per-participant budget plus room for
// the final writes. A crashed run's claims free themselves after it.
func (o *Options) lease() time.Duration { return o.UserTimeout + time.Minute }

// Syncer holds a run's collaborators. All are required except Now.
type Syncer struct {
	Store  *store.Store
	Auth   *auth.Manager
	Health *health.Client
	Log    *slog.Logger
	Now    func() time.Time
}

// Outcome is what happened to one participant.
type Outcome string

// Outcomes. Skipped participants were not worked on by this run (synced moments ago, claimed by
// another host, or interrupted before their turn).
const (
	OutcomeSynced    Outcome = "synced"
	OutcomeUnchanged Outcome = "unchanged"
	OutcomeFailed    Outcome = "failed"
	OutcomeSkipped   Outcome = "skipped"
)

// Result is one run's totals.
type Result struct {
	UsersTotal     int
	UsersOK        int // synced or unchanged
	UsersUnchanged int
	UsersFailed    int
	UsersSkipped   int
	Reconsent      int // participants newly set to needs_reconsent
	RateLimited    int
	Counts         store.Counts
	Interrupted    bool           // a signal stopped the run before every participant had its turn
	Aborted        error          // a run-level failure (the database went away); exit 3
	FailuresBy     map[string]int // failed participants by reason
	Duration       time.Duration
}

// Run syncs every selected participant once. It returns an error only when it cannot start;
// everything that goes wrong afterwards is in the Result.
func (s *Syncer) Run(ctx context.Context, opts Options) (Result, error) {
	opts.defaults()
	now := s.now()
	res := Result{FailuresBy: map[string]int{}}

	var only []int64
	for _, u := range opts.Users {
		only = append(only, u.ID)
	}
	total, err := s.Store.CountActive(ctx, only)
	if err != nil {
		return res, fmt.Errorf("count participants: %w", err)
	}
	res.UsersTotal = total

	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = s.claimer(opts, only)
	)
	claimed := map[int64]bool{}
	record := func(id int64, r userResult) {
		mu.Lock()
		defer mu.Unlock()
		claimed[id] = true
		res.Counts.Add(r.counts)
		switch r.outcome {
		case OutcomeSynced:
			res.UsersOK++
		case OutcomeUnchanged:
			res.UsersOK++
			res.UsersUnchanged++
		case OutcomeFailed:
			res.UsersFailed++
			res.FailuresBy[r.reason]++
			if r.reason == ReasonDB && res.Aborted == nil {
				// Our own database failing is not one participant's problem: stop claiming
				// (exit 3) rather than fail every remaining participant the same way.
				res.Aborted = fmt.Errorf("database error: %w", r.err)
			}
			if r.reason == ReasonReconsent {
				res.Reconsent++
			}
			if r.reason == ReasonRateLimited {
				res.RateLimited++
			}
		}
	}
	abort := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if res.Aborted == nil {
			res.Aborted = err
		}
	}
	aborted := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return res.Aborted != nil
	}

	for range opts.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && !aborted() {
				u, err := next(ctx)
				if errors.Is(err, store.ErrNotFound) {
					return
				}
				if err != nil {
					if ctx.Err() == nil {
						abort(fmt.Errorf("claim next participant: %w", err))
					}
					return
				}
				record(u.ID, s.syncOne(ctx, u, opts))
			}
		})
	}
	wg.Wait()

	res.Interrupted = ctx.Err() != nil
	if !res.Interrupted && res.Aborted == nil {
		s.logUnclaimed(opts.Users, claimed)
	}
	res.UsersSkipped = max(res.UsersTotal-res.UsersOK-res.UsersFailed, 0)
	res.Duration = s.now().Sub(now)
	return res, nil
}

// logUnclaimed says why a participant named with --user had no turn: another run holds its
// lease, or it is not active (the command line warned about that one already).
func (s *Syncer) logUnclaimed(named []store.User, claimed map[int64]bool) {
	for _, u := range named {
		if claimed[u.ID] || u.Status != store.StatusActive {
			continue
		}
		s.Log.Warn(logging.MsgUserSkipped, logging.KeyUser, u.Handle(), logging.KeyDate, health.DateOf(s.now().UTC()).String(),
			logging.KeyReason, "leased", logging.KeyHint, "another run (on this or another host) is syncing this participant; try again in a minute")
	}
}

// claimer hands out participants one at a time. A real run claims them with a lease in
// Postgres, so several hosts share the work; a dry run writes nothing, not even a claim, and
// walks the list it was given or every active participant.
func (s *Syncer) claimer(opts Options, only []int64) func(context.Context) (store.User, error) {
	if !opts.DryRun {
		var (
			once sync.Once
			mark int64
			err  error
		)
		return func(ctx context.Context) (store.User, error) {
			// Participants claimed after the run began (by it or another run) are not claimed.
			once.Do(func() { mark, err = s.Store.ClaimMark(ctx) })
			if err != nil {
				return store.User{}, err
			}
			return s.Store.ClaimNext(ctx, store.ClaimRequest{Holder: opts.Holder, Lease: opts.lease(),
				MinInterval: opts.MinInterval, Only: only, ClaimedBefore: mark})
		}
	}
	var (
		mu    sync.Mutex
		users []store.User
		err   error
		once  sync.Once
	)
	// As a real claim would, a dry run passes over participants who are not active.
	for _, u := range opts.Users {
		if u.Status == store.StatusActive {
			users = append(users, u)
		}
	}
	return func(ctx context.Context) (store.User, error) {
		once.Do(func() {
			if opts.Users == nil {
				users, err = s.Store.FindUsers(ctx, nil)
			}
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			return store.User{}, err
		}
		if len(users) == 0 {
			return store.User{}, store.ErrNotFound
		}
		u := users[0]
		users = users[1:]
		return u, nil
	}
}

func (s *Syncer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// syncOne runs one participant and releases its claim whatever happened.
func (s *Syncer) syncOne(ctx context.Context, u store.User, opts Options) userResult {
	uctx, cancel := context.WithTimeout(ctx, opts.UserTimeout)
	defer cancel()
	r := s.syncUser(uctx, u, opts)
	log := s.Log.With(logging.KeyUser, u.Handle(), logging.KeyDate, r.date)

	// Writes that close the participant's turn must happen even when the run is being
	// interrupted: they are what makes the next run start from the right place.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer wcancel()
	out := store.Outcome{OK: r.outcome != OutcomeFailed, At: s.now()}
	if r.outcome == OutcomeFailed {
		out.Error = r.err.Error()
		if r.reason == ReasonReconsent {
			out.Status = store.StatusNeedsReconsent
		}
	}
	if r.outcome == OutcomeSynced && r.advanceTo.After(u.DeviceLastSyncAt) {
		out.DeviceLastSyncAt = r.advanceTo
	}
	if !opts.DryRun {
		if err := s.Store.Release(wctx, u.ID, opts.Holder, out); err != nil {
			log.Error(logging.MsgUserFailed, logging.KeyReason, ReasonDB, logging.KeyError, fmt.Errorf("record outcome: %w", err))
			if r.outcome != OutcomeFailed {
				r.outcome, r.reason, r.err = OutcomeFailed, ReasonDB, err
			}
			return r
		}
	}

	attrs := []any{logging.KeyRecordsInserted, r.counts.Inserted, logging.KeyRecordsUpdated, r.counts.Updated,
		logging.KeyRecordsUnchanged, r.counts.Unchanged}
	if opts.DryRun {
		attrs = append(attrs, logging.KeyDryRun, true)
	}
	switch r.outcome {
	case OutcomeSynced:
		log.Info(logging.MsgUserSynced, append(attrs, logging.KeyDays, r.days)...)
	case OutcomeUnchanged:
		log.Info(logging.MsgUserUnchanged)
	case OutcomeFailed:
		if r.reason == ReasonReconsent {
			log.Error(logging.MsgUserNeedsReconsent, logging.KeyReason, r.reason, logging.KeyError, r.err,
				logging.KeyHint, fmt.Sprintf("ask the participant to consent again: sync-all users authorize %s", u.Handle()))
			break
		}
		log.Error(logging.MsgUserFailed, append([]any{logging.KeyReason, r.reason, logging.KeyError, r.err}, attrs...)...)
	}
	return r
}

// userResult is the outcome of one participant's turn.
type userResult struct {
	outcome   Outcome
	reason    string
	err       error
	date      string // the participant's local "today" (or the --date), for the log
	days      int
	counts    store.Counts
	advanceTo time.Time
}

func failed(r userResult, reason string, err error) userResult {
	r.outcome, r.reason, r.err = OutcomeFailed, reason, err
	return r
}

// syncUser is the per-participant pipeline: token, zone, device watermark, days.
func (s *Syncer) syncUser(ctx context.Context, u store.User, opts Options) userResult {
	r := userResult{date: health.DateOf(s.now().UTC()).String()}
	saver := savingTokens{s.Store}
	tok, refreshed, err := s.Auth.Fresh(ctx, u.ID, u.Token, opts.ForceRefresh, saver)
	if err != nil {
		return failed(r, classify(err), fmt.Errorf("refresh token: %w", err))
	}
	if refreshed {
		s.Log.Debug(logging.MsgTokenRefreshed, logging.KeyUser, u.Handle())
	}
	sess := s.Health.Session(tok.AccessToken)

	// A 401 on a data call means the access token died early (revoked, or a clock far off):
	// refresh once and try again; the refresh itself says whether the grant is gone.
	retried := false
	call := func(step func() error) error {
		err := step()
		var he *health.Error
		if err == nil || retried || !errors.As(err, &he) || he.Status != 401 {
			return err
		}
		retried = true
		tok, _, err = s.Auth.Fresh(ctx, u.ID, tok, true, saver)
		if err != nil {
			return fmt.Errorf("refresh token after 401: %w", err)
		}
		sess = s.Health.Session(tok.AccessToken)
		return step()
	}

	loc, err := s.zone(ctx, &u, opts, call, &sess)
	if err != nil {
		return failed(r, classify(err), err)
	}
	now := s.now()
	today := health.DateOf(now.In(loc))
	r.date = today.String()

	var lastSync time.Time
	if err := call(func() (err error) { lastSync, err = sess.LastSync(ctx); return err }); err != nil {
		return failed(r, classify(err), fmt.Errorf("read paired devices: %w", err))
	}

	days, err := s.daysToFetch(ctx, u, opts, loc, today, lastSync)
	if err != nil {
		return failed(r, ReasonDB, err)
	}
	if len(days) == 0 {
		r.outcome = OutcomeUnchanged
		return r
	}
	for _, d := range days {
		if opts.Date != nil {
			r.date = d.String()
		}
		var day *health.Day
		if err := call(func() (err error) { day, err = sess.Day(ctx, d, loc); return err }); err != nil {
			r.date = d.String()
			return failed(r, classify(err), fmt.Errorf("fetch %s: %w", d, err))
		}
		// The day's transaction runs to its end even if the run is interrupted meanwhile.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		c, err := s.Store.UpsertDay(wctx, u.ID, loc, day, opts.DryRun)
		cancel()
		if err != nil {
			r.date = d.String()
			return failed(r, ReasonDB, fmt.Errorf("store %s: %w", d, err))
		}
		r.days++
		r.counts.Add(c)
		// One line per day when several were fetched, so `grep date=<day>` finds a caught-up
		// day; a single day is the user line's date already.
		level := slog.LevelDebug
		if len(days) > 1 {
			level = slog.LevelInfo
		}
		s.Log.Log(ctx, level, logging.MsgDaySynced, logging.KeyUser, u.Handle(), logging.KeyDate, d.String(),
			logging.KeyRecordsInserted, c.Inserted, logging.KeyRecordsUpdated, c.Updated,
			logging.KeyRecordsUnchanged, c.Unchanged)
		if ctx.Err() != nil && d != days[len(days)-1] {
			return failed(r, ReasonNetwork, fmt.Errorf("interrupted after %s: %w", d, ctx.Err()))
		}
	}
	r.outcome = OutcomeSynced
	if opts.Date == nil && !opts.DryRun {
		// Only a catch-up that reached today has stored everything the device had synced.
		r.advanceTo = lastSync
	}
	return r
}

// zone returns the participant's time zone, from the cache when fresh, else from settings.
func (s *Syncer) zone(ctx context.Context, u *store.User, opts Options, call func(func() error) error, sess **health.Session) (*time.Location, error) {
	tz := u.Timezone
	if tz == "" || s.now().Sub(u.TimezoneCheckedAt) >= opts.TimezoneTTL {
		var st health.Settings
		if err := call(func() (err error) { st, err = (*sess).Settings(ctx); return err }); err != nil {
			return nil, fmt.Errorf("read settings: %w", err)
		}
		if _, err := time.LoadLocation(st.TimeZone); err != nil || st.TimeZone == "" {
			return nil, &health.Error{Kind: health.KindMalformed, Op: "settings", Err: fmt.Errorf("time zone %q is not an IANA zone", st.TimeZone)}
		}
		if st.TimeZone != u.Timezone && u.Timezone != "" {
			s.Log.Info(logging.MsgTimezoneChanged, logging.KeyUser, u.Handle(), "from", u.Timezone, "to", st.TimeZone)
		}
		tz = st.TimeZone
		if !opts.DryRun {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := s.Store.SetTimezone(wctx, u.ID, tz, s.now()); err != nil {
				return nil, dbError{fmt.Errorf("save time zone: %w", err)}
			}
		}
		u.Timezone = tz
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, &health.Error{Kind: health.KindMalformed, Op: "settings", Err: fmt.Errorf("stored time zone %q: %w", tz, err)}
	}
	return loc, nil
}

// daysToFetch decides which local days to fetch: none when the device has not synced since the
// watermark and today's summary is stored; else the watermark's day through today, at most
// MaxCatchupDays of them.
func (s *Syncer) daysToFetch(ctx context.Context, u store.User, opts Options, loc *time.Location, today health.Date, lastSync time.Time) ([]health.Date, error) {
	if opts.Date != nil {
		return []health.Date{*opts.Date}, nil
	}
	if !lastSync.After(u.DeviceLastSyncAt) {
		ok, err := s.Store.HasSummary(ctx, u.ID, today)
		if err != nil {
			return nil, fmt.Errorf("look up today's summary: %w", err)
		}
		if ok {
			return nil, nil
		}
	}
	return catchupDays(u.DeviceLastSyncAt, loc, today, opts.MaxCatchupDays), nil
}

// catchupDays lists the local days from the watermark's day through today, oldest first: the
// watermark's day is refetched because its last windows may have synced after it, and so are
// the days a device spent offline. At most maxDays (the newest ones); a first sync (no
// watermark) fetches today only.
func catchupDays(watermark time.Time, loc *time.Location, today health.Date, maxDays int) []health.Date {
	first := today
	if !watermark.IsZero() {
		first = health.DateOf(watermark.In(loc))
	}
	if oldest := today.AddDays(-(maxDays - 1)); first.Before(oldest) {
		first = oldest
	}
	if first.After(today) { // a watermark in the future (clock skew): fetch today
		first = today
	}
	var days []health.Date
	for d := first; !d.After(today); d = d.AddDays(1) {
		days = append(days, d)
	}
	return days
}

// savingTokens saves refreshed tokens with a context that a signal cannot cancel: once Google
// has issued a token, losing it on the way to the database is the one thing we must not do.
type savingTokens struct{ st *store.Store }

func (t savingTokens) SaveToken(ctx context.Context, userID int64, prev string, tok auth.Token) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := t.st.SaveToken(wctx, userID, prev, tok); err != nil {
		return dbError{err}
	}
	return nil
}
