package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/healthsim"
	"github.com/studylab/sync-all/internal/store"
	"github.com/studylab/sync-all/internal/tokencrypt"
)

// E2EConfig sizes the end-to-end scenarios.
type E2EConfig struct {
	Bin     string                        // the sync-all binary
	DSN     func(db string) string        // DSN of a database on the benchmark's cluster
	NewDB   func(name string) error       // creates a migrated database
	Dir     string                        // logs of every run
	Latency time.Duration                 // added to every simulator request
	Log     func(format string, a ...any) // progress

	Sequential int // participants of the sequential baseline (--concurrency 1)
	First      int // participants of the first sync
	Steady     int // participants of the large steady state (First of them synced for real)
	Scale      int // participants of the scale-out comparison

	Concurrency      int     // --concurrency of the tuned runs
	MaxRPS           float64 // --max-rps of the tuned runs
	ScaleConcurrency int     // --concurrency of each process in the scale-out comparison
	PageSize         int     // the simulator's page cap
}

// RunResult is one process (or, for scale-out, several started together) of `sync-all run`.
type RunResult struct {
	Name         string
	Flags        string
	Processes    int
	Participants int // participants the run(s) finished (ok or failed), from sync_runs
	Failed       int
	Wall         time.Duration
	APICalls     int64 // Google Health API requests the simulator received
	TokenCalls   int64 // token endpoint requests
	Inserted     int64
	Updated      int64
	WALBytes     int64
	PeakRSSKiB   int64         // the largest of the processes' peak resident set (GNU time %M); -1 unknown
	JobCPU       time.Duration // user+system CPU of the sync-all processes (GNU time %U %S)
	SimCPU       time.Duration // user+system CPU of this process: the simulator and its HTTP server
	MachineCPU   time.Duration // busy CPU time of the whole machine (/proc/stat), PostgreSQL included
}

// Busy is the share of the machine's cores that were busy during the run.
func (r RunResult) Busy() float64 {
	return r.MachineCPU.Seconds() / (r.Wall.Seconds() * float64(runtime.NumCPU()))
}

// PerSec is participants finished per second of wall time.
func (r RunResult) PerSec() float64 { return float64(r.Participants) / r.Wall.Seconds() }

// CallsPer is API calls per participant.
func (r RunResult) CallsPer() float64 { return float64(r.APICalls) / float64(max(r.Participants, 1)) }

// E2EResult is every end-to-end measurement.
type E2EResult struct {
	Runs      []RunResult
	FullDay   health.Date // the local day each participant's first sync fetched
	ScaleOnce bool        // every scale-out participant was synced by exactly one process
	ScaleNote string      // how that was checked
}

// Run finds a run by name.
func (r E2EResult) Run(name string) (RunResult, bool) {
	for _, x := range r.Runs {
		if x.Name == name {
			return x, true
		}
	}
	return RunResult{}, false
}

// Names of the scenarios in E2EResult.Runs.
const (
	RunSequential = "first sync, sequential baseline"
	RunOneAtATime = "first sync, one participant at a time"
	RunFirst      = "first sync"
	RunCatchUp    = "catch-up to today"
	RunSteady     = "steady state"
	RunSteadyBig  = "steady state, large"
	RunScaleOne   = "scale-out: 1 process"
	RunScaleThree = "scale-out: 3 processes"
)

// latency delays every request before the simulator sees it and counts requests by kind.
type latency struct {
	next        http.Handler
	delay       time.Duration
	data, token atomic.Int64
}

func (l *latency) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/v4/"):
		l.data.Add(1)
	case r.URL.Path == "/token":
		l.token.Add(1)
	}
	t := time.NewTimer(l.delay)
	select {
	case <-t.C:
	case <-r.Context().Done():
		t.Stop()
		return
	}
	l.next.ServeHTTP(w, r)
}

// e2e is the running fixture.
type e2e struct {
	cfg  E2EConfig
	sim  *healthsim.Server
	lat  *latency
	url  string
	key  string
	keys *tokencrypt.Keyring
	ids  []string // simulator participants, in creation order
	zone map[string]string
	next int // ids handed out so far
	day  health.Date
	seq  int
}

// EndToEnd runs the scenarios in order: the sequential baseline, the first sync and steady
// state of First participants, the large steady state, and scale-out.
func EndToEnd(ctx context.Context, cfg E2EConfig) (E2EResult, error) {
	total := 2*cfg.Sequential + cfg.Steady + cfg.Scale
	// Tokens outlive the benchmark, so no run spends its time refreshing (refresh is measured by
	// the reliability suite); the page cap is the one observed on the real API (doc §5).
	sim := healthsim.New(healthsim.Options{Participants: total, AccessTokenLifetime: 24 * time.Hour, PageSize: cfg.PageSize})
	now := time.Now()
	e := &e2e{cfg: cfg, sim: sim, lat: &latency{next: sim, delay: cfg.Latency}, zone: map[string]string{}}
	for _, p := range sim.Participants() {
		e.ids = append(e.ids, p.LegacyUserID)
		e.zone[p.LegacyUserID] = p.TimeZone
		// Devices stop syncing now: what the API serves stays fixed for the whole benchmark, so
		// a steady-state run has nothing new to fetch.
		sim.SetDeviceOffline(p.LegacyUserID, now)
	}
	// A local day that has ended in every zone (UTC-12 to UTC+14) and that every device synced
	// after: each first sync fetches one full day.
	e.day = health.DateOf(now.UTC().Add(-36 * time.Hour))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return E2EResult{}, err
	}
	srv := &http.Server{Handler: e.lat, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	e.url = "http://" + ln.Addr().String()
	if e.key, err = tokencrypt.GenerateKey(); err != nil {
		return E2EResult{}, err
	}
	if e.keys, err = tokencrypt.ParseKeys(e.key); err != nil {
		return E2EResult{}, err
	}

	res := E2EResult{FullDay: e.day}
	add := func(r RunResult, err error) error {
		if err == nil {
			res.Runs = append(res.Runs, r)
			cfg.Log("  %-32s %6d participants in %7.2fs: %7.1f/s, %.2f API calls each, %d rows inserted, peak RSS %s",
				r.Name, r.Participants, r.Wall.Seconds(), r.PerSec(), r.CallsPer(), r.Inserted, mib(r.PeakRSSKiB))
		}
		return err
	}
	date := []string{"--date", e.day.String()}
	tuned := e.tuned(cfg.Concurrency)

	// 1. The sequential baselines: the first sync of Sequential participants one after another,
	// each making one call at a time; and one participant at a time with its day's calls at once.
	cfg.Log("sequential baseline: %d participants, --concurrency 1 --fetch-concurrency 1", cfg.Sequential)
	seqDB, err := e.database("bench_seq", cfg.Sequential, false)
	if err != nil {
		return res, err
	}
	if err := add(e.run(ctx, RunSequential, seqDB, append(e.tuned(1), append([]string{"--fetch-concurrency", "1"}, date...)...))); err != nil {
		return res, err
	}
	cfg.Log("one participant at a time: %d participants, --concurrency 1", cfg.Sequential)
	oneDB, err := e.database("bench_one", cfg.Sequential, false)
	if err != nil {
		return res, err
	}
	if err := add(e.run(ctx, RunOneAtATime, oneDB, append(e.tuned(1), date...))); err != nil {
		return res, err
	}

	// 2. The first sync of First participants (one full day each), then today, then nothing new.
	cfg.Log("first sync: %d participants", cfg.First)
	mainDB, err := e.database("bench_main", cfg.First, false)
	if err != nil {
		return res, err
	}
	if err := add(e.run(ctx, RunFirst, mainDB, append(tuned, date...))); err != nil {
		return res, err
	}
	if err := add(e.run(ctx, RunCatchUp, mainDB, tuned)); err != nil {
		return res, err
	}
	if err := add(e.run(ctx, RunSteady, mainDB, tuned)); err != nil {
		return res, err
	}

	// 3. Steady state of Steady participants: the First above plus Steady-First enrolled as if
	// they had synced (the state a first sync leaves: zone, device watermark, today's summary).
	cfg.Log("large steady state: %d participants", cfg.Steady)
	if err := e.enroll(ctx, mainDB, cfg.Steady-cfg.First, true); err != nil {
		return res, err
	}
	if err := add(e.run(ctx, RunSteadyBig, mainDB, tuned)); err != nil {
		return res, err
	}

	// 4. Scale-out: the steady state of Scale participants by one process, then by three at
	// once, each at the same --concurrency, on one database. These runs keep the default
	// --min-interval, as cron on several hosts would: it is what stops a process that starts a
	// moment later from syncing again a participant another process has just finished. Each run
	// starts as if the last sync were five minutes ago.
	cfg.Log("scale-out: %d participants, 1 process then 3, --concurrency %d each", cfg.Scale, cfg.ScaleConcurrency)
	scaleDB, err := e.database("bench_scale", cfg.Scale, true)
	if err != nil {
		return res, err
	}
	scaleIDs := e.ids[e.next-cfg.Scale : e.next]
	scaleFlags := []string{"--concurrency", strconv.Itoa(cfg.ScaleConcurrency), "--max-rps", strconv.FormatFloat(cfg.MaxRPS, 'f', -1, 64)}
	if err := e.fiveMinutesLater(ctx, scaleDB); err != nil {
		return res, err
	}
	if err := add(e.run(ctx, RunScaleOne, scaleDB, scaleFlags)); err != nil {
		return res, err
	}
	if err := e.fiveMinutesLater(ctx, scaleDB); err != nil {
		return res, err
	}
	before := e.pairedDevices(scaleIDs)
	three, logs, err := e.runMany(ctx, RunScaleThree, scaleDB, 3, scaleFlags)
	if err := add(three, err); err != nil {
		return res, err
	}
	res.ScaleOnce, res.ScaleNote = e.checkOnce(scaleIDs, before, logs)
	return res, nil
}

// tuned are the flags of a run: no --min-interval (runs follow each other at once) and the
// given concurrency.
func (e *e2e) tuned(concurrency int) []string {
	return []string{"--min-interval", "0s", "--concurrency", strconv.Itoa(concurrency),
		"--max-rps", strconv.FormatFloat(e.cfg.MaxRPS, 'f', -1, 64)}
}

// database creates a migrated database holding the next n simulator participants, enrolled
// with grants the simulator issued (synced: as if a first sync had run).
func (e *e2e) database(name string, n int, synced bool) (string, error) {
	if err := e.cfg.NewDB(name); err != nil {
		return "", err
	}
	dsn := e.cfg.DSN(name)
	return dsn, e.enroll(context.Background(), dsn, n, synced)
}

// enroll stores the next n participants as active with their tokens. synced also records what a
// first sync leaves behind, so their next run is a steady-state one.
func (e *e2e) enroll(ctx context.Context, dsn string, n int, synced bool) error {
	if e.next+n > len(e.ids) {
		return fmt.Errorf("bench: %d participants asked, the simulator has %d left", n, len(e.ids)-e.next)
	}
	ids := e.ids[e.next : e.next+n]
	e.next += n
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	st.Keys, st.RequireKey = e.keys, true

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		work  = make(chan string)
	)
	for range 8 {
		wg.Go(func() {
			for id := range work {
				access, refresh, exp := e.sim.Grant(id, nil)
				_, err := st.CreateUser(ctx, store.NewUser{LegacyUserID: id, Label: "bench " + id, Status: store.StatusActive,
					Token: &auth.Token{AccessToken: access, RefreshToken: refresh, Expiry: exp, Scopes: auth.RequiredScopes}})
				if err != nil {
					mu.Lock()
					first = errors.Join(first, fmt.Errorf("enroll %s: %w", id, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	if first != nil || !synced {
		return first
	}
	now := time.Now()
	var (
		zones, days []string
		syncs       []time.Time
	)
	locs := map[string]*time.Location{} // LoadLocation reads the zone file on every call
	for _, id := range ids {
		loc, ok := locs[e.zone[id]]
		if !ok {
			var err error
			if loc, err = time.LoadLocation(e.zone[id]); err != nil {
				return err
			}
			locs[e.zone[id]] = loc
		}
		zones = append(zones, e.zone[id])
		days = append(days, health.DateOf(now.In(loc)).String())
		syncs = append(syncs, e.sim.LastSync(id))
	}
	_, err = st.Pool().Exec(ctx, `
WITH s AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::timestamptz[]) AS s(legacy, zone, today, last_sync)
), u AS (
	UPDATE fitbit_users f SET timezone = s.zone, timezone_checked_at = now(), device_last_sync_at = s.last_sync
	FROM s WHERE f.legacy_user_id = s.legacy
	RETURNING f.id, s.today
)
INSERT INTO daily_summaries (user_id, date) SELECT id, today FROM u`, ids, zones, days, syncs)
	return err
}

// run runs one `sync-all run` process and measures it.
func (e *e2e) run(ctx context.Context, name, dsn string, args []string) (RunResult, error) {
	r, _, err := e.runMany(ctx, name, dsn, 1, args)
	return r, err
}

// runMany starts n `sync-all run` processes at once (each its own log folder, hence its own
// host lock, as on n hosts) and measures them together: wall time from the first start to the
// last exit.
func (e *e2e) runMany(ctx context.Context, name, dsn string, n int, args []string) (RunResult, []string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return RunResult{}, nil, err
	}
	defer conn.Close(ctx)
	var lastRun int64
	var walBefore string
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(id), 0), pg_current_wal_insert_lsn()::text FROM sync_runs`).Scan(&lastRun, &walBefore); err != nil {
		return RunResult{}, nil, err
	}
	data0, token0 := e.lat.data.Load(), e.lat.token.Load()

	type proc struct {
		cmd            *exec.Cmd
		stdout, stderr bytes.Buffer
		log, rss       string
	}
	procs := make([]*proc, n)
	for i := range procs {
		e.seq++
		dir := filepath.Join(e.cfg.Dir, fmt.Sprintf("%02d-%s", e.seq, slug(name)))
		p := &proc{log: filepath.Join(dir, "sync.log"), rss: filepath.Join(dir, "maxrss")}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return RunResult{}, nil, err
		}
		// GNU time reports the job's own peak RSS. A child's rusage as Go's Wait returns it
		// would not do: it counts the memory the child shared with this (large) process
		// between fork and exec.
		argv := append([]string{e.cfg.Bin, "run"}, args...)
		if haveTime() {
			argv = append([]string{timeBin, "-f", "%M %U %S", "-o", p.rss}, argv...)
		}
		p.cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
		p.cmd.Env = []string{
			"PATH=" + os.Getenv("PATH"),
			"DATABASE_URL=" + dsn,
			"GOOGLE_CLIENT_ID=sim-client",
			"GOOGLE_CLIENT_SECRET=sim-secret",
			"HEALTH_API_URL=" + e.url + "/",
			"GOOGLE_AUTH_URL=" + e.url + "/o/oauth2/v2/auth",
			"GOOGLE_TOKEN_URL=" + e.url + "/token",
			"SYNC_LOG_FILE=" + p.log,
			"SYNC_TOKEN_KEY=" + e.key,
		}
		p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
		procs[i] = p
	}
	sim0, machine0 := selfCPU(), machineCPU()
	start := time.Now()
	for _, p := range procs {
		if err := p.cmd.Start(); err != nil {
			return RunResult{}, nil, err
		}
	}
	var (
		peak   = int64(-1)
		jobCPU time.Duration
		errs   error
		logs   []string
	)
	for _, p := range procs {
		err := p.cmd.Wait()
		kib := int64(-1) // unknown
		if haveTime() {
			k, cpu, rerr := readTime(p.rss)
			if rerr != nil && err == nil {
				err = rerr
			}
			kib = k
			jobCPU += cpu
		}
		peak = max(peak, kib)
		if err != nil {
			errs = errors.Join(errs, fmt.Errorf("%s: sync-all run: %w\n%s", name, err, tailOf(p.stderr.String())))
		}
		logs = append(logs, p.log)
	}
	wall := time.Since(start)
	r := RunResult{Name: name, Flags: strings.Join(args, " "), Processes: n, Wall: wall, PeakRSSKiB: peak,
		JobCPU: jobCPU, SimCPU: selfCPU() - sim0, MachineCPU: machineCPU() - machine0,
		APICalls: e.lat.data.Load() - data0, TokenCalls: e.lat.token.Load() - token0}
	var walAfter string
	err = conn.QueryRow(ctx, `
SELECT coalesce(sum(users_ok + users_failed), 0), coalesce(sum(users_failed), 0),
       coalesce(sum(records_inserted), 0), coalesce(sum(records_updated), 0), pg_current_wal_insert_lsn()::text
FROM sync_runs WHERE id > $1`, lastRun).Scan(&r.Participants, &r.Failed, &r.Inserted, &r.Updated, &walAfter)
	if err != nil {
		return r, logs, err
	}
	if err := conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint`, walAfter, walBefore).Scan(&r.WALBytes); err != nil {
		return r, logs, err
	}
	if errs == nil && r.Failed > 0 {
		errs = fmt.Errorf("%s: %d participants failed; see %s", name, r.Failed, logs[0])
	}
	return r, logs, errs
}

// fiveMinutesLater moves every participant's last claim five minutes back, as if the next cron
// slot had come.
func (e *e2e) fiveMinutesLater(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `UPDATE fitbit_users SET last_claimed_at = last_claimed_at - interval '5 minutes'`)
	return err
}

// timeBin is GNU time (Debian's "time" package), which measures the peak RSS.
const timeBin = "/usr/bin/time"

// haveTime reports whether GNU time is installed; without it peak RSS is not measured.
func haveTime() bool {
	_, err := os.Stat(timeBin)
	return err == nil
}

// readTime reads what GNU time wrote: peak RSS in KiB, user and system seconds (on its last
// line: a failing command makes it write "Command exited with non-zero status N" first).
func readTime(path string) (kib int64, cpu time.Duration, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1, 0, fmt.Errorf("GNU time output: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 3 {
		return -1, 0, fmt.Errorf("GNU time output %q: want peak RSS, user and system time", b)
	}
	if kib, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return -1, 0, err
	}
	for _, v := range f[1:] {
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return -1, 0, err
		}
		cpu += time.Duration(sec * float64(time.Second))
	}
	return kib, cpu, nil
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the machine's busy CPU time so far (every state of /proc/stat's "cpu" line but
// idle and iowait), assuming the usual 100 ticks per second.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// pairedDevices counts each participant's pairedDevices requests so far.
func (e *e2e) pairedDevices(ids []string) map[string]int {
	out := make(map[string]int, len(ids))
	for _, id := range ids {
		out[id] = e.sim.Requests(id, "pairedDevices")
	}
	return out
}

var userLine = regexp.MustCompile(`msg="user (?:synced|unchanged|failed)".* user=(\S+)`)

// checkOnce proves that the processes of a scale-out run synced every participant exactly once,
// two ways: the simulator saw exactly one pairedDevices request per participant (each turn makes
// one), and the processes' logs hold exactly one outcome line per participant.
func (e *e2e) checkOnce(ids []string, before map[string]int, logs []string) (bool, string) {
	seen := map[string]int{}
	perProc := make([]int, len(logs))
	for i, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range userLine.FindAllStringSubmatch(string(b), -1) {
			seen[m[1]]++
			perProc[i]++
		}
	}
	var twice, missing, apiOff int
	after := e.pairedDevices(ids)
	for _, id := range ids {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
		if after[id]-before[id] != 1 {
			apiOff++
		}
	}
	ok := twice == 0 && missing == 0 && apiOff == 0
	return ok, fmt.Sprintf("split %v; %d participants synced twice, %d not at all; %d without exactly one pairedDevices request",
		perProc, twice, missing, apiOff)
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// slug names a run's log folder after the run.
func slug(s string) string {
	return strings.Trim(nonWord.ReplaceAllString(strings.ToLower(s), "-"), "-")
}

func tailOf(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
