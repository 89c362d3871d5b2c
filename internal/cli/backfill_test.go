package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/store"
)

// rowsOfDay is how many rows a participant-day stores: the summary and every window the
// simulator serves.
func (w *world) rowsOfDay(legacy string, d health.Date) int64 {
	t := w.sim.Truth(legacy, d.Year, d.Month, d.Day)
	return int64(1 + len(t.HeartRate) + len(t.Steps) + len(t.Calories))
}

func (w *world) rowsOfDays(legacy string, from, to health.Date) int64 {
	var n int64
	for d := from; !d.After(to); d = d.AddDays(1) {
		n += w.rowsOfDay(legacy, d)
	}
	return n
}

// backfill runs the command with a fast rate: the simulator's own quota (per simulated minute)
// guards the request count, and the limiter's real-time pacing would only slow the test.
func (w *world) backfill(args ...string) result {
	w.t.Helper()
	// Each command in its own simulated minute, so the quota of the last one does not carry over.
	w.clock.Add(time.Minute)
	r := w.run(w.env(), append([]string{"backfill", "--max-rps", "1000"}, args...)...)
	if r.code != 0 {
		w.t.Fatalf("backfill %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

func TestBackfillStoresPastDaysResumesAndRewritesNothing(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	ctx := context.Background()
	from, mid, to := health.Date{Year: 2026, Month: 11, Day: 20}, health.Date{Year: 2026, Month: 11, Day: 24}, health.Date{Year: 2026, Month: 11, Day: 29}

	// Five days, then all ten: the second command stores exactly the five new days.
	r := w.backfill("CRBM3W", "--from", "2026-11-20", "--to", "2026-11-24")
	want := fmt.Sprintf("backfill CRBM3W 2026-11-20..2026-11-24: 5 days, %d inserted, 0 updated, 0 unchanged\n", w.rowsOfDays("CRBM3W", from, mid))
	if r.stdout != want {
		t.Fatalf("first backfill: %q, want %q", r.stdout, want)
	}
	r = w.backfill("CRBM3W", "--from", "2026-11-20", "--to", "2026-11-29")
	newRows := w.rowsOfDays("CRBM3W", mid.AddDays(1), to)
	if !strings.HasPrefix(r.stdout, fmt.Sprintf("backfill CRBM3W 2026-11-20..2026-11-29: 10 days, %d inserted, 0 updated, ", newRows)) {
		t.Fatalf("second backfill: %q, want %d inserted", r.stdout, newRows)
	}
	for d := from; !d.After(to); d = d.AddDays(1) {
		w.assertMatchesSim("CRBM3W", d.Year, d.Month, d.Day)
	}
	other := w.sim.Participants()[1].LegacyUserID
	if rows := w.rowsOf(w.users[other].ID); rows["daily_summaries"] != 0 {
		t.Errorf("backfill of CRBM3W stored days of %s: %v", other, rows)
	}

	// Which days are complete is decided by when their summary was stored: pin it, so the
	// test does not depend on the host's clock. 20..27 were stored days after they ended; 28 and
	// 29 while the tracker might still have been uploading.
	loc, _ := time.LoadLocation("America/Los_Angeles")
	_, err := w.st.Pool().Exec(ctx, `UPDATE daily_summaries SET updated_at = CASE WHEN date <= '2026-11-27' THEN $2::timestamptz ELSE $3::timestamptz END
		WHERE user_id = $1`, w.users["CRBM3W"].ID, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC),
		health.Date{Year: 2026, Month: 11, Day: 29}.In(loc).Add(12*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	calls := w.sim.Requests("CRBM3W", "dailyRollUp")
	r = w.backfill("CRBM3W", "--from", "2026-11-20", "--to", "2026-11-29")
	want = fmt.Sprintf("backfill CRBM3W 2026-11-20..2026-11-29: 10 days, 0 inserted, 0 updated, %d unchanged; 8 already complete, not fetched again (--force fetches them)\n",
		w.rowsOfDays("CRBM3W", to.AddDays(-1), to))
	if r.stdout != want {
		t.Errorf("third backfill: %q, want %q", r.stdout, want)
	}
	if got := w.sim.Requests("CRBM3W", "dailyRollUp") - calls; got != 2*9 {
		t.Errorf("third backfill made %d dailyRollUp calls, want 18 (two days)", got)
	}

	// --force fetches every day again and still writes nothing.
	r = w.backfill("CRBM3W", "--from", "2026-11-20", "--to", "2026-11-29", "--force")
	want = fmt.Sprintf("backfill CRBM3W 2026-11-20..2026-11-29: 10 days, 0 inserted, 0 updated, %d unchanged\n", w.rowsOfDays("CRBM3W", from, to))
	if r.stdout != want {
		t.Errorf("forced backfill: %q, want %q", r.stdout, want)
	}

	// The lease was released: the next run claims CRBM3W as usual.
	u := w.find("CRBM3W")
	var holder *string
	if err := w.st.Pool().QueryRow(ctx, `SELECT lease_holder FROM fitbit_users WHERE id = $1`, u.ID).Scan(&holder); err != nil || holder != nil {
		t.Errorf("lease after backfill: %v, %v", holder, err)
	}
	if u.Status != store.StatusActive || u.ConsecutiveFailures != 0 {
		t.Errorf("after backfill: %+v", u)
	}
	w.assertNoSecrets(r.stdout, r.stderr)
}

func TestBackfillAllDefaultsToYesterdayAndShowsProgressOnATerminal(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	w.clock.Add(time.Minute)
	var out bytes.Buffer
	r := w.runIO(strings.NewReader(""), &out, true, "backfill", "--all", "--from", "2026-11-30", "--max-rps", "1000")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var total int64
	var lines []string
	for _, p := range w.sim.Participants() {
		loc, _ := time.LoadLocation(p.TimeZone)
		yesterday := health.DateOf(w.clock.Now().In(loc)).AddDays(-1)
		from := health.Date{Year: 2026, Month: 11, Day: 30}
		n := w.rowsOfDays(p.LegacyUserID, from, yesterday)
		total += n
		lines = append(lines, fmt.Sprintf("backfill %s 2026-11-30..%s: %d days, %d inserted, 0 updated, 0 unchanged\n",
			p.LegacyUserID, yesterday, int(yesterday.In(time.UTC).Sub(from.In(time.UTC)).Hours()/24)+1, n))
		for d := from; !d.After(yesterday); d = d.AddDays(1) {
			w.assertMatchesSim(p.LegacyUserID, d.Year, d.Month, d.Day)
		}
	}
	want := strings.Join(lines, "") + fmt.Sprintf("backfill total: 2 participants (0 failed), 6 days, %d inserted, 0 updated, 0 unchanged\n", total)
	if out.String() != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), want)
	}
	// One line redrawn in place, ending at 6 of 6 days, then cleared.
	progress := r.stderr[strings.Index(r.stderr, "\n")+1:] // after the --max-rps warning
	if !strings.HasPrefix(progress, "\rbackfill [") || !strings.Contains(progress, "6/6 days") || strings.Contains(progress, "\n") {
		t.Errorf("progress on stderr: %q", r.stderr)
	}

	// Not a terminal: no progress at all.
	w.clock.Add(time.Minute)
	r = w.run(w.env(), "backfill", "CRBM3W", "--from", "2026-12-02", "--max-rps", "1000")
	if r.code != 0 || strings.Contains(r.stderr, "\r") || !strings.HasPrefix(r.stderr, "warning: --max-rps 1000 is above the API's quota") {
		t.Errorf("backfill without a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestBackfillOfAParticipantWhoseConsentIsGone(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	w.sim.RevokeGrants("CRBM3W")
	w.clock.Add(2 * time.Hour) // the stored access token has expired: the refresh finds the grant gone
	r := w.run(w.env(), "backfill", "CRBM3W", "--from", "2026-11-20", "--to", "2026-11-21", "--max-rps", "1000")
	if r.code != ExitPartial || !strings.Contains(r.stderr, "backfill CRBM3W failed") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if u := w.find("CRBM3W"); u.Status != store.StatusNeedsReconsent {
		t.Errorf("status %s, want needs_reconsent", u.Status)
	}
	r = w.run(w.env(), "backfill", "CRBM3W", "--from", "2026-11-20", "--max-rps", "1000")
	if r.code != ExitPartial || !strings.Contains(r.stderr, "sync-all users authorize CRBM3W") {
		t.Errorf("backfill of a participant needing consent: exit %d, stderr %q", r.code, r.stderr)
	}
}
