package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/healthsim"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
	"github.com/studylab/sync-all/internal/tokencrypt"
)

// world is one fixture: a migrated database, the simulator over real HTTP on the real clock
// (the binary runs on the real clock too, so the simulator cannot be driven by a fake one), and
// participants enrolled with grants the simulator issued. Every participant's device is frozen
// at the start (no device sync afterwards), so what the API serves for a day never changes during
// a test: every complete upsert of a day writes exactly the simulator's Truth for it, and a stored
// day that differs from Truth is a half-written one.
type world struct {
	t      *testing.T
	sim    *healthsim.Server
	tap    *tap
	url    string
	dsn    string
	st     *store.Store
	dir    string
	key    string                // SYNC_TOKEN_KEY
	users  map[string]store.User // by legacy id
	legacy []string              // enrollment order
	zones  map[string]*time.Location
	now    func() time.Time // the simulator's clock (skewed in the clock-skew test)
	seq    int              // names each process started (application_name, log file)
}

type worldOpts struct {
	participants int
	sim          healthsim.Options
	dsn          string // "" = a fresh database from pgtest
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	if o.participants == 0 {
		o.participants = 20
	}
	o.sim.Participants = o.participants
	if o.sim.Now == nil {
		o.sim.Now = time.Now
	}
	if o.sim.RateLimitPerMinute == 0 {
		// The quota is tested in healthsim and health; here it would only add 429s to faults
		// that are meant to be the only ones.
		o.sim.RateLimitPerMinute = -1
	}
	key, err := tokencrypt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: t.TempDir(), key: key, users: map[string]store.User{}, zones: map[string]*time.Location{}}
	w.now = o.sim.Now
	w.sim = healthsim.New(o.sim)
	w.tap = &tap{next: w.sim}
	srv := httptest.NewServer(w.tap)
	t.Cleanup(srv.Close)
	w.url = srv.URL
	w.dsn = o.dsn
	if w.dsn == "" {
		w.dsn = pgtest.DSN(t)
	}
	w.st = openStore(t, w.dsn, key)
	for _, p := range w.sim.Participants() {
		loc, err := time.LoadLocation(p.TimeZone)
		if err != nil {
			t.Fatal(err)
		}
		w.zones[p.LegacyUserID] = loc
		w.enroll(p.LegacyUserID)
		w.sim.SetDeviceOffline(p.LegacyUserID, w.simNow())
	}
	return w
}

// openStore opens the test's own connection to the job's database.
func openStore(t *testing.T, dsn, key string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	// The same key as the job's (SYNC_TOKEN_KEY), so both read each other's tokens.
	keys, err := tokencrypt.ParseKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	st.Keys, st.RequireKey = keys, true
	return st
}

// simNow is the simulator's clock.
func (w *world) simNow() time.Time { return w.now() }

// enroll stores a participant as if it had consented (the consent flow is tested in cli).
func (w *world) enroll(legacy string) {
	w.t.Helper()
	access, refresh, exp := w.sim.Grant(legacy, nil)
	u, err := w.st.CreateUser(context.Background(), store.NewUser{
		LegacyUserID: legacy, Label: "participant " + legacy, Status: store.StatusActive,
		Token: &auth.Token{AccessToken: access, RefreshToken: refresh, Expiry: exp, Scopes: auth.RequiredScopes},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.users[legacy] = u
	w.legacy = append(w.legacy, legacy)
}

// exec runs SQL on the job's database from the test.
func (w *world) exec(sql string, args ...any) int64 {
	w.t.Helper()
	tag, err := w.st.Pool().Exec(context.Background(), sql, args...)
	if err != nil {
		w.t.Fatalf("%s: %v", strings.Fields(sql)[0], err)
	}
	return tag.RowsAffected()
}

func (w *world) queryInt(sql string, args ...any) int64 {
	w.t.Helper()
	var n int64
	if err := w.st.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// nearExpiry makes every stored access token expire in a minute, inside the job's 10-minute
// refresh margin: every participant's next sync starts with a refresh, the moment a crash is
// most dangerous (with rotating refresh tokens, the new one exists only in the process).
func (w *world) nearExpiry() {
	w.t.Helper()
	w.exec(`UPDATE fitbit_users SET token_expires_at = now() + interval '1 minute'`)
}

// leaseSlack absorbs the time between a claim and the test's look at it.
const leaseSlack = 5 * time.Second

// checkLeases fails the test if any lease ends later than lease from now: a claim must free
// itself after the lease (user timeout + 1 minute), however its holder died.
func (w *world) checkLeases(lease time.Duration) {
	w.t.Helper()
	var n int64
	var worst *time.Duration
	err := w.st.Pool().QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE lease_expires_at > now() + $1::bigint * interval '1 microsecond'),
		max(lease_expires_at - now()) FROM fitbit_users`, (lease+leaseSlack).Microseconds()).Scan(&n, &worst)
	if err != nil {
		w.t.Fatal(err)
	}
	if n > 0 {
		w.t.Fatalf("%d leases end more than %s from now (longest %v): a claim would outlive its lease", n, lease, *worst)
	}
}

// expireLeases moves the lease clock: every lease left by a killed run ends now, as it would
// once its time passed (the binary reads the host clock, which a test cannot move). Only call it
// after checkLeases.
func (w *world) expireLeases() int64 {
	w.t.Helper()
	return w.exec(`UPDATE fitbit_users SET lease_expires_at = now() - interval '1 second' WHERE lease_expires_at IS NOT NULL`)
}

// deleteData removes every stored row of the participant, so its next sync inserts a whole day.
func (w *world) deleteData(legacy string) {
	w.t.Helper()
	id := w.users[legacy].ID
	for _, tbl := range []string{"intraday_heart_rate", "intraday_steps", "intraday_calories", "daily_summaries"} {
		w.exec(`DELETE FROM `+tbl+` WHERE user_id = $1`, id)
	}
}

// rowCount is the number of rows in the four data tables.
func (w *world) rowCount() int64 {
	return w.queryInt(`SELECT (SELECT count(*) FROM intraday_heart_rate) + (SELECT count(*) FROM intraday_steps)
		+ (SELECT count(*) FROM intraday_calories) + (SELECT count(*) FROM daily_summaries)`)
}

// backendsGone waits until the database has no session left of the named process: a killed
// client's backend finishes (and rolls back) on its own time, and checks must see its end.
func (w *world) backendsGone(app string) {
	w.t.Helper()
	if !eventually(30*time.Second, func() bool {
		return w.queryInt(`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app) == 0
	}) {
		w.t.Fatalf("sessions of %s still open 30s after it died", app)
	}
}

// eventually polls cond until it holds or timeout passes. It waits for a real event (a backend
// going away, a lock wait starting) that gives no notification of its own.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// date is a civil date.
type date struct {
	y int
	m time.Month
	d int
}

func (d date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.y, d.m, d.d) }

func dateOf(t time.Time) date {
	y, m, d := t.Date()
	return date{y, m, d}
}

// today is the participant's local date on the simulator's clock.
func (w *world) today(legacy string) date { return dateOf(w.simNow().In(w.zones[legacy])) }

// storedDays lists every (participant, local date) with a row in any data table.
func (w *world) storedDays() map[string][]date {
	w.t.Helper()
	rows, err := w.st.Pool().Query(context.Background(), `
		SELECT user_id, local_date FROM intraday_heart_rate UNION SELECT user_id, local_date FROM intraday_steps
		UNION SELECT user_id, local_date FROM intraday_calories UNION SELECT user_id, date FROM daily_summaries`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	byID := map[int64]string{}
	for l, u := range w.users {
		byID[u.ID] = l
	}
	out := map[string][]date{}
	for rows.Next() {
		var id int64
		var d time.Time
		if err := rows.Scan(&id, &d); err != nil {
			w.t.Fatal(err)
		}
		out[byID[id]] = append(out[byID[id]], dateOf(d))
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return out
}

// compareDay lists how a stored participant-day differs from what the simulator serves for it:
// every window of every series both ways (keyed by instant, selected by local_date so the civil
// columns are checked too) and every summary column, NULL where the API reports nothing. A stored
// day without its summary row differs: the upsert writes the summary in the day's transaction.
func (w *world) compareDay(legacy string, d date) []string {
	w.t.Helper()
	ctx := context.Background()
	id := w.users[legacy].ID
	truth := w.sim.Truth(legacy, d.y, d.m, d.d)
	want := map[string]string{}
	for _, h := range truth.HeartRate {
		want["hr "+h.Start.UTC().Format(time.RFC3339)] = real(h.Avg) + " " + real(h.Min) + " " + real(h.Max)
	}
	for _, s := range truth.Steps {
		want["steps "+s.Start.UTC().Format(time.RFC3339)] = fmt.Sprint(s.Count)
	}
	for _, c := range truth.Calories {
		want["kcal "+c.Start.UTC().Format(time.RFC3339)] = real(c.Kcal)
	}
	got := map[string]string{}
	for _, q := range []struct{ kind, sql string }{
		{"hr", `SELECT ts, bpm_avg::text || ' ' || bpm_min::text || ' ' || bpm_max::text FROM intraday_heart_rate WHERE user_id = $1 AND local_date = $2`},
		{"steps", `SELECT ts, steps::text FROM intraday_steps WHERE user_id = $1 AND local_date = $2`},
		{"kcal", `SELECT ts, kcal::text FROM intraday_calories WHERE user_id = $1 AND local_date = $2`},
	} {
		rows, err := w.st.Pool().Query(ctx, q.sql, id, d.String())
		if err != nil {
			w.t.Fatal(err)
		}
		for rows.Next() {
			var ts time.Time
			var v string
			if err := rows.Scan(&ts, &v); err != nil {
				w.t.Fatal(err)
			}
			got[q.kind+" "+ts.UTC().Format(time.RFC3339)] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			w.t.Fatal(err)
		}
	}

	var diffs []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s %s %s: missing, want %s", legacy, d, k, v))
		} else if g != v {
			diffs = append(diffs, fmt.Sprintf("%s %s %s: stored %s, want %s", legacy, d, k, g, v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s %s %s: stored %s, the simulator has no such window", legacy, d, k, v))
		}
	}

	keys := healthsim.SummaryKeys()
	cols := make([]string, len(keys))
	for i, k := range keys {
		cols[i] = k + "::float8"
	}
	vals := make([]*float64, len(keys))
	dest := make([]any, len(keys))
	for i := range vals {
		dest[i] = &vals[i]
	}
	err := w.st.Pool().QueryRow(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM daily_summaries WHERE user_id = $1 AND date = $2`, id, d.String()).Scan(dest...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		diffs = append(diffs, fmt.Sprintf("%s %s: no daily_summaries row", legacy, d))
	case err != nil:
		w.t.Fatal(err)
	default:
		for i, k := range keys {
			v, s := truth.Summary[k], vals[i]
			switch {
			case v == nil && s != nil:
				diffs = append(diffs, fmt.Sprintf("%s %s %s: stored %v, want NULL", legacy, d, k, *s))
			case v != nil && s == nil:
				diffs = append(diffs, fmt.Sprintf("%s %s %s: NULL, want %v", legacy, d, k, *v))
			case v != nil && math.Abs(*v-*s) > 0.01+1e-6*math.Abs(*v):
				diffs = append(diffs, fmt.Sprintf("%s %s %s: stored %v, want %v", legacy, d, k, *s, *v))
			}
		}
	}
	sort.Strings(diffs)
	return diffs
}

// real renders v as PostgreSQL renders a real column as text: the shortest decimal that reads
// back as the same float32.
func real(v float64) string { return strconv.FormatFloat(float64(float32(v)), 'g', -1, 32) }

// checkStoredDays compares every stored participant-day with the simulator and returns how many
// days it compared and their differences. With devices frozen, a difference is a day the job
// wrote in part (or wrongly).
func (w *world) checkStoredDays() (days int, diffs []string) {
	w.t.Helper()
	for legacy, ds := range w.storedDays() {
		for _, d := range ds {
			days++
			diffs = append(diffs, w.compareDay(legacy, d)...)
		}
	}
	return days, diffs
}

// failDiffs reports differences, a few at most.
func failDiffs(t *testing.T, what string, diffs []string) {
	t.Helper()
	if len(diffs) > 0 {
		t.Fatalf("%s: %d differences from the simulator (showing 10):\n%s", what, len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n"))
	}
}

// checkConverged asserts that every participant's local today (at the end of the last run; or
// the day before, when a local midnight passed during it) is stored, and that every stored day
// equals the simulator's: the database holds exactly the simulator's data.
func (w *world) checkConverged(what string) {
	w.t.Helper()
	days, diffs := w.checkStoredDays()
	failDiffs(w.t, what, diffs)
	stored := w.storedDays()
	for _, legacy := range w.legacy {
		today := w.today(legacy)
		yesterday := dateOf(time.Date(today.y, today.m, today.d-1, 12, 0, 0, 0, time.UTC))
		found := false
		for _, d := range stored[legacy] {
			found = found || d == today || d == yesterday
		}
		if !found {
			w.t.Fatalf("%s: %s has no stored day %s (%d days stored in all)", what, legacy, today, days)
		}
	}
}

// unconverged counts participants whose local today is not stored exactly as the simulator
// serves it.
func (w *world) unconverged() int {
	w.t.Helper()
	n := 0
	for _, legacy := range w.legacy {
		if len(w.compareDay(legacy, w.today(legacy))) > 0 {
			n++
		}
	}
	return n
}

// checkGrants refreshes every participant's stored refresh token at the simulator's token
// endpoint, as the next run would: it must succeed for all (no refresh token lost or burned by a
// crash). It uses the stored grants, so call it last, or let the job refresh after it (its old
// refresh token is then answered by the rotation grace).
func (w *world) checkGrants() int {
	w.t.Helper()
	users, err := w.st.FindUsers(context.Background(), nil)
	if err != nil {
		w.t.Fatal(err)
	}
	if len(users) != len(w.legacy) {
		w.t.Fatalf("%d active participants, want %d", len(users), len(w.legacy))
	}
	for _, u := range users {
		resp, err := http.PostForm(w.url+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {u.Token.RefreshToken},
			"client_id": {"sim-client"}, "client_secret": {"sim-secret"}})
		if err != nil {
			w.t.Fatal(err)
		}
		var body struct {
			AccessToken string `json:"access_token"`
			Error       string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || body.AccessToken == "" {
			w.t.Errorf("%s: refresh with the stored refresh token: HTTP %d %s (%v): the grant is lost", u.Handle(), resp.StatusCode, body.Error, err)
		}
	}
	return len(users)
}

// checkRunsEnded asserts that no sync_runs row is left 'running' and that at least one run whose
// process died (the ones what names) was marked aborted by a later run on the host; it returns how
// many were.
func (w *world) checkRunsEnded(what string) int64 {
	w.t.Helper()
	if n := w.queryInt(`SELECT count(*) FROM sync_runs WHERE status = 'running'`); n != 0 {
		w.t.Errorf("%d sync_runs rows still 'running': %s were not marked aborted", n, what)
	}
	abandoned := w.queryInt(`SELECT count(*) FROM sync_runs WHERE status = 'aborted' AND error LIKE '%ended without recording%'`)
	if abandoned == 0 {
		w.t.Errorf("none of %s was marked aborted: the check proves nothing", what)
	}
	return abandoned
}

// checkStats asserts that the simulator never answered invalid_grant and never saw a refresh
// token presented again after its replacement was used.
func (w *world) checkStats(what string) healthsim.Stats {
	w.t.Helper()
	st := w.sim.Stats()
	if st.InvalidGrants != 0 || st.RefreshTokenReuse != 0 {
		w.t.Fatalf("%s: simulator saw %d invalid_grant answers and %d refresh token reuses, want 0 and 0 (%+v)", what, st.InvalidGrants, st.RefreshTokenReuse, st)
	}
	return st
}

// checkNoSecrets scans texts for every secret the simulator issued and the token key.
func (w *world) checkNoSecrets(texts ...string) {
	w.t.Helper()
	secrets := append(w.sim.Secrets(), w.key)
	for _, s := range secrets {
		for i, h := range texts {
			if len(s) >= 8 && strings.Contains(h, s) {
				w.t.Errorf("secret %.4s... appears in output %d", s, i)
			}
		}
	}
}

// tap passes every request to the simulator and lets a test act at two moments of a token
// request: when it arrives, and when its answer has been flushed to the client (the simulator has
// issued the new tokens; the job has not saved them yet).
type tap struct {
	next     http.Handler
	mu       sync.Mutex
	arrived  func()
	answered func(tokenAnswer)
}

// tokenAnswer is what tap saw of one token request.
type tokenAnswer struct {
	status       int
	refreshToken string // the refresh token the client presented
}

func (h *tap) set(arrived func(), answered func(tokenAnswer)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.arrived, h.answered = arrived, answered
}

func (h *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		h.next.ServeHTTP(w, r)
		return
	}
	h.mu.Lock()
	arrived, answered := h.arrived, h.answered
	h.mu.Unlock()
	if arrived != nil {
		arrived()
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h.next.ServeHTTP(sw, r)
	if answered != nil {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		answered(tokenAnswer{status: sw.status, refreshToken: r.PostForm.Get("refresh_token")})
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// proc is one sync-all process.
type proc struct {
	name    string // application_name of its database sessions
	log     string // its SYNC_LOG_FILE
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	stderr  bytes.Buffer
	done    chan struct{}
	started time.Time
	elapsed time.Duration
}

// result is how a process ended.
type result struct {
	code    int  // exit code; -1 when killed
	killed  bool // SIGKILL ended it (it was still running)
	stdout  string
	stderr  string
	elapsed time.Duration
}

// runArgs are the flags every test passes: --min-interval 0s, because tests run again at once,
// and a request ceiling far above what the simulator needs, so pacing does not stretch a run.
var runArgs = []string{"run", "--min-interval", "0s", "--max-rps", "2000"}

// start starts `sync-all <args>` with the world's environment; logFile "" = the world's shared
// log (one host: one lock file beside it).
func (w *world) start(logFile string, args ...string) *proc {
	w.t.Helper()
	return w.startDSN(w.dsn, logFile, args...)
}

func (w *world) startDSN(dsn, logFile string, args ...string) *proc {
	w.t.Helper()
	w.seq++
	p := &proc{name: fmt.Sprintf("reliability-%d", w.seq), log: logFile, done: make(chan struct{})}
	if p.log == "" {
		p.log = w.sharedLog()
	}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = []string{
		"DATABASE_URL=" + withParam(dsn, "application_name", p.name),
		"GOOGLE_CLIENT_ID=sim-client",
		"GOOGLE_CLIENT_SECRET=sim-secret",
		"HEALTH_API_URL=" + w.url + "/",
		"GOOGLE_AUTH_URL=" + w.url + "/o/oauth2/v2/auth",
		"GOOGLE_TOKEN_URL=" + w.url + "/token",
		"SYNC_LOG_FILE=" + p.log,
		"SYNC_TOKEN_KEY=" + w.key,
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.elapsed = time.Since(p.started)
		close(p.done)
	}()
	return p
}

func (w *world) sharedLog() string { return filepath.Join(w.dir, "host", "sync.log") }

// kill sends SIGKILL: no deferred function, signal handler or rollback of the job runs.
func (p *proc) kill() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }

// wait waits for the process to end (a test bug if it takes more than timeout).
func (p *proc) wait(t *testing.T, timeout time.Duration) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		<-p.done
		t.Fatalf("%s did not end within %s; stderr:\n%s", p.name, timeout, p.stderr.String())
	}
	st := p.cmd.ProcessState
	ws, _ := st.Sys().(syscall.WaitStatus)
	return result{code: st.ExitCode(), killed: ws.Signaled() && ws.Signal() == syscall.SIGKILL,
		stdout: p.stdout.String(), stderr: p.stderr.String(), elapsed: p.elapsed}
}

// run runs the binary to its end and returns how it ended.
func (w *world) run(logFile string, args ...string) result {
	w.t.Helper()
	p := w.start(logFile, args...)
	return p.wait(w.t, 5*time.Minute)
}

// mustRun runs the binary and fails the test unless it exits 0.
func (w *world) mustRun(logFile string, args ...string) result {
	w.t.Helper()
	r := w.run(logFile, args...)
	if r.code != 0 {
		w.t.Fatalf("sync-all %s: exit %d\nstderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// withParam adds a query parameter to a postgres:// URL.
func withParam(dsn, k, v string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// userLine is one participant's line of a run's log.
type userLine struct{ msg, user, reason, line string }

var userLineRE = regexp.MustCompile(`msg="(user synced|user unchanged|user failed|user needs re-consent)" user=(\S+)(?: date=\S+)?(?: reason=(\S+))?.*`)

// userLines returns the participant lines of a log.
func userLines(log string) []userLine {
	var out []userLine
	for _, m := range userLineRE.FindAllStringSubmatch(log, -1) {
		out = append(out, userLine{msg: m[1], user: m[2], reason: m[3], line: m[0]})
	}
	return out
}

// runRow is a sync_runs row.
type runRow struct {
	id                           int64
	total, ok, failed, skipped   int
	inserted, updated, unchanged int64
	status, hostname             string
	errText                      *string
}

// runs returns the sync_runs rows, oldest first.
func (w *world) runs() []runRow {
	w.t.Helper()
	rows, err := w.st.Pool().Query(context.Background(), `SELECT id, users_total, users_ok, users_failed, users_skipped,
		records_inserted, status FROM sync_runs ORDER BY id`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	var out []runRow
	for rows.Next() {
		var r runRow
		if err := rows.Scan(&r.id, &r.total, &r.ok, &r.failed, &r.skipped, &r.inserted, &r.status); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return out
}
