package cli

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/healthsim"
	"github.com/studylab/sync-all/internal/store"
	"github.com/studylab/sync-all/internal/tokencrypt"
)

var dataEndpoints = []string{"identity", "settings", "pairedDevices", "rollUp", "dailyRollUp", "list", "legacy", "other"}

// apiCalls counts the data API requests the simulator received for a participant.
func (w *world) apiCalls(legacy string) int {
	n := 0
	for _, e := range dataEndpoints {
		n += w.sim.Requests(legacy, e)
	}
	return n
}

func (w *world) user(legacy string) store.User {
	w.t.Helper()
	us, err := w.st.FindUsers(context.Background(), []string{legacy})
	if err != nil {
		w.t.Fatal(err)
	}
	return us[0]
}

// addZoned adds a participant living in zone to the simulator and enrolls it.
func (w *world) addZoned(legacy, zone string) {
	w.t.Helper()
	w.sim.AddParticipant(healthsim.Participant{LegacyUserID: legacy, TimeZone: zone})
	w.enroll(legacy)
}

func TestUnchangedParticipantCostsOneAPICall(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 3})
	w.mustRun("run")
	for legacy := range w.users {
		w.sim.SetDeviceOffline(legacy, w.clock.Now())
	}
	before := map[string]int{}
	for legacy := range w.users {
		before[legacy] = w.apiCalls(legacy)
	}
	w.clock.Add(5 * time.Minute)
	w.mustRun("run")
	for legacy := range w.users {
		if got := w.apiCalls(legacy) - before[legacy]; got != 1 {
			t.Errorf("%s: unchanged participant made %d API calls, want exactly 1", legacy, got)
		}
	}
	if !strings.Contains(w.log(), `msg="user unchanged"`) {
		t.Errorf("log has no unchanged line:\n%s", w.log())
	}
}

func TestMidnightCompletesYesterdayAndStartsToday(t *testing.T) {
	for _, tc := range []struct {
		zone      string
		midnightZ time.Time // local midnight of Dec 4 as UTC
	}{
		{"Asia/Seoul", time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)},
		{"America/Los_Angeles", time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.zone, func(t *testing.T) {
			w := newWorld(t, worldOpts{participants: 1, start: tc.midnightZ.Add(-12 * time.Minute)})
			w.addZoned("MIDNT1", tc.zone)
			w.sim.SetDeviceOffline("MIDNT1", w.clock.Now())
			w.sim.SyncDevice("MIDNT1")
			w.mustRun("run", "--user", "MIDNT1")
			w.clock.Add(24 * time.Minute) // 00:12 local
			w.sim.SyncDevice("MIDNT1")
			w.mustRun("run", "--user", "MIDNT1")

			w.assertMatchesSim("MIDNT1", 2026, 12, 3)
			w.assertMatchesSim("MIDNT1", 2026, 12, 4)
			// Yesterday's last window (23:55 local) and today's first are both stored.
			var n int
			err := w.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM intraday_steps
				WHERE user_id = $1 AND ((local_date = '2026-12-03' AND local_time = '23:55') OR (local_date = '2026-12-04' AND local_time = '00:00'))`,
				w.users["MIDNT1"].ID).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			truth := w.sim.Truth("MIDNT1", 2026, 12, 3)
			if len(truth.Steps) > 0 && truth.Steps[len(truth.Steps)-1].Start.Equal(tc.midnightZ.Add(-5*time.Minute)) && n < 1 {
				t.Errorf("yesterday's last 5-minute window is missing")
			}
		})
	}
}

func TestOfflineDeviceIsCaughtUp(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 1})
	legacy := w.sim.Participants()[0].LegacyUserID
	w.sim.SetDeviceOffline(legacy, w.clock.Now())
	w.mustRun("run")
	y, m, d := w.localDate(legacy)
	w.clock.Add(3 * 24 * time.Hour)
	w.mustRun("run") // still offline: unchanged, but today's summary is new, so today is fetched
	w.sim.SyncDevice(legacy)
	w.clock.Add(5 * time.Minute)
	w.mustRun("run")
	for i := 0; i <= 3; i++ {
		day := time.Date(y, m, d+i, 0, 0, 0, 0, time.UTC)
		w.assertMatchesSim(legacy, day.Year(), day.Month(), day.Day())
	}
	var days int
	if err := w.st.Pool().QueryRow(context.Background(), `SELECT count(DISTINCT local_date) FROM intraday_heart_rate WHERE user_id=$1`, w.users[legacy].ID).Scan(&days); err != nil {
		t.Fatal(err)
	}
	if days < 4 {
		t.Errorf("heart rate stored for %d local days, want the 4 days of the outage", days)
	}
	// Each caught-up day is greppable by its date.
	for i := 0; i <= 3; i++ {
		day := time.Date(y, m, d+i, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
		if !strings.Contains(w.log(), `msg="day synced" user=`+legacy+` date=`+day) {
			t.Errorf("no day line for %s:\n%s", day, w.log())
		}
	}
}

func TestFailingParticipantsAreIsolated(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 6})
	ps := w.sim.Participants()
	broken, revoked, limited := ps[0].LegacyUserID, ps[1].LegacyUserID, ps[2].LegacyUserID
	w.sim.SetFault(broken, healthsim.Fault{Path: "heart-rate", Status: 500})
	w.sim.RevokeGrants(revoked)
	w.sim.SetFault(limited, healthsim.Fault{Status: 429, Reason: "RATE_LIMIT_EXCEEDED", RetryAfter: 30 * time.Second})
	// The revoked participant's token is still unexpired: the data call gets 401, the forced
	// refresh then gets invalid_grant.
	r := w.run(w.env(), "run")
	if r.code != ExitPartial {
		t.Fatalf("exit %d, want %d; stderr: %s", r.code, ExitPartial, r.stderr)
	}
	run := w.lastRun()
	if run.UsersOK != 3 || run.UsersFailed != 3 || run.Status != store.RunPartial {
		t.Fatalf("run: %+v", run)
	}
	for _, p := range ps[3:] {
		w.assertToday(p.LegacyUserID)
	}
	if st := w.user(revoked).Status; st != store.StatusNeedsReconsent {
		t.Errorf("revoked participant status = %s", st)
	}
	for _, legacy := range []string{broken, limited} {
		if u := w.user(legacy); u.Status != store.StatusActive || u.LastError == "" || u.ConsecutiveFailures != 1 {
			t.Errorf("%s: status %s, last_error %q, failures %d", legacy, u.Status, u.LastError, u.ConsecutiveFailures)
		}
	}
	// Nothing of the failing day was written for the participant whose heart rate failed.
	var n int
	if err := w.st.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM intraday_steps WHERE user_id=$1) + (SELECT count(*) FROM daily_summaries WHERE user_id=$1)`, w.users[broken].ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a failed participant-day left %d rows", n)
	}
	log := w.log()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`level=ERROR msg="user failed" user=` + broken + ` date=2026-12-0[34] reason=network`),
		regexp.MustCompile(`level=ERROR msg="user needs re-consent" user=` + revoked + ` date=2026-12-0[34] reason=reconsent .*hint="ask the participant to consent again: sync-all users authorize ` + revoked + `"`),
		regexp.MustCompile(`level=ERROR msg="user failed" user=` + limited + ` date=2026-12-0[34] reason=rate_limited`),
		regexp.MustCompile(`level=ERROR msg="run finished" .*users_total=6 users_ok=3 users_failed=3`),
	} {
		if !want.MatchString(log) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	// Errors go to stderr (cron mails them); successes do not.
	if !strings.Contains(r.stderr, "user failed") || strings.Contains(r.stderr, "user synced") {
		t.Errorf("stderr:\n%s", r.stderr)
	}

	// Next run: the re-consent participant is not retried, the others recover.
	w.sim.ClearFaults(broken)
	w.sim.ClearFaults(limited)
	before := w.sim.Requests(revoked, "token")
	w.clock.Add(5 * time.Minute)
	r = w.run(w.env(), "run")
	if r.code != ExitOK {
		t.Fatalf("recovery run: exit %d\n%s", r.code, w.log())
	}
	if got := w.sim.Requests(revoked, "token") - before; got != 0 {
		t.Errorf("needs_reconsent participant was retried (%d token calls)", got)
	}
	if n := strings.Count(w.log(), `msg="user needs re-consent" user=`+revoked); n != 1 {
		t.Errorf("re-consent logged %d times, want once", n)
	}
	w.assertToday(broken)
	w.assertNoSecrets(r.stdout, r.stderr)
}

func TestUserFlagDateAndDryRun(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 3})
	w.mustRun("run", "--user", "CRBM3W")
	var users []int64
	if err := w.st.Pool().QueryRow(context.Background(), `SELECT array_agg(DISTINCT user_id) FROM intraday_heart_rate`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0] != w.users["CRBM3W"].ID {
		t.Fatalf("--user CRBM3W stored data of users %v", users)
	}
	// --user syncs a participant synced a moment ago.
	w.mustRun("run", "--user", "CRBM3W")
	if run := w.lastRun(); run.UsersOK != 1 || run.UsersTotal != 1 {
		t.Errorf("second --user run: %+v", run)
	}

	r := w.run(w.env(), "run", "--user", "NOPE")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "NOPE") {
		t.Fatalf("--user NOPE: exit %d, stderr %q", r.code, r.stderr)
	}

	other := w.sim.Participants()[1].LegacyUserID
	var before int
	countRows := func() int {
		var n int
		if err := w.st.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM intraday_heart_rate) + (SELECT count(*) FROM intraday_steps)
			+ (SELECT count(*) FROM intraday_calories) + (SELECT count(*) FROM daily_summaries) + (SELECT count(*) FROM sync_runs)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before = countRows()
	r = w.mustRun("run", "--dry-run", "--user", other)
	if got := countRows(); got != before {
		t.Fatalf("--dry-run changed the row count from %d to %d", before, got)
	}
	if !regexp.MustCompile(`msg="user synced" user=` + other + ` date=2026-12-0[34] records_inserted=[1-9][0-9]* .*dry_run=true`).MatchString(w.log()) {
		t.Errorf("dry run did not report what it would insert:\n%s", w.log())
	}

	// --date re-syncs a past day whatever the watermark.
	w.clock.Add(48 * time.Hour)
	w.mustRun("run", "--user", "CRBM3W", "--date", "2026-12-03")
	w.assertMatchesSim("CRBM3W", 2026, 12, 3)
	if !strings.Contains(w.log(), `msg="user synced" user=CRBM3W date=2026-12-03`) {
		t.Errorf("--date run not logged with its date")
	}
}

func TestTwoConcurrentRunsShareTheWork(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 12, sim: healthsim.Options{RotateRefreshTokens: true}})
	// Every token is near expiry, so each participant's sync starts with a refresh: the test
	// then also proves no refresh token is used twice.
	if _, err := w.st.Pool().Exec(context.Background(), `UPDATE fitbit_users SET token_expires_at = $1`, w.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range 2 {
		env := w.env(EnvLogFile, filepath.Join(w.dir, "host"+string(rune('a'+i)), "sync.log"))
		wg.Go(func() { results[i] = w.run(env, "run", "--concurrency", "4") })
	}
	wg.Wait()
	synced := 0
	for i, r := range results {
		if r.code != ExitOK {
			t.Fatalf("run %d: exit %d: %s", i, r.code, r.stderr)
		}
		b, _ := os.ReadFile(filepath.Join(w.dir, "host"+string(rune('a'+i)), "sync.log"))
		synced += strings.Count(string(b), `msg="user synced"`)
	}
	if synced != 12 {
		t.Errorf("participants synced %d times across both runs, want exactly 12", synced)
	}
	if st := w.sim.Stats(); st.RefreshTokenReuse != 0 || st.InvalidGrants != 0 {
		t.Errorf("simulator stats: %+v", st)
	}
	w.assertAllMatch()
}

func TestHostLockSkipsOverlappingRun(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 1})
	release, held, err := lockHost(filepath.Join(w.dir, "logs", "sync-all.lock"))
	if err != nil || !held {
		t.Fatalf("lock: %v %v", held, err)
	}
	defer release()
	r := w.run(w.env(), "run")
	if r.code != ExitOK {
		t.Fatalf("exit %d", r.code)
	}
	if !strings.Contains(w.log(), `msg="previous run still active"`) {
		t.Errorf("log:\n%s", w.log())
	}
	var n int
	if err := w.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM sync_runs`).Scan(&n); err != nil || n != 0 {
		t.Errorf("a locked-out run recorded %d runs (%v)", n, err)
	}
}

func TestLogIsGreppable(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	w.mustRun("run")
	log := w.log()
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !regexp.MustCompile(`^time=2026-12-03T\d\d:\d\d:\d\d`).MatchString(line) {
			t.Errorf("line without a dated timestamp: %s", line)
		}
		if strings.Contains(line, `msg="user `) && !regexp.MustCompile(` user=\S+ date=\d{4}-\d\d-\d\d`).MatchString(line) {
			t.Errorf("participant line without user= and date=: %s", line)
		}
	}
	if !regexp.MustCompile(`msg="user synced" user=CRBM3W date=2026-12-0[34]`).MatchString(log) {
		t.Errorf("grep CRBM3W finds no synced line:\n%s", log)
	}
	if !regexp.MustCompile(`msg="run finished" run_id=\d+ users_total=2 users_ok=2 users_failed=0 users_skipped=0 users_unchanged=0 records_inserted=\d+ records_updated=0 records_unchanged=0 .*duration=`).MatchString(log) {
		t.Errorf("no run finished summary:\n%s", log)
	}
}

func TestRunRefusesPlaintextTokensUnlessAllowed(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 1})
	env := w.env()
	delete(env, "SYNC_TOKEN_KEY")
	r := w.run(env, "run")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "SYNC_TOKEN_KEY") {
		t.Fatalf("no key: exit %d, stderr %q", r.code, r.stderr)
	}
	env["SYNC_TOKEN_KEY"] = "c2hvcnQ=" // 5 bytes
	if r := w.run(env, "run"); r.code != ExitUsage || strings.Contains(r.stderr, "c2hvcnQ") {
		t.Fatalf("bad key: exit %d, stderr %q (must not echo the key)", r.code, r.stderr)
	}
	// The fixture enrolled the participant with an encrypted token, so a plaintext run cannot
	// read it: start from a plaintext row, as a deployment from before the key would have.
	if _, err := w.st.Pool().Exec(context.Background(), `UPDATE fitbit_users SET access_token = $1, refresh_token = $2`,
		w.users["CRBM3W"].Token.AccessToken, w.users["CRBM3W"].Token.RefreshToken); err != nil {
		t.Fatal(err)
	}
	delete(env, "SYNC_TOKEN_KEY")
	if r := w.run(env, "run", "--allow-plaintext-tokens"); r.code != ExitOK {
		t.Fatalf("--allow-plaintext-tokens: exit %d, %s", r.code, r.stderr)
	}
	if !strings.Contains(w.log(), "tokens are stored unencrypted") {
		t.Errorf("no warning about plaintext tokens")
	}
}

func TestUsersRekeyRotatesEveryToken(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 3})
	newKey, err := tokencrypt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := tokencrypt.ParseKeys(newKey)
	if err != nil {
		t.Fatal(err)
	}
	r := w.run(w.env("SYNC_TOKEN_KEY", newKey+","+w.key), "users", "rekey")
	if r.code != ExitOK || !strings.Contains(r.stdout, "re-encrypted the tokens of 3 participants under key "+ring.CurrentID()) {
		t.Fatalf("rekey: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	var old int
	if err := w.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM fitbit_users WHERE refresh_token NOT LIKE $1`, "enc:v1:"+ring.CurrentID()+":%").Scan(&old); err != nil || old != 0 {
		t.Fatalf("%d rows not under the new key (%v)", old, err)
	}
	// The old key can go: a run with only the new key reads every token.
	w.key = newKey
	w.mustRun("run")
	if run := w.lastRun(); run.UsersOK != 3 {
		t.Fatalf("run after rotation: %+v", run)
	}
	w.extraSecrets = append(w.extraSecrets, newKey)
	w.assertNoSecrets(r.stdout, r.stderr)
}

func TestSignalFinishesInFlightAndStartsNoNewParticipant(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	w := newWorld(t, worldOpts{participants: 5, wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "dataPoints:rollUp") {
				once.Do(cancel) // SIGTERM while the first participant's day is being fetched
			}
			h.ServeHTTP(rw, r)
		})
	}})
	r := w.runCtx(ctx, w.env(), "run", "--concurrency", "1")
	if r.code != ExitPartial {
		t.Fatalf("interrupted run: exit %d, want %d\n%s", r.code, ExitPartial, w.log())
	}
	run := w.lastRun()
	if run.Status != store.RunPartial || run.UsersOK+run.UsersFailed >= 5 || run.UsersSkipped == 0 {
		t.Fatalf("interrupted run record: %+v", run)
	}
	if !regexp.MustCompile(`msg="run finished" .*users_total=5 .*error="interrupted by a signal`).MatchString(w.log()) {
		t.Errorf("no summary after the signal:\n%s", w.log())
	}
	// No participant-day is half written and no lease is left behind.
	var halves, leases int
	err := w.st.Pool().QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM (SELECT user_id, local_date FROM intraday_heart_rate GROUP BY 1, 2) h
		  WHERE NOT EXISTS (SELECT 1 FROM daily_summaries d WHERE d.user_id = h.user_id AND d.date = h.local_date)),
		(SELECT count(*) FROM fitbit_users WHERE lease_holder IS NOT NULL)`).Scan(&halves, &leases)
	if err != nil {
		t.Fatal(err)
	}
	if halves != 0 || leases != 0 {
		t.Errorf("%d half-written days, %d leases left", halves, leases)
	}
	// The next run completes the rest.
	w.clock.Add(5 * time.Minute)
	w.mustRun("run")
	w.assertAllMatch()
}

func TestNamedParticipantLeasedElsewhereIsReported(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	// Another host holds CRBM3W's lease.
	if _, err := w.st.Pool().Exec(context.Background(), `UPDATE fitbit_users SET lease_holder = 'other-host:1:1', lease_expires_at = $1 WHERE legacy_user_id = 'CRBM3W'`,
		w.clock.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	w.mustRun("run", "--user", "CRBM3W")
	if !regexp.MustCompile(`level=WARN msg="user skipped" user=CRBM3W date=\S+ reason=leased`).MatchString(w.log()) {
		t.Errorf("no line says why CRBM3W was not synced:\n%s", w.log())
	}
	if run := w.lastRun(); run.UsersSkipped != 1 || run.UsersOK != 0 {
		t.Errorf("run: %+v", run)
	}
}
