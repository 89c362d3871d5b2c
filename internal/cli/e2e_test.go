package cli

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/healthsim"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
	"github.com/studylab/sync-all/internal/tokencrypt"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is the test's time, shared by the job and the simulator.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// world is one end-to-end fixture: a fresh migrated database, a simulator over real HTTP, and
// participants enrolled with grants the simulator issued.
type world struct {
	t     *testing.T
	clock *clock
	sim   *healthsim.Server
	url   string
	dsn   string
	st    *store.Store
	dir   string
	users map[string]store.User // by legacy id
	key   string                // SYNC_TOKEN_KEY of the job
	// secrets collects every secret that must never be printed.
	extraSecrets []string
	// outputs is everything every command printed, scanned for secrets at cleanup.
	mu      sync.Mutex
	outputs []string
}

type worldOpts struct {
	participants int
	start        time.Time
	sim          healthsim.Options
	// wrap, when set, sees every request before the simulator does.
	wrap func(http.Handler) http.Handler
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	if o.participants == 0 {
		o.participants = 6
	}
	if o.start.IsZero() {
		o.start = time.Date(2026, 12, 3, 14, 7, 0, 0, time.UTC)
	}
	key, err := tokencrypt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, clock: &clock{t: o.start}, dir: t.TempDir(), users: map[string]store.User{}, key: key}
	w.extraSecrets = append(w.extraSecrets, key)
	o.sim.Now = w.clock.Now
	o.sim.Participants = o.participants
	w.sim = healthsim.New(o.sim)
	var h http.Handler = w.sim
	if o.wrap != nil {
		h = o.wrap(w.sim)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	w.url = srv.URL
	w.dsn = pgtest.DSN(t)
	st, err := store.Open(context.Background(), w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture's own store reads tokens the job encrypted.
	if st.Keys, err = tokencrypt.ParseKeys(key); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	w.st = st
	for _, p := range w.sim.Participants() {
		w.enroll(p.LegacyUserID)
	}
	// Every end-to-end test is also a leak test: nothing any command printed or logged holds a
	// token, code, client secret, key or password.
	t.Cleanup(w.scanForSecrets)
	return w
}

// scanForSecrets checks every output and every log file the test's commands wrote against
// every secret the simulator issued and the test used.
func (w *world) scanForSecrets() {
	w.mu.Lock()
	haystacks := append([]string(nil), w.outputs...)
	w.mu.Unlock()
	filepath.WalkDir(w.dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".log") {
			b, _ := os.ReadFile(path)
			haystacks = append(haystacks, string(b))
		}
		return nil
	})
	secrets := append(w.sim.Secrets(), w.extraSecrets...)
	secrets = append(secrets, "sim-secret", "hunter2")
	for _, sec := range secrets {
		if len(sec) < 6 {
			continue
		}
		for _, h := range haystacks {
			if strings.Contains(h, sec) {
				w.t.Errorf("secret %.4s... (%d chars) was printed or logged", sec, len(sec))
				break
			}
		}
	}
}

// enroll stores a participant as if it had consented (the consent flow is tested on its own).
func (w *world) enroll(legacy string) store.User {
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
	return u
}

func (w *world) env(extra ...string) map[string]string {
	env := map[string]string{
		EnvDatabaseURL:    w.dsn,
		EnvClientID:       "sim-client",
		EnvClientSecret:   "sim-secret",
		EnvHealthAPIURL:   w.url + "/",
		EnvAuthURL:        w.url + "/o/oauth2/v2/auth",
		EnvTokenURL:       w.url + "/token",
		EnvLogFile:        filepath.Join(w.dir, "logs", "sync.log"),
		tokencrypt.EnvKey: w.key,
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

type result struct {
	code           int
	stdout, stderr string
}

// run drives the whole CLI in process, as cron would run the binary.
func (w *world) run(env map[string]string, args ...string) result {
	w.t.Helper()
	return w.runCtx(context.Background(), env, args...)
}

// runCtx runs the CLI with ctx standing for the process's signal context.
func (w *world) runCtx(ctx context.Context, env map[string]string, args ...string) result {
	var out, errb bytes.Buffer
	e := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }, Now: w.clock.Now}
	code := e.Main(ctx, args)
	w.mu.Lock()
	w.outputs = append(w.outputs, out.String(), errb.String())
	w.mu.Unlock()
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (w *world) mustRun(args ...string) result {
	w.t.Helper()
	r := w.run(w.env(), args...)
	if r.code != 0 {
		w.t.Fatalf("sync-all %s: exit %d\nstderr: %s\nlog:\n%s", strings.Join(args, " "), r.code, r.stderr, w.log())
	}
	return r
}

func (w *world) log() string {
	b, _ := os.ReadFile(filepath.Join(w.dir, "logs", "sync.log"))
	return string(b)
}

// lastRun returns the newest sync_runs row.
func (w *world) lastRun() store.Run {
	w.t.Helper()
	var r store.Run
	err := w.st.Pool().QueryRow(context.Background(), `SELECT id, users_total, users_ok, users_failed, users_skipped,
		records_inserted, records_updated, records_unchanged, status FROM sync_runs ORDER BY id DESC LIMIT 1`).
		Scan(&r.ID, &r.UsersTotal, &r.UsersOK, &r.UsersFailed, &r.UsersSkipped, &r.Counts.Inserted, &r.Counts.Updated, &r.Counts.Unchanged, &r.Status)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// assertMatchesSim compares every stored row of a participant's local day with what the
// simulator serves for it now, window by window, in both directions.
func (w *world) assertMatchesSim(legacy string, y int, m time.Month, d int) {
	w.t.Helper()
	ctx := context.Background()
	u := w.users[legacy]
	truth := w.sim.Truth(legacy, y, m, d)
	date := fmt.Sprintf("%04d-%02d-%02d", y, m, d)

	got := map[string]string{}
	rows, err := w.st.Pool().Query(ctx, `SELECT 'hr', ts, bpm_avg::float8, bpm_min::float8, bpm_max::float8 FROM intraday_heart_rate WHERE user_id=$1 AND ts >= $2 AND ts < $3
		UNION ALL SELECT 'steps', ts, steps::float8, 0, 0 FROM intraday_steps WHERE user_id=$1 AND ts >= $2 AND ts < $3
		UNION ALL SELECT 'kcal', ts, kcal::float8, 0, 0 FROM intraday_calories WHERE user_id=$1 AND ts >= $2 AND ts < $3`, u.ID, truth.Start, truth.End)
	if err != nil {
		w.t.Fatal(err)
	}
	for rows.Next() {
		var kind string
		var ts time.Time
		var a, b, c float64
		if err := rows.Scan(&kind, &ts, &a, &b, &c); err != nil {
			w.t.Fatal(err)
		}
		got[kind+" "+ts.UTC().Format(time.RFC3339)] = fmt.Sprintf("%.2f %.2f %.2f", a, b, c)
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	want := map[string]string{}
	for _, h := range truth.HeartRate {
		want["hr "+h.Start.UTC().Format(time.RFC3339)] = fmt.Sprintf("%.2f %.2f %.2f", float32(h.Avg), float32(h.Min), float32(h.Max))
	}
	for _, s := range truth.Steps {
		want["steps "+s.Start.UTC().Format(time.RFC3339)] = fmt.Sprintf("%.2f %.2f %.2f", float64(s.Count), 0.0, 0.0)
	}
	for _, c := range truth.Calories {
		want["kcal "+c.Start.UTC().Format(time.RFC3339)] = fmt.Sprintf("%.2f %.2f %.2f", float32(c.Kcal), 0.0, 0.0)
	}
	var diffs []string
	for k, v := range want {
		if got[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: got %q want %q", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: stored %q but the simulator has no such window", k, v))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		w.t.Fatalf("%s %s: %d of %d windows differ (showing 10):\n%s", legacy, date, len(diffs), len(want), strings.Join(diffs[:min(10, len(diffs))], "\n"))
	}
	if len(want) == 0 {
		return
	}
	// The summary row: every column the simulator reports, and NULL where it reports nothing.
	for col, v := range truth.Summary {
		var stored *float64
		err := w.st.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT %s::float8 FROM daily_summaries WHERE user_id=$1 AND date=$2`, col), u.ID, date).Scan(&stored)
		if err != nil {
			w.t.Fatalf("%s %s summary %s: %v", legacy, date, col, err)
		}
		switch {
		case v == nil && stored != nil:
			w.t.Errorf("%s %s %s: stored %v, the API reported nothing (want NULL)", legacy, date, col, *stored)
		case v != nil && stored == nil:
			w.t.Errorf("%s %s %s: NULL, want %v", legacy, date, col, *v)
		case v != nil && math.Abs(*v-*stored) > 0.01+1e-6*math.Abs(*v):
			w.t.Errorf("%s %s %s: stored %v, want %v", legacy, date, col, *stored, *v)
		}
	}
}

// localDate returns the participant's local date at the clock's now.
func (w *world) localDate(legacy string) (int, time.Month, int) {
	for _, p := range w.sim.Participants() {
		if p.LegacyUserID == legacy {
			loc, err := time.LoadLocation(p.TimeZone)
			if err != nil {
				w.t.Fatal(err)
			}
			return w.clock.Now().In(loc).Date()
		}
	}
	w.t.Fatalf("no participant %s", legacy)
	return 0, 0, 0
}

// assertToday checks the participant's local today.
func (w *world) assertToday(legacy string) {
	w.t.Helper()
	y, m, d := w.localDate(legacy)
	w.assertMatchesSim(legacy, y, m, d)
}

// assertAllMatch checks every participant's local today (a first sync fetches only today).
func (w *world) assertAllMatch() {
	w.t.Helper()
	for legacy := range w.users {
		y, m, d := w.localDate(legacy)
		w.assertMatchesSim(legacy, y, m, d)
	}
}

// assertNoSecrets scans the log file, stdout and stderr for every secret the simulator issued.
func (w *world) assertNoSecrets(outputs ...string) {
	w.t.Helper()
	haystacks := append([]string{w.log()}, outputs...)
	secrets := append(w.sim.Secrets(), w.extraSecrets...)
	if len(secrets) < 3 {
		w.t.Fatalf("the simulator reported only %d secrets; the scan would prove nothing", len(secrets))
	}
	for _, s := range secrets {
		if len(s) < 6 {
			continue
		}
		for i, h := range haystacks {
			if strings.Contains(h, s) {
				w.t.Errorf("secret %.4s... appears in output %d", s, i)
			}
		}
	}
}

func TestRunSyncsEveryParticipantAndConverges(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 6})
	r := w.mustRun("run")
	run := w.lastRun()
	if run.UsersTotal != 6 || run.UsersOK != 6 || run.UsersFailed != 0 || run.Status != store.RunOK {
		t.Fatalf("first run: %+v", run)
	}
	if run.Counts.Inserted == 0 {
		t.Fatalf("first run inserted nothing: %+v", run)
	}
	w.assertAllMatch()

	// A second run at once: every participant is within --min-interval, so nothing is done.
	w.mustRun("run")
	if run := w.lastRun(); run.UsersSkipped != 6 || run.Counts.Inserted != 0 || run.Counts.Updated != 0 {
		t.Fatalf("immediate re-run: %+v", run)
	}

	// Five minutes later with no new device sync: every participant is unchanged.
	for legacy := range w.users {
		w.sim.SetDeviceOffline(legacy, w.clock.Now())
	}
	w.clock.Add(5 * time.Minute)
	w.mustRun("run")
	if run := w.lastRun(); run.UsersOK != 6 || run.Counts.Inserted != 0 || run.Counts.Updated != 0 {
		t.Fatalf("run without new device data: %+v", run)
	}

	// Forty minutes later and a device sync each: exactly the newly visible windows are added
	// and revised ones replaced.
	w.clock.Add(40 * time.Minute)
	for legacy := range w.users {
		w.sim.SyncDevice(legacy)
	}
	w.mustRun("run")
	if run := w.lastRun(); run.Counts.Inserted == 0 {
		t.Fatalf("run after device sync inserted nothing: %+v", run)
	}
	w.assertAllMatch()
	w.assertNoSecrets(r.stdout, r.stderr)

	// Every token at rest is ciphertext.
	var plain int
	if err := w.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM fitbit_users WHERE refresh_token NOT LIKE 'enc:v1:%'`).Scan(&plain); err != nil {
		t.Fatal(err)
	}
	if plain != 0 {
		t.Errorf("%d participants still have a plaintext refresh token after refreshes", plain)
	}
}
