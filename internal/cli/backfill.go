package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/store"
)

// BackfillOptions are the `backfill` command's flags.
type BackfillOptions struct {
	Config      Config
	ID          string
	All         bool
	From, To    string
	Force       bool
	MaxRPS      float64
	Concurrency int
}

const (
	// quotaRPS is the API's per-participant quota (300 requests a minute) as a rate; a higher
	// --max-rps gets a warning. The default leaves a fifth of it to the runs going on meanwhile.
	quotaRPS      = 5.0
	defaultBfRPS  = 4.0
	backfillLease = 5 * time.Minute
	// claimWait is how long backfill waits for a run that holds the participant's lease; a run
	// holds it for seconds, a stuck one until its lease expires (a few minutes).
	claimWait = 4 * time.Minute
	// maxRateLimitWaits bounds how often one day waits out a 429 before the participant fails.
	maxRateLimitWaits = 3
)

// NewCmdBackfill builds `sync-all backfill`.
func NewCmdBackfill(e *Env, runF func(*BackfillOptions) error) *cobra.Command {
	o := &BackfillOptions{}
	cmd := &cobra.Command{
		Use:   "backfill [ID | --all] --from DATE [--to DATE]",
		Short: "Fetch past local days for one participant (or all active ones)",
		Long: `backfill fetches the participant's local days from --from through --to (default: yesterday in
the participant's time zone), oldest first, and stores each day in one transaction, exactly as
"run" stores today. Rows that did not change are not rewritten.

It is resumable: a day whose summary was stored more than a day after that day ended is complete
and is not fetched again (--force fetches it anyway), so after an interruption or a failure the
same command continues where it stopped. Requests are paced per participant under the API's
quota (300 a minute), and the participant's lease is held while it works, so a concurrent run
never refreshes the same token. A progress line is shown when stderr is a terminal.

Exit codes: 0 every day stored; 1 a participant failed (the days before the failure are stored);
2 usage or configuration error; 3 database unreachable.`,
		Example: `  sync-all backfill CRBM3W --from 2026-11-01
  sync-all backfill CRBM3W --from 2026-11-20 --to 2026-11-29
  sync-all backfill --all --from 2026-11-01 --to 2026-11-30
  sync-all backfill CRBM3W --from 2026-11-25 --force`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.ID = args[0]
			}
			if runF != nil {
				return runF(o)
			}
			return o.run(cmd.Context(), e)
		},
	}
	fs := cmd.Flags()
	o.Config.configFlags(fs, true)
	fs.BoolVar(&o.All, "all", false, "every active participant")
	fs.StringVar(&o.From, "from", "", "first local day to fetch (YYYY-MM-DD); required")
	fs.StringVar(&o.To, "to", "", "last local day to fetch (YYYY-MM-DD; default yesterday in the participant's time zone)")
	fs.BoolVar(&o.Force, "force", false, "also fetch days that are already complete")
	fs.Float64Var(&o.MaxRPS, "max-rps", defaultBfRPS, "Google Health API requests per second per participant (the API's quota is 5)")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "participants backfilled at once with --all")
	return cmd
}

// validate checks the flags that need no I/O.
func (o *BackfillOptions) validate() (from health.Date, to *health.Date, err error) {
	switch {
	case o.ID != "" && o.All:
		return from, nil, usageErr("give a participant ID or --all, not both")
	case o.ID == "" && !o.All:
		return from, nil, usageErr("give a participant ID (such as CRBM3W) or --all")
	case strings.TrimSpace(o.ID) == "" && !o.All:
		return from, nil, usageErr("ID must not be blank")
	case o.From == "":
		return from, nil, usageErr("--from is required: the first local day to fetch, e.g. --from 2026-11-01")
	case o.MaxRPS <= 0:
		return from, nil, usageErr("--max-rps %v: use a rate above 0 (at most %v: the API allows 300 requests a minute per participant)", o.MaxRPS, quotaRPS)
	case o.Concurrency < 1 || o.Concurrency > 64:
		return from, nil, usageErr("--concurrency %d: use a number from 1 to 64", o.Concurrency)
	}
	if from, err = health.ParseDate(o.From); err != nil {
		return from, nil, usageErr("--from %q: use YYYY-MM-DD, e.g. 2026-11-01", o.From)
	}
	if o.To != "" {
		t, err := health.ParseDate(o.To)
		if err != nil {
			return from, nil, usageErr("--to %q: use YYYY-MM-DD, e.g. 2026-11-30", o.To)
		}
		if t.Before(from) {
			return from, nil, usageErr("--to %s is before --from %s", t, from)
		}
		to = &t
	}
	return from, to, nil
}

func (o *BackfillOptions) run(ctx context.Context, e *Env) error {
	from, to, err := o.validate()
	if err != nil {
		return err
	}
	if o.MaxRPS > quotaRPS {
		fmt.Fprintf(e.Stderr, "warning: --max-rps %v is above the API's quota of %v requests a second per participant: expect 429 answers, which backfill waits out\n", o.MaxRPS, quotaRPS)
	}
	st, err := openForTokens(ctx, e, &o.Config)
	if err != nil {
		return err
	}
	defer st.Close()

	var users []store.User
	if o.ID != "" {
		u, err := findParticipant(ctx, st, o.ID)
		if err != nil {
			return err
		}
		if u.Status != store.StatusActive {
			return failErr("%s is %s, not active: %s", u.Handle(), u.Status, statusHint(u))
		}
		users = []store.User{u}
	} else if users, err = st.ListUsers(ctx, store.StatusActive); err != nil {
		return abortErr(err)
	}
	if len(users) == 0 {
		fmt.Fprintln(e.Stdout, "backfill: no active participants")
		return nil
	}
	am, err := newAuth(o.Config, e.Now)
	if err != nil {
		return usageErr("%v", err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.ResponseHeaderTimeout = 30 * time.Second
	host, _ := os.Hostname()
	b := &backfiller{
		o: o, e: e, st: st, am: am, base: base, from: from, to: to,
		holder: fmt.Sprintf("%s:%d:backfill:%d", host, os.Getpid(), time.Now().UnixNano()),
		prog:   &progress{w: e.Stderr, on: e.StderrIsTerminal},
	}

	results := make([]backfillResult, len(users))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(o.Concurrency, len(users)) {
		wg.Go(func() {
			for i := range next {
				results[i] = b.user(ctx, users[i])
			}
		})
	}
	for i := range users {
		next <- i
	}
	close(next)
	wg.Wait()
	b.prog.finish()

	var total backfillResult
	failed := 0
	for _, r := range results {
		fmt.Fprintln(e.Stdout, r.summary())
		if r.err != nil {
			failed++
			fmt.Fprintf(e.Stderr, "backfill %s failed%s: %v; run the same command again to resume\n", r.handle, r.failedOn(), r.err)
		}
		total.days += r.days
		total.planned += r.planned
		total.counts.Add(r.counts)
	}
	if len(results) > 1 {
		fmt.Fprintf(e.Stdout, "backfill total: %d participants (%d failed), %d days, %d inserted, %d updated, %d unchanged\n",
			len(results), failed, total.days, total.counts.Inserted, total.counts.Updated, total.counts.Unchanged)
	}
	if failed > 0 {
		var ee *exitError
		for _, r := range results {
			if errors.As(r.err, &ee) && ee.code == ExitAborted {
				return silentExit(ExitAborted)
			}
		}
		return silentExit(ExitPartial)
	}
	return nil
}

// backfiller is one backfill command's shared state.
type backfiller struct {
	o      *BackfillOptions
	e      *Env
	st     *store.Store
	am     *auth.Manager
	base   http.RoundTripper
	holder string
	from   health.Date
	to     *health.Date
	prog   *progress
}

// backfillResult is one participant's outcome.
type backfillResult struct {
	handle   string
	from, to health.Date
	planned  int // days in the range
	days     int // days done: fetched or already complete
	skipped  int // already complete, not fetched
	counts   store.Counts
	note     string // why there was nothing to do
	failedAt health.Date
	err      error
}

func (r backfillResult) summary() string {
	if r.note != "" {
		return fmt.Sprintf("backfill %s: nothing to do (%s)", r.handle, r.note)
	}
	if r.planned == 0 {
		return fmt.Sprintf("backfill %s: not started", r.handle)
	}
	days := fmt.Sprintf("%d days", r.days)
	if r.err != nil {
		days = fmt.Sprintf("%d of %d days", r.days, r.planned)
	}
	s := fmt.Sprintf("backfill %s %s..%s: %s, %d inserted, %d updated, %d unchanged",
		r.handle, r.from, r.to, days, r.counts.Inserted, r.counts.Updated, r.counts.Unchanged)
	if r.skipped > 0 {
		s += fmt.Sprintf("; %d already complete, not fetched again (--force fetches them)", r.skipped)
	}
	return s
}

func (r backfillResult) failedOn() string {
	if r.failedAt.IsZero() {
		return ""
	}
	return " on " + r.failedAt.String()
}

// participantRun is one participant's backfill in progress: its lease, token and API session.
type participantRun struct {
	u         store.User
	tok       auth.Token
	hc        *health.Client
	sess      *health.Session
	claimedAt time.Time
}

func (b *backfiller) user(ctx context.Context, u store.User) (res backfillResult) {
	res.handle = u.Handle()
	// Each participant has its own limiter: the quota is per participant, so participants
	// backfilled side by side do not slow each other down.
	lim := rate.NewLimiter(rate.Limit(b.o.MaxRPS), 1)
	hc, err := health.New(health.Config{BaseURL: b.o.Config.HealthAPIURL,
		HTTPClient: &http.Client{Timeout: time.Minute, Transport: &pacedTransport{base: b.base, lim: lim}}})
	if err != nil {
		res.err = usageErr("%s: %v", EnvHealthAPIURL, err)
		return res
	}
	p := &participantRun{hc: hc}
	if err := b.claim(ctx, p, u); err != nil {
		res.err = err
		return res
	}
	defer func() {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		out := store.Outcome{OK: res.err == nil, At: b.e.Now()}
		if res.err != nil {
			out.Error = res.err.Error()
			if reconsent(res.err) {
				out.Status = store.StatusNeedsReconsent
			}
		}
		if err := b.st.Release(wctx, p.u.ID, b.holder, out); err != nil && res.err == nil {
			res.err = abortErr(fmt.Errorf("release %s: %w", res.handle, err))
		}
	}()

	if err := b.refresh(ctx, p, false); err != nil {
		res.err = err
		return res
	}
	loc, err := b.zone(ctx, p)
	if err != nil {
		res.err = err
		return res
	}
	today := health.DateOf(b.e.Now().In(loc))
	res.from, res.to = b.from, today.AddDays(-1)
	if b.to != nil {
		res.to = *b.to
	}
	if res.to.After(today) {
		res.to = today // the future has no data; today is stored but not complete
	}
	if res.from.After(res.to) {
		res.note = fmt.Sprintf("--from %s is after %s, the participant's last day to fetch", res.from, res.to)
		return res
	}
	var days []health.Date
	for d := res.from; !d.After(res.to); d = d.AddDays(1) {
		days = append(days, d)
	}
	res.planned = len(days)
	updates, err := b.st.SummaryUpdates(ctx, p.u.ID, res.from, res.to)
	if err != nil {
		res.err = abortErr(err)
		return res
	}
	b.prog.add(len(days))

	for _, d := range days {
		if ctx.Err() != nil {
			res.failedAt, res.err = d, fmt.Errorf("interrupted: %w", ctx.Err())
			return res
		}
		if !b.o.Force && complete(updates[d], d, loc) {
			res.skipped++
			res.days++
			b.prog.step(res.handle)
			continue
		}
		if err := b.renew(ctx, p); err != nil {
			res.failedAt, res.err = d, err
			return res
		}
		day, err := b.fetchDay(ctx, p, d, loc)
		if err != nil {
			res.failedAt, res.err = d, fmt.Errorf("fetch %s: %w", d, err)
			return res
		}
		// The day's transaction runs to its end even if the command is interrupted meanwhile.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		c, err := b.st.UpsertDay(wctx, p.u.ID, loc, day, false)
		cancel()
		if err != nil {
			res.failedAt, res.err = d, abortErr(fmt.Errorf("store %s: %w", d, err))
			return res
		}
		res.counts.Add(c)
		res.days++
		b.prog.step(res.handle)
	}
	return res
}

// complete reports whether a stored day can be left alone: its summary last changed more than a
// day after the day ended, when the tracker had long synced it. A day stored while it was still
// going on, or shortly after, may miss minutes the tracker uploaded later.
func complete(updated time.Time, d health.Date, loc *time.Location) bool {
	return !updated.IsZero() && updated.After(d.AddDays(1).In(loc).Add(24*time.Hour))
}

// claim takes the participant's lease, waiting a while for a run that holds it.
func (b *backfiller) claim(ctx context.Context, p *participantRun, u store.User) error {
	deadline := time.Now().Add(claimWait)
	for {
		cu, err := b.st.ClaimNext(ctx, store.ClaimRequest{Holder: b.holder, Lease: backfillLease, Only: []int64{u.ID}})
		if err == nil {
			if cu.Token.RefreshToken != p.tok.RefreshToken || cu.Token.AccessToken != p.tok.AccessToken {
				p.tok = cu.Token
				p.sess = p.hc.Session(p.tok.AccessToken)
			}
			p.u, p.claimedAt = cu, b.e.Now()
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return abortErr(fmt.Errorf("claim %s: %w", u.Handle(), err))
		}
		// Not claimable: no longer active, or a run holds the lease.
		if id := firstNonEmpty(u.LegacyUserID, u.HealthUserID); id != "" {
			if cur, err := b.st.FindUsers(ctx, []string{id}); err == nil && cur[0].Status != store.StatusActive {
				return fmt.Errorf("%s became %s meanwhile", u.Handle(), cur[0].Status)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("another process has held %s's lease for %s; try again later", u.Handle(), claimWait)
		}
		t := time.NewTimer(5 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %s's lease: %w", u.Handle(), ctx.Err())
		case <-t.C:
		}
	}
}

// renew keeps the lease from expiring under a long backfill: past half its life it is released
// and taken again (a run may slip in between; claim then waits for it).
func (b *backfiller) renew(ctx context.Context, p *participantRun) error {
	if b.e.Now().Sub(p.claimedAt) < backfillLease/2 {
		return nil
	}
	if err := b.st.Release(ctx, p.u.ID, b.holder, store.Outcome{OK: true, At: b.e.Now()}); err != nil {
		return abortErr(fmt.Errorf("renew the lease of %s: %w", p.u.Handle(), err))
	}
	return b.claim(ctx, p, p.u)
}

// refresh makes p's token fresh (or new, with force), saving a new one before it is used.
func (b *backfiller) refresh(ctx context.Context, p *participantRun, force bool) error {
	tok, refreshed, err := b.am.Fresh(ctx, p.u.ID, p.tok, force, detachedSaver{b.st})
	if err != nil {
		return fmt.Errorf("refresh token: %w", err)
	}
	if refreshed || p.sess == nil {
		p.tok, p.sess = tok, p.hc.Session(tok.AccessToken)
	}
	return nil
}

// zone is the participant's time zone: stored, else read from settings and stored.
func (b *backfiller) zone(ctx context.Context, p *participantRun) (*time.Location, error) {
	tz := p.u.Timezone
	if tz == "" {
		s, err := p.sess.Settings(ctx)
		if err != nil {
			return nil, fmt.Errorf("read settings: %w", err)
		}
		tz = s.TimeZone
		if err := b.st.SetTimezone(ctx, p.u.ID, tz, b.e.Now()); err != nil {
			return nil, abortErr(err)
		}
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", tz, err)
	}
	return loc, nil
}

// fetchDay fetches one local day. A 401 gets one forced token refresh; a 429 is waited out (a
// backfill is interactive and long, unlike a run, which defers the participant to the next one).
func (b *backfiller) fetchDay(ctx context.Context, p *participantRun, d health.Date, loc *time.Location) (*health.Day, error) {
	refreshed := false
	waits := 0
	for {
		day, err := p.sess.Day(ctx, d, loc)
		if err == nil {
			return day, nil
		}
		var he *health.Error
		errors.As(err, &he)
		switch {
		case he != nil && he.Status == http.StatusUnauthorized && !refreshed:
			refreshed = true
			if err := b.refresh(ctx, p, true); err != nil {
				return nil, err
			}
		case he != nil && he.Kind == health.KindRateLimited && waits < maxRateLimitWaits:
			waits++
			wait := he.RetryAfter
			if wait <= 0 || wait > 5*time.Minute {
				wait = time.Minute
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, err
			case <-t.C:
			}
		default:
			return nil, err
		}
	}
}

// reconsent reports whether err means the participant's grant is gone.
func reconsent(err error) bool {
	return errors.Is(err, auth.ErrReconsent) || health.KindOf(err) == health.KindReconsent
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// detachedSaver saves a refreshed token even when the command is being interrupted: once Google
// issued it, losing it on the way to the database is the one thing that must not happen.
type detachedSaver struct{ st *store.Store }

func (d detachedSaver) SaveToken(ctx context.Context, userID int64, prev string, tok auth.Token) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	return d.st.SaveToken(wctx, userID, prev, tok)
}

// pacedTransport holds each request to one participant's rate.
type pacedTransport struct {
	base http.RoundTripper
	lim  *rate.Limiter
}

func (t *pacedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.lim.Wait(r.Context()); err != nil {
		return nil, err
	}
	return t.base.RoundTrip(r)
}

// progress is a one-line progress bar on a terminal's stderr, redrawn with \r.
type progress struct {
	mu          sync.Mutex
	w           io.Writer
	on          bool
	total, done int
	drawn       int // width of the last line drawn
}

func (p *progress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total += n
	p.draw("")
}

func (p *progress) step(who string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.draw(who)
}

const barWidth = 30

func (p *progress) draw(who string) {
	if !p.on || p.total == 0 {
		return
	}
	fill := barWidth * p.done / p.total
	line := fmt.Sprintf("backfill [%s%s] %d/%d days %s", strings.Repeat("#", fill), strings.Repeat(".", barWidth-fill), p.done, p.total, who)
	pad := max(0, p.drawn-len(line))
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.drawn = len(line)
}

// finish clears the bar so the summary starts on a clean line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on && p.drawn > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.drawn))
	}
}
