package reliability

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/healthsim"
)

// TestOverlap starts three `sync-all run` processes at once over the same participants, each
// with its own log folder (so its own host lock, as on three hosts), with rotating refresh
// tokens and every token near expiry. Each participant must be synced exactly once in all, its
// token refreshed exactly once (no refresh token presented twice, no invalid_grant), every
// process must exit 0, and the rows the three runs report inserting must be exactly the rows
// stored (no duplicate work, no duplicate rows).
func TestOverlap(t *testing.T) {
	n := pick(60, 200)
	w := newWorld(t, worldOpts{participants: n, sim: healthsim.Options{RotateRefreshTokens: true, Seed: 31}})
	w.nearExpiry()
	const hosts = 3
	procs := make([]*proc, hosts)
	for i := range procs {
		// The default --min-interval (4m), as cron runs it: a participant another host synced a
		// moment ago is not synced again.
		procs[i] = w.start(filepath.Join(w.dir, fmt.Sprintf("host%d", i), "sync.log"), "run", "--max-rps", "2000")
	}
	var wg sync.WaitGroup
	results := make([]result, hosts)
	for i, p := range procs {
		wg.Go(func() { results[i] = p.wait(t, 10*time.Minute) })
	}
	wg.Wait()

	seen := map[string]int{}
	split := make([]string, hosts)
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("host %d: exit %d\nstderr:\n%s", i, r.code, r.stderr)
		}
		done := 0
		for _, l := range userLines(readFile(t, procs[i].log)) {
			if l.msg != "user synced" && l.msg != "user unchanged" {
				t.Errorf("host %d: %s %s (%s)", i, l.msg, l.user, l.reason)
				continue
			}
			seen[l.user]++
			done++
		}
		split[i] = fmt.Sprint(done)
	}
	twice := 0
	for _, l := range w.legacy {
		if seen[l] != 1 {
			twice++
			t.Errorf("%s synced %d times across the hosts, want exactly once", l, seen[l])
		}
	}
	refreshedTwice := 0
	for _, l := range w.legacy {
		if c := w.sim.Requests(l, "token"); c != 1 {
			refreshedTwice++
			t.Errorf("%s: %d token requests, want exactly 1", l, c)
		}
	}
	st := w.checkStats("after the overlapping runs")

	runs := w.runs()
	if len(runs) != hosts {
		t.Fatalf("%d sync_runs rows, want %d", len(runs), hosts)
	}
	var inserted int64
	for _, r := range runs {
		if r.status != "ok" || r.failed != 0 {
			t.Errorf("run %d: status %s, %d failed", r.id, r.status, r.failed)
		}
		inserted += r.inserted
	}
	rows := w.rowCount()
	if inserted != rows {
		t.Errorf("the runs report %d rows inserted, the tables hold %d", inserted, rows)
	}
	dups := w.queryInt(`SELECT count(*) FROM (SELECT user_id, ts FROM intraday_heart_rate GROUP BY 1, 2 HAVING count(*) > 1) x`)
	w.checkConverged("after the overlapping runs")

	t.Logf("RELIABILITY overlap hosts=%d participants=%d split=%s synced_once=%d/%d refreshed_once=%d/%d token_reuse=%d invalid_grants=%d grace_replays=%d rows=%d rows_reported=%d duplicate_rows=%d exits=0,0,0 wall=%s",
		hosts, n, strings.Join(split, "/"), n-twice, n, n-refreshedTwice, n, st.RefreshTokenReuse, st.InvalidGrants, st.GraceReplays,
		rows, inserted, dups, slices.MaxFunc(results, func(a, b result) int { return int(a.elapsed - b.elapsed) }).elapsed.Round(time.Millisecond))
}
