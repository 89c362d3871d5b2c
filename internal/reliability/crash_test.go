package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/healthsim"
)

// killTimeout is the runs' --user-timeout: short, so a killed run's leases (the timeout plus the
// syncer's minute) are short, yet long enough for a participant on a busy two-core machine.
const killTimeout = 15 * time.Second

// killLease is the lease a killed run leaves behind.
const killLease = killTimeout + time.Minute

// The kinds of kill. Random kills land wherever the run happens to be; the others are timed.
const (
	killRandom      = "random"       // 0..1.2x a whole run's duration after start
	killRefreshSave = "refresh_save" // right after the simulator's token answer reached the job, before its save
	killInFlight    = "in_flight"    // while a (slowed) refresh is in flight at the token endpoint
	killUpsertTx    = "upsert_tx"    // inside a participant-day transaction, its first rows written
)

var killSchedule = []string{killRandom, killRefreshSave, killRandom, killUpsertTx, killInFlight}

// crash is the state of TestCrashKills.
type crash struct {
	*world
	rng       *rand.Rand
	runTime   time.Duration // a whole run's duration, measured
	kills     map[string]int
	completed int // runs that ended before their kill
	unsaved   int // refresh_save kills after which the job had not saved the new token
	randomTx  int // random kills that found one of the run's transactions open
	days      int // participant-days compared after the kills
	openTx    int // participant-day transactions open (rows written, not committed) at upsert_tx kills
	argv      []string
}

// TestCrashKills SIGKILLs `sync-all run` over and over: at random moments, right after the
// token endpoint answered a refresh (rotating refresh tokens: the new refresh token exists only
// in the dying process), while a refresh is in flight, and inside a participant-day transaction.
// Before each run every token is near expiry (each sync starts with a refresh) and about a third of
// the participants lose their stored data (their upserts insert whole days). After every kill:
// every stored day equals the simulator's (none half written), no lease outlives its 75 s, no
// invalid_grant or refresh token reuse. At the end one clean run exits 0 and converges, and every
// stored grant still refreshes.
func TestCrashKills(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 20, sim: healthsim.Options{RotateRefreshTokens: true, Seed: 11}})
	c := &crash{world: w, rng: newRand(t, 1), kills: map[string]int{},
		argv: append(slices.Clone(runArgs), "--user-timeout", killTimeout.String())}
	w.nearExpiry()
	c.runTime = w.mustRun("", c.argv...).elapsed
	t.Logf("a whole run over %d participants takes %s", len(w.legacy), c.runTime)

	target := pick(10, 60)
	total := 0
	for attempt := 0; total < target; attempt++ {
		if attempt > 4*target {
			t.Fatalf("only %d kills in %d attempts: the runs end before the kills", total, attempt)
		}
		c.prepare()
		kind := killSchedule[attempt%len(killSchedule)]
		var killed bool
		switch kind {
		case killRandom:
			killed = c.random()
		case killRefreshSave:
			killed = c.refreshSave()
		case killInFlight:
			killed = c.inFlight()
		case killUpsertTx:
			killed = c.upsertTx()
		}
		if !killed {
			c.completed++
			continue
		}
		c.kills[kind]++
		total++
		days, diffs := w.checkStoredDays()
		c.days += days
		failDiffs(t, fmt.Sprintf("after %s kill %d", kind, total), diffs)
		w.checkStats(fmt.Sprintf("after %s kill %d", kind, total))
	}
	if c.kills[killRefreshSave] > 0 && c.unsaved == 0 {
		t.Errorf("no refresh_save kill landed before the save: the timing proves nothing")
	}

	// One clean run: the leases the kills left must be bounded, then they are let expire.
	c.prepare()
	clean := filepath.Join(w.dir, "host", "clean.log")
	r := w.mustRun(clean, c.argv...)
	lines := userLines(readFile(t, clean))
	synced := 0
	for _, l := range lines {
		if l.msg == "user synced" || l.msg == "user unchanged" {
			synced++
		}
	}
	if synced != len(w.legacy) || len(lines) != len(w.legacy) {
		t.Fatalf("clean run: %d participants synced of %d (%d lines)", synced, len(w.legacy), len(lines))
	}
	w.checkConverged("after the clean run")
	st := w.checkStats("after the clean run")
	grants := w.checkGrants()
	w.checkNoSecrets(readFile(t, w.sharedLog()), readFile(t, clean), r.stderr)
	// Every killed run that had recorded its start was marked aborted by a later run on the host.
	abandoned := w.checkRunsEnded("the killed runs")

	t.Logf("RELIABILITY crash kills=%d random=%d random_in_tx=%d refresh_save=%d refresh_unsaved=%d in_flight=%d upsert_tx=%d upsert_tx_open=%d ended_before_kill=%d days_checked=%d refreshes=%d grace_replays=%d invalid_grants=%d token_reuse=%d clean_exit=%d converged=%d/%d grants_ok=%d/%d runs_marked_aborted=%d run_time=%s",
		total, c.kills[killRandom], c.randomTx, c.kills[killRefreshSave], c.unsaved, c.kills[killInFlight], c.kills[killUpsertTx], c.openTx,
		c.completed, c.days, st.Refreshes, st.GraceReplays, st.InvalidGrants, st.RefreshTokenReuse, r.code,
		len(w.legacy)-w.unconverged(), len(w.legacy), grants, len(w.legacy), abandoned, c.runTime.Round(time.Millisecond))
}

// prepare readies the world for the next run: the killed run's leases are checked and expired,
// every token is near expiry, every watermark is cleared (today is fetched again) and about a
// third of the participants lose their stored data.
func (c *crash) prepare() {
	c.t.Helper()
	c.checkLeases(killLease)
	c.expireLeases()
	c.nearExpiry()
	c.exec(`UPDATE fitbit_users SET device_last_sync_at = NULL`)
	for _, l := range c.legacy {
		if c.rng.IntN(3) == 0 {
			c.deleteData(l)
		}
	}
}

// random kills the run at a random moment; it reports false if the run ended first.
func (c *crash) random() bool {
	c.t.Helper()
	delay := time.Duration(c.rng.Int64N(int64(c.runTime) * 6 / 5))
	p := c.start("", c.argv...)
	inTx := false
	timer := time.AfterFunc(delay, func() {
		// Which of the run's transactions are open, a moment before the kill.
		var n int64
		_ = c.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND xact_start IS NOT NULL`, p.name).Scan(&n)
		inTx = n > 0
		p.kill()
	})
	r := p.wait(c.t, time.Minute)
	timer.Stop()
	c.backendsGone(p.name)
	if r.killed && inTx {
		c.randomTx++
	}
	return c.ended(r)
}

// ended checks how a run that was to be killed ended: by the kill, or by finishing first.
func (c *crash) ended(r result) bool {
	c.t.Helper()
	if !r.killed && r.code != 0 {
		c.t.Fatalf("a run ended by itself with exit %d; stderr:\n%s", r.code, r.stderr)
	}
	return r.killed
}

// refreshSave kills the run the moment the token endpoint's answer to its k-th refresh has been
// sent: the simulator has rotated the participant's refresh token, the job has the new one in
// memory only. It then checks whether the job had saved it (the kill came after the commit).
func (c *crash) refreshSave() bool {
	c.t.Helper()
	k := 1 + c.rng.IntN(len(c.legacy))
	var (
		mu        sync.Mutex
		p         *proc
		n         int
		presented string
	)
	mu.Lock()
	c.tap.set(nil, func(a tokenAnswer) {
		mu.Lock()
		defer mu.Unlock()
		if a.status != 200 {
			return
		}
		if n++; n == k {
			p.kill()
			presented = a.refreshToken
		}
	})
	p = c.start("", c.argv...)
	mu.Unlock()
	r := p.wait(c.t, time.Minute)
	c.tap.set(nil, nil)
	c.backendsGone(p.name)
	if r.killed && presented != "" && c.stillStored(presented) {
		c.unsaved++
	}
	return c.ended(r)
}

// stillStored reports whether some participant's stored refresh token is rt.
func (c *crash) stillStored(rt string) bool {
	c.t.Helper()
	users, err := c.st.FindUsers(context.Background(), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, u := range users {
		if u.Token.RefreshToken == rt {
			return true
		}
	}
	return false
}

// inFlight slows every token request down and kills the run while its k-th one is in flight.
func (c *crash) inFlight() bool {
	c.t.Helper()
	const latency = 300 * time.Millisecond
	for _, l := range c.legacy {
		c.sim.SetFault(l, healthsim.Fault{Path: "/token", Latency: latency})
	}
	k := 1 + c.rng.IntN(8)
	delay := time.Duration(c.rng.Int64N(int64(latency)))
	var (
		mu sync.Mutex
		p  *proc
		n  int
	)
	mu.Lock()
	c.tap.set(func() {
		mu.Lock()
		defer mu.Unlock()
		if n++; n == k {
			time.AfterFunc(delay, p.kill)
		}
	}, nil)
	p = c.start("", c.argv...)
	mu.Unlock()
	r := p.wait(c.t, time.Minute)
	c.tap.set(nil, nil)
	for _, l := range c.legacy {
		c.sim.ClearFaults(l)
	}
	c.backendsGone(p.name)
	return c.ended(r)
}

// upsertTx kills the run inside participant-day transactions. Every participant's data is
// deleted first, so each upsert inserts a whole day, and the test holds a SHARE lock on
// intraday_calories, the day's last statement: each worker's transaction writes the summary, heart
// rate and steps, then waits. The kill lands when every worker is waiting; afterwards nothing of
// those days may be stored. A table lock, not a row of the test's own, holds every worker at the
// same statement whatever participant it has.
// Participants with no calories today (a local day that has just begun) write no calories and
// are not held; their days are checked like any other.
func (c *crash) upsertTx() bool {
	c.t.Helper()
	ctx := context.Background()
	var held []int64
	for _, l := range c.legacy {
		c.deleteData(l)
		d := c.today(l)
		if len(c.sim.Truth(l, d.y, d.m, d.d).Calories) > 0 {
			held = append(held, c.users[l].ID)
		}
	}
	const concurrency = 8 // the run's default --concurrency
	workers := min(concurrency, len(held))
	if workers == 0 {
		c.t.Fatal("no participant has calories today")
	}
	tx, err := c.st.Pool().Begin(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `LOCK TABLE intraday_calories IN SHARE MODE`); err != nil {
		c.t.Fatal(err)
	}

	p := c.start("", c.argv...)
	var waiting []int32
	if !eventually(30*time.Second, func() bool {
		rows, err := c.st.Pool().Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, p.name)
		if err != nil {
			c.t.Fatal(err)
		}
		waiting = waiting[:0]
		for rows.Next() {
			var pid int32
			if err := rows.Scan(&pid); err != nil {
				c.t.Fatal(err)
			}
			waiting = append(waiting, pid)
		}
		rows.Close()
		return len(waiting) == workers
	}) {
		p.kill()
		c.t.Fatalf("%d of %d workers reached the held lock; stderr:\n%s", len(waiting), workers, p.stderr.String())
	}
	// Each waiting transaction has written the day's summary and first series already.
	for _, pid := range waiting {
		written := c.queryInt(`SELECT count(DISTINCT relation) FROM pg_locks WHERE pid = $1 AND mode = 'RowExclusiveLock'
			AND relation IN ('daily_summaries'::regclass, 'intraday_heart_rate'::regclass, 'intraday_steps'::regclass)`, pid)
		if written < 2 {
			c.t.Fatalf("a waiting transaction holds write locks on %d of the day's tables, want the summary and a series", written)
		}
	}
	p.kill()
	r := p.wait(c.t, time.Minute)
	// A backend notices its client is gone only when its wait ends.
	if err := tx.Rollback(ctx); err != nil {
		c.t.Fatal(err)
	}
	c.backendsGone(p.name)
	if n := c.queryInt(`SELECT (SELECT count(*) FROM intraday_heart_rate WHERE user_id = ANY ($1)) + (SELECT count(*) FROM intraday_steps WHERE user_id = ANY ($1))
		+ (SELECT count(*) FROM intraday_calories WHERE user_id = ANY ($1)) + (SELECT count(*) FROM daily_summaries WHERE user_id = ANY ($1))`, held); n != 0 {
		c.t.Fatalf("%d rows stored by the %d participant-day transactions that were killed", n, len(waiting))
	}
	if !r.killed {
		c.t.Fatalf("the run blocked in its upserts ended by itself (exit %d)", r.code)
	}
	c.openTx += len(waiting)
	return true
}
