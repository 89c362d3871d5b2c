package reliability

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/healthsim"
)

// faultKind is one way an API request fails, and the failure reasons the job may log for it.
type faultKind struct {
	name    string
	fault   healthsim.Fault
	reasons []string
}

// faultRate is the share of a participant's data API requests that fail.
const faultRate = 0.2

// faultUserTimeout is the runs' --user-timeout. The timeout kind answers after 1.5 times it: the
// HTTP client's own 60 s timeout is too long for a test, and a participant's deadline is what cuts
// a hung request short in practice. It is long enough that no other participant runs out of
// time on a busy two-core machine.
const faultUserTimeout = 6 * time.Second

// faultKinds rotate across participants.
var faultKinds = []faultKind{
	{"http500", healthsim.Fault{Status: 500}, []string{"network"}},
	{"http503", healthsim.Fault{Status: 503}, []string{"network"}},
	{"http429", healthsim.Fault{Status: 429, Reason: "RATE_LIMIT_EXCEEDED", RetryAfter: time.Second}, []string{"rate_limited"}},
	{"truncated", healthsim.Fault{Body: "truncated"}, []string{"network"}},
	{"malformed", healthsim.Fault{Body: "malformed"}, []string{"malformed"}},
	{"garbage", healthsim.Fault{Body: "garbage"}, []string{"malformed"}},
	{"timeout", healthsim.Fault{Latency: faultUserTimeout * 3 / 2}, []string{"network"}},
}

var finishedRE = regexp.MustCompile(`msg="run finished" run_id=(\d+) users_total=(\d+) users_ok=(\d+) users_failed=(\d+) users_skipped=(\d+)`)

// TestAPIFaults makes 20% of every participant's data API requests fail, one kind of failure per
// participant (5xx, 429, truncated, malformed and garbage bodies, answers slower than the
// participant's deadline), and keeps the faults on from run to run. No run may crash (exit 0 or 1
// only); each run's sync_runs row and "run finished" line must count exactly the failures its log
// reports, each with the reason its kind calls for; no stored day may differ from the
// simulator's (a failed day writes nothing). The test counts the runs each kind needs to converge
// with the faults still on (at most 3, as issue 6 asks), keeps them on for every run, then clears
// the faults: one more run must converge everything.
func TestAPIFaults(t *testing.T) {
	n := 3 * len(faultKinds)
	w := newWorld(t, worldOpts{participants: n, sim: healthsim.Options{RotateRefreshTokens: true, Seed: 41}})
	kindOf := map[string]faultKind{}
	for i, l := range w.legacy {
		k := faultKinds[i%len(faultKinds)]
		f := k.fault
		f.Probability = faultRate
		w.sim.SetFault(l, f)
		kindOf[l] = k
	}
	argv := append(slices.Clone(runArgs), "--user-timeout", faultUserTimeout.String())
	maxRuns := pick(3, 10)
	convergedAt := map[string]int{} // kind -> run after which all its participants matched
	failuresBy := map[string]int{}  // reason -> failures logged
	exits := []string{}
	injected0 := w.sim.Stats().FaultsInjected
	runsDone := 0
	for run := 1; run <= maxRuns; run++ {
		w.nearExpiry() // every run refreshes too, through the (fault-free) token endpoint
		// Every run refetches today (no device watermark), so each makes a whole day's calls
		// per participant under the faults, not just one pairedDevices call.
		w.exec(`UPDATE fitbit_users SET device_last_sync_at = NULL`)
		log := filepath.Join(w.dir, "host", fmt.Sprintf("run%d.log", run))
		r := w.run(log, argv...)
		runsDone = run
		exits = append(exits, strconv.Itoa(r.code))
		if r.code != 0 && r.code != 1 {
			t.Fatalf("run %d: exit %d, want 0 or 1\nstderr:\n%s", run, r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
			t.Fatalf("run %d crashed:\n%s", run, r.stderr)
		}
		for reason, c := range w.checkRunCounts(run, readFile(t, log), kindOf) {
			failuresBy[reason] += c
		}
		_, diffs := w.checkStoredDays()
		failDiffs(t, fmt.Sprintf("after run %d with faults", run), diffs)
		for _, k := range faultKinds {
			if _, ok := convergedAt[k.name]; ok {
				continue
			}
			all := true
			for _, l := range w.legacy {
				if kindOf[l].name == k.name && len(w.compareDay(l, w.today(l))) > 0 {
					all = false
				}
			}
			if all {
				convergedAt[k.name] = run
			}
		}
		// Every run is made even once all kinds converged: the later runs check that converged
		// data stays right and that failures keep being counted exactly.
	}
	injected := w.sim.Stats().FaultsInjected - injected0
	if injected == 0 {
		t.Fatal("no fault was injected: the test proves nothing")
	}
	// Issue 6: with the faults still on, at most 3 runs bring the database to the simulator's data.
	for _, k := range faultKinds {
		if r, ok := convergedAt[k.name]; !ok || r > 3 {
			t.Errorf("%s: not converged within 3 runs with the faults on (converged after run %d; 0 = never)", k.name, r)
		}
	}

	// Faults cleared: one run converges everything.
	for _, l := range w.legacy {
		w.sim.ClearFaults(l)
	}
	w.nearExpiry()
	w.mustRun(filepath.Join(w.dir, "host", "clean.log"), argv...)
	w.checkConverged("the run after the faults were cleared")
	st := w.checkStats("after the fault runs")

	var conv []string
	for _, k := range faultKinds {
		v := fmt.Sprintf(">%d", runsDone)
		if r, ok := convergedAt[k.name]; ok {
			v = strconv.Itoa(r)
		}
		conv = append(conv, k.name+":"+v)
	}
	var by []string
	for reason, c := range failuresBy {
		by = append(by, fmt.Sprintf("%s:%d", reason, c))
	}
	sort.Strings(by)
	total := 0
	for _, c := range failuresBy {
		total += c
	}
	t.Logf("RELIABILITY apifaults participants=%d fault_rate=%.0f%% runs=%d exits=%s faults_injected=%d participant_failures=%d by_reason=%s runs_to_converge_with_faults=%s after_clearing=1 invalid_grants=%d",
		n, faultRate*100, runsDone, strings.Join(exits, ","), injected, total, strings.Join(by, ","), strings.Join(conv, ","), st.InvalidGrants)
}

// checkRunCounts checks one run's bookkeeping against its log: the sync_runs row and the "run
// finished" line count exactly the participants the log says synced and failed, every
// participant has one line, and each failure's reason is one its fault kind calls for. It
// returns the failures by reason.
func (w *world) checkRunCounts(run int, log string, kindOf map[string]faultKind) map[string]int {
	w.t.Helper()
	ok, failed := 0, 0
	by := map[string]int{}
	seen := map[string]bool{}
	for _, l := range userLines(log) {
		if seen[l.user] {
			w.t.Errorf("run %d: %s has two lines", run, l.user)
		}
		seen[l.user] = true
		switch l.msg {
		case "user synced", "user unchanged":
			ok++
		default:
			failed++
			by[l.reason]++
			// Any participant may also run out of its --user-timeout, retry backoffs included:
			// that is reason network, saying the deadline passed.
			deadline := l.reason == "network" && strings.Contains(l.line, "context deadline exceeded")
			if k := kindOf[l.user]; !slices.Contains(k.reasons, l.reason) && !deadline {
				w.t.Errorf("run %d: %s (fault %s) failed with reason %q, want one of %v:\n%s", run, l.user, k.name, l.reason, k.reasons, l.line)
			}
		}
	}
	if ok+failed != len(w.legacy) {
		w.t.Errorf("run %d: %d participant lines, want %d", run, ok+failed, len(w.legacy))
	}
	runs := w.runs()
	row := runs[len(runs)-1]
	m := finishedRE.FindStringSubmatch(log)
	if m == nil {
		w.t.Fatalf("run %d: no run finished line", run)
	}
	line := make([]int, 5)
	for i := range line {
		line[i], _ = strconv.Atoi(m[i+1])
	}
	want := []int{int(row.id), len(w.legacy), ok, failed, 0}
	got := []int{line[0], line[1], line[2], line[3], line[4]}
	dbRow := []int{int(row.id), row.total, row.ok, row.failed, row.skipped}
	if !slices.Equal(got, want) || !slices.Equal(dbRow, want) {
		w.t.Errorf("run %d: log lines say (run, total, ok, failed, skipped) = %v; run finished says %v; sync_runs says %v", run, want, got, dbRow)
	}
	wantStatus := "ok"
	if failed > 0 {
		wantStatus = "partial"
	}
	if row.status != wantStatus {
		w.t.Errorf("run %d: sync_runs status %s, want %s", run, row.status, wantStatus)
	}
	return by
}

// TestClockSkew runs the job against an API whose clock is 5 minutes ahead of this host's, and 5
// minutes behind. Token expiry arrives as a lifetime (expires_in), so the job's refresh decisions
// must not depend on the skew: a token near expiry is refreshed once, before it is used; a fresh
// one is not refreshed again; one inside the 10-minute margin is refreshed; every run exits 0
// with no 401 (no forced refresh) and the data matches the simulator's.
func TestClockSkew(t *testing.T) {
	var figs []string
	for _, skew := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
		t.Run(fmt.Sprintf("skew%+v", skew), func(t *testing.T) {
			w := newWorld(t, worldOpts{participants: 6, sim: healthsim.Options{
				RotateRefreshTokens: true, Seed: 51, Now: func() time.Time { return time.Now().Add(skew) },
			}})
			tokenCalls := func() int { return w.sim.Requests("", "token") }
			n := len(w.legacy)
			steps := []struct {
				name   string
				expiry string // SQL for token_expires_at, "" = keep what the job stored
				want   int    // token requests
			}{
				{"near expiry", "now() + interval '1 minute'", n},
				{"fresh", "", 0},
				{"inside the margin", "now() + interval '9 minutes'", n},
				{"just outside the margin", "now() + interval '11 minutes'", 0},
			}
			var got []string
			for i, s := range steps {
				if s.expiry != "" {
					w.exec(`UPDATE fitbit_users SET token_expires_at = ` + s.expiry)
				}
				before := tokenCalls()
				w.mustRun(filepath.Join(w.dir, "host", fmt.Sprintf("run%d.log", i)), runArgs...)
				if c := tokenCalls() - before; c != s.want {
					t.Errorf("%s token: %d token requests, want %d", s.name, c, s.want)
				}
				got = append(got, strconv.Itoa(tokenCalls()-before))
			}
			// Within minutes of a participant's local midnight the host and the API disagree about
			// the date: the host's new "today" is empty at the API, and yesterday's tail is fetched
			// at the device's next sync. The token figures above are the point of this test.
			if z := nearLocalMidnight(w.sim.Participants(), 10*time.Minute); z != "" {
				t.Logf("convergence not checked: %s is within 10 minutes of local midnight", z)
			} else {
				w.checkConverged("with skew")
			}
			st := w.checkStats("with skew")
			figs = append(figs, fmt.Sprintf("skew%+v:runs=%d,exit0,refreshes=%s,invalid_grants=%d", skew, len(steps), strings.Join(got, "/"), st.InvalidGrants))
		})
	}
	t.Logf("RELIABILITY clockskew %s", strings.Join(figs, " "))
}

// nearLocalMidnight returns the zone of a participant whose local clock is within d of midnight.
func nearLocalMidnight(ps []healthsim.Participant, d time.Duration) string {
	now := time.Now()
	for _, p := range ps {
		loc, err := time.LoadLocation(p.TimeZone)
		if err != nil {
			continue
		}
		l := now.In(loc)
		since := time.Duration(l.Hour())*time.Hour + time.Duration(l.Minute())*time.Minute
		if since < d || 24*time.Hour-since < d {
			return p.TimeZone
		}
	}
	return ""
}
