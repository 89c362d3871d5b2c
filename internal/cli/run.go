package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/logging"
	"github.com/studylab/sync-all/internal/store"
	"github.com/studylab/sync-all/internal/syncer"
)

// RunOptions are the `run` command's flags.
type RunOptions struct {
	Config           Config
	Users            []string
	Date             string
	Concurrency      int
	FetchConcurrency int
	DryRun           bool
	ForceRefresh     bool
	MinInterval      time.Duration
	MaxCatchupDays   int
	MaxRPS           float64
	UserTimeout      time.Duration
	LogFile          string
	LogMaxSizeMB     int
	LogMaxBackups    int
	LogMaxAgeDays    int
	LogFormat        string
	MetricsFile      string
	HealthcheckURL   string
}

// NewCmdRun builds `sync-all run`. runF replaces the command's body in flag-parsing tests.
func NewCmdRun(e *Env, runF func(*RunOptions) error) *cobra.Command {
	o := &RunOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Sync every enrolled participant once (what cron runs every five minutes)",
		Long: `run loads the active participants, refreshes each one's OAuth token when it is near expiry,
fetches the local days that their devices synced since the last run (today's summary plus intraday
heart rate, steps and calories) and upserts them. It logs one line per participant and a final
"run finished" summary to the log file.

Exit codes: 0 all selected participants synced or had nothing new (also when another run holds
the lock); 1 one or more participants failed; 2 usage or configuration error; 3 run aborted
(database unreachable, schema behind).`,
		Example: `  sync-all run
  sync-all run --user CRBM3W
  sync-all run --user CRBM3W --user 7QK2LM --date 2026-12-01
  sync-all run --dry-run --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(o)
			}
			return o.run(cmd.Context(), e)
		},
	}
	fs := cmd.Flags()
	o.Config.configFlags(fs, true)
	fs.StringArrayVar(&o.Users, "user", nil, "sync only this participant (legacy Fitbit id such as CRBM3W, health user id or numeric id); repeatable")
	fs.StringVar(&o.Date, "date", "", "re-sync this local day (YYYY-MM-DD) for the selected participants, whatever the watermark")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "participants synced at once")
	fs.IntVar(&o.FetchConcurrency, "fetch-concurrency", maxFetchConcurrency, "API calls in flight at once for one participant-day (1 = one after another)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "fetch and report what would change, write no data (a rotated token is still saved)")
	fs.BoolVar(&o.ForceRefresh, "force-refresh", false, "refresh every selected participant's token, whatever its expiry")
	fs.DurationVar(&o.MinInterval, "min-interval", 4*time.Minute, "skip participants synced less than this ago (unless named with --user)")
	fs.IntVar(&o.MaxCatchupDays, "max-catchup-days", 7, "most local days fetched for a device that was offline")
	fs.Float64Var(&o.MaxRPS, "max-rps", 50, "ceiling on Google Health API requests per second for this run")
	fs.DurationVar(&o.UserTimeout, "user-timeout", 2*time.Minute, "time budget for one participant")
	fs.StringVar(&o.LogFile, "log-file", "", "log file (default $"+EnvLogFile+", else "+DefaultLogFile+")")
	fs.IntVar(&o.LogMaxSizeMB, "log-max-size-mb", 10, "rotate the log file at this size")
	fs.IntVar(&o.LogMaxBackups, "log-max-backups", 10, "rotated log files kept")
	fs.IntVar(&o.LogMaxAgeDays, "log-max-age-days", 30, "days a rotated log file is kept")
	fs.StringVar(&o.LogFormat, "log-format", logging.FormatText, "log format: text or json")
	fs.StringVar(&o.MetricsFile, "metrics-file", "", "write Prometheus textfile-collector metrics here after the run")
	fs.StringVar(&o.HealthcheckURL, "healthcheck-url", "", "ping URL/start, URL and URL/fail (a dead man's switch such as healthchecks.io)")
	return cmd
}

// maxFetchConcurrency is the number of calls a participant-day makes: nine dailyRollUps, the
// resting heart rate list and three rollUps.
const maxFetchConcurrency = 13

// validate checks flags that need no I/O; a failure is a usage error (exit 2).
func (o *RunOptions) validate() (*health.Date, error) {
	switch {
	case o.Concurrency < 1 || o.Concurrency > 256:
		return nil, usageErr("--concurrency %d: use a number from 1 to 256", o.Concurrency)
	case o.FetchConcurrency < 1 || o.FetchConcurrency > maxFetchConcurrency:
		return nil, usageErr("--fetch-concurrency %d: use a number from 1 to %d (a day is %d calls)", o.FetchConcurrency, maxFetchConcurrency, maxFetchConcurrency)
	case o.MinInterval < 0:
		return nil, usageErr("--min-interval %s: must not be negative", o.MinInterval)
	case o.MaxCatchupDays < 1 || o.MaxCatchupDays > 90:
		return nil, usageErr("--max-catchup-days %d: use a number from 1 to 90 (older days: sync-all backfill)", o.MaxCatchupDays)
	case o.MaxRPS <= 0:
		return nil, usageErr("--max-rps %v: must be above 0", o.MaxRPS)
	case o.UserTimeout < time.Second:
		return nil, usageErr("--user-timeout %s: use at least 1s", o.UserTimeout)
	case o.LogFormat != logging.FormatText && o.LogFormat != logging.FormatJSON:
		return nil, usageErr("--log-format %q: use text or json", o.LogFormat)
	case o.LogMaxSizeMB < 1 || o.LogMaxBackups < 0 || o.LogMaxAgeDays < 0:
		return nil, usageErr("--log-max-size-mb must be at least 1, --log-max-backups and --log-max-age-days not negative")
	}
	for _, u := range o.Users {
		if strings.TrimSpace(u) == "" {
			return nil, usageErr("--user needs a participant id such as CRBM3W")
		}
	}
	if o.HealthcheckURL != "" {
		if u, err := url.Parse(o.HealthcheckURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, usageErr("--healthcheck-url %q is not an http(s) URL", o.HealthcheckURL)
		}
	}
	if o.Date == "" {
		return nil, nil
	}
	d, err := health.ParseDate(o.Date)
	if err != nil {
		return nil, usageErr("--date %q: use YYYY-MM-DD, e.g. 2026-12-01", o.Date)
	}
	return &d, nil
}

func (o *RunOptions) logFile(getenv func(string) string) string {
	switch {
	case o.LogFile != "":
		return o.LogFile
	case getenv(EnvLogFile) != "":
		return getenv(EnvLogFile)
	}
	return DefaultLogFile
}

func (o *RunOptions) run(ctx context.Context, e *Env) error {
	date, err := o.validate()
	if err != nil {
		return err
	}
	if err := o.Config.resolveDatabase(e.Getenv); err != nil {
		return err
	}
	if err := o.Config.resolveGoogle(e.Getenv); err != nil {
		return err
	}
	logFile := o.logFile(e.Getenv)
	log, closer, err := logging.New(logging.Config{
		File: logFile, MaxSizeMB: o.LogMaxSizeMB, MaxBackups: o.LogMaxBackups, MaxAgeDays: o.LogMaxAgeDays,
		Format: o.LogFormat, Stderr: e.Stderr, StderrAll: e.StderrIsTerminal, Level: slog.LevelInfo,
	})
	if err != nil {
		return usageErr("%v", err)
	}
	defer closer.Close()

	// One run per host at a time: cron starts a new one every five minutes whether or not the
	// last one finished. The lock sits next to the log, which is per checkout.
	release, held, err := lockHost(filepath.Join(filepath.Dir(logFile), "sync-all.lock"))
	if err != nil {
		log.Error("cannot take the host lock", logging.KeyError, err)
		return abortErr(err)
	}
	if !held {
		log.Info(logging.MsgPreviousRunActive)
		return nil
	}
	defer release()

	hc := newHealthcheck(o.HealthcheckURL, log)
	hc.ping(ctx, "/start")
	code, err := o.runLocked(ctx, e, log, date)
	switch {
	case err != nil:
		log.Error("run aborted", logging.KeyError, err)
		hc.ping(ctx, "/fail")
		return err
	case code != ExitOK:
		hc.ping(ctx, "/fail")
		return silentExit(code)
	}
	hc.ping(ctx, "")
	return nil
}

// runLocked is the run proper, once the host lock is held.
func (o *RunOptions) runLocked(ctx context.Context, e *Env, log *slog.Logger, date *health.Date) (int, error) {
	started := e.Now()
	if err := o.Config.requireTokenKey(); err != nil {
		return 0, err
	}
	st, err := openStore(ctx, o.Config)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	// Leases and watermarks use the job's clock, which tests move; hosts keep theirs in sync
	// with NTP, and a lease (minutes) dwarfs any skew that NTP leaves.
	st.Now = e.Now
	if err := st.CheckSchema(ctx); err != nil {
		return 0, schemaErr(err, ExitAborted)
	}
	if w := insecureDSN(o.Config.DatabaseURL); w != "" {
		log.Warn(logging.MsgInsecureDatabaseURL, logging.KeyHint, w)
	}

	var users []store.User
	if len(o.Users) > 0 {
		users, err = st.FindUsers(ctx, o.Users)
		var unknown *store.UnknownUsersError
		if errors.As(err, &unknown) {
			return 0, usageErr("unknown participant %s: check `sync-all users list` (an id is a legacy Fitbit id such as CRBM3W, a health user id or a numeric id)", strings.Join(unknown.IDs, ", "))
		}
		if err != nil {
			return 0, abortErr(fmt.Errorf("look up --user: %w", err))
		}
		for _, u := range users {
			if u.Status != store.StatusActive {
				log.Warn(logging.MsgUserSkipped, logging.KeyUser, u.Handle(), "status", u.Status,
					logging.KeyHint, statusHint(u))
			}
		}
	}

	// Hung requests must leave room in the participant's budget for the client's retries (4
	// attempts and their backoff): a sixth of it each, at most 30 s (a Google Health API call
	// takes well under 1 s; the default --user-timeout gives 20 s).
	reqTimeout := min(30*time.Second, o.UserTimeout/6)
	api := newAPITransport(o.MaxRPS, reqTimeout, o.Concurrency)
	hcl, err := health.New(health.Config{BaseURL: o.Config.HealthAPIURL, HTTPClient: &http.Client{Timeout: reqTimeout, Transport: api},
		DayConcurrency: o.FetchConcurrency})
	if err != nil {
		return 0, usageErr("%s: %v", EnvHealthAPIURL, err)
	}
	am, err := newAuth(o.Config, e.Now)
	if err != nil {
		return 0, usageErr("%v", err)
	}

	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s:%d:%d", host, os.Getpid(), started.UnixNano())
	run := store.Run{StartedAt: started, Hostname: host, Version: version, Status: store.RunRunning, Holder: holder}
	if !o.DryRun {
		if run.ID, err = st.StartRun(ctx, run); err != nil {
			return 0, abortErr(fmt.Errorf("record run start: %w", err))
		}
		abandonDeadRuns(ctx, st, host, run.ID, log)
	}
	if o.Config.TokenKeys == nil {
		log.Warn("tokens are stored unencrypted", logging.KeyHint, "set SYNC_TOKEN_KEY_FILE; see deploy/sync-all.env.example")
	}
	log.Info(logging.MsgRunStarted, logging.KeyRunID, run.ID, "version", version, logging.KeyDryRun, o.DryRun)

	s := &syncer.Syncer{Store: st, Auth: am, Health: hcl, Log: log, Now: e.Now}
	res, err := s.Run(ctx, syncer.Options{
		Holder:      holder,
		Concurrency: o.Concurrency, MinInterval: o.MinInterval, UserTimeout: o.UserTimeout,
		MaxCatchupDays: o.MaxCatchupDays, Date: date, Users: users, DryRun: o.DryRun, ForceRefresh: o.ForceRefresh,
	})
	if err != nil {
		res.Aborted = err
	}

	code := ExitOK
	run.Status = store.RunOK
	switch {
	case res.Aborted != nil:
		code, run.Status, run.Error = ExitAborted, store.RunAborted, res.Aborted.Error()
	case res.UsersFailed > 0 || res.Interrupted:
		code, run.Status = ExitPartial, store.RunPartial
		if res.Interrupted {
			run.Error = "interrupted by a signal before every participant had its turn"
		}
	}
	run.FinishedAt = e.Now()
	run.UsersTotal, run.UsersOK, run.UsersFailed, run.UsersSkipped = res.UsersTotal, res.UsersOK, res.UsersFailed, res.UsersSkipped
	run.Counts = res.Counts

	level := slog.LevelInfo
	if code != ExitOK {
		level = slog.LevelError
	}
	attrs := []any{logging.KeyRunID, run.ID,
		logging.KeyUsersTotal, res.UsersTotal, logging.KeyUsersOK, res.UsersOK, logging.KeyUsersFailed, res.UsersFailed,
		logging.KeyUsersSkipped, res.UsersSkipped, "users_unchanged", res.UsersUnchanged,
		logging.KeyRecordsInserted, res.Counts.Inserted, logging.KeyRecordsUpdated, res.Counts.Updated,
		logging.KeyRecordsUnchanged, res.Counts.Unchanged, "api_calls", api.calls.Load(),
		logging.KeyDuration, run.FinishedAt.Sub(started), "status", run.Status}
	if o.DryRun {
		attrs = append(attrs, logging.KeyDryRun, true)
	}
	if run.Error != "" {
		attrs = append(attrs, logging.KeyError, run.Error)
	}
	log.Log(context.WithoutCancel(ctx), level, logging.MsgRunFinished, attrs...)

	if !o.DryRun {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := st.FinishRun(wctx, run); err != nil && res.Aborted == nil {
			log.Error("cannot record the run", logging.KeyReason, syncer.ReasonDB, logging.KeyError, err)
		}
	}
	if o.MetricsFile != "" {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		reconsent, _ := st.CountStatus(wctx, store.StatusNeedsReconsent)
		if err := writeMetrics(o.MetricsFile, run, res, api, reconsent); err != nil {
			log.Error("cannot write metrics", logging.KeyError, err)
		}
	}
	if res.Aborted != nil {
		return 0, abortErr(fmt.Errorf("%w (database %s)", res.Aborted, store.RedactDSN(o.Config.DatabaseURL)))
	}
	return code, nil
}

// abandonDeadRuns marks as aborted the runs of this host still marked running whose process is
// gone: killed, or cut off from the database before it could record its end. Runs of other hosts
// are left alone (their processes cannot be seen from here). Failures are only logged.
func abandonDeadRuns(ctx context.Context, st *store.Store, host string, self int64, log *slog.Logger) {
	runs, err := st.RunningOn(ctx, host, self)
	if err != nil {
		log.Warn("cannot check for abandoned runs", logging.KeyError, err)
		return
	}
	for id, holder := range runs {
		pid := holderPID(holder)
		if pid <= 0 || processAlive(pid) {
			continue
		}
		reason := fmt.Sprintf("its process (pid %d) ended without recording the end of the run: killed, or its database went away", pid)
		if ok, err := st.AbandonRun(ctx, id, reason); err != nil {
			log.Warn("cannot mark an abandoned run", logging.KeyRunID, id, logging.KeyError, err)
		} else if ok {
			log.Warn("marked an abandoned run as aborted", "abandoned_run_id", id, "pid", pid)
		}
	}
}

// holderPID reads the pid of a "host:pid:start" lease holder; 0 if there is none.
func holderPID(holder string) int {
	parts := strings.Split(holder, ":")
	if len(parts) < 3 {
		return 0
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil {
		return 0
	}
	return pid
}

// processAlive reports whether pid is a live sync-all on this host: this process, or a process
// that exists and (where /proc says) runs a program named like sync-all or like this one. A pid
// reused by another program, or a zombie, counts as gone.
func processAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	self := filepath.Base(os.Args[0])
	name := filepath.Base(argv0)
	return argv0 != "" && (strings.Contains(name, "sync-all") || name == self)
}

// statusHint tells the operator what a participant who cannot be synced needs.
func statusHint(u store.User) string {
	switch u.Status {
	case store.StatusNeedsReconsent, store.StatusPendingConsent:
		return "the participant must consent: sync-all users authorize " + u.Handle()
	case store.StatusDisabled:
		return "re-enable with: sync-all users enable " + u.Handle()
	}
	return ""
}

// openStore connects to Postgres; a failure aborts (exit 3) with a password-free message. The
// store encrypts tokens with the configured key and refuses plaintext unless allowed.
func openStore(ctx context.Context, c Config) (*store.Store, error) {
	st, err := store.Open(ctx, c.DatabaseURL)
	if err != nil {
		return nil, abortErr(err)
	}
	st.Keys, st.RequireKey = c.TokenKeys, !c.AllowPlaintextTokens
	return st, nil
}

// schemaErr turns a schema check failure into the operator's next step.
func schemaErr(err error, code int) error {
	if errors.Is(err, store.ErrSchemaBehind) {
		return &exitError{code: code, err: fmt.Errorf("%w: run `sync-all migrate` first", err)}
	}
	return abortErr(fmt.Errorf("check schema version: %w", err))
}

func newAuth(c Config, now func() time.Time) (*auth.Manager, error) {
	return auth.New(auth.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		AuthURL: c.AuthURL, TokenURL: c.TokenURL, RevokeURL: c.RevokeURL,
		// Token calls get their own bounded client: a hung token endpoint must not hold a
		// participant's lease until it expires.
		HTTPClient: &http.Client{Timeout: 30 * time.Second},
		Now:        now,
	})
}

// insecureDSN returns a warning when a non-local database is reached without verified TLS.
func insecureDSN(dsn string) string {
	host, mode := "", ""
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		host, mode = u.Hostname(), u.Query().Get("sslmode")
		if h := u.Query().Get("host"); host == "" {
			host = h
		}
	} else {
		for _, kv := range strings.Fields(dsn) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "host":
				host = v
			case "sslmode":
				mode = v
			}
		}
	}
	if host == "" || strings.HasPrefix(host, "/") || host == "localhost" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return ""
	}
	if mode == "verify-full" || mode == "verify-ca" {
		return ""
	}
	return fmt.Sprintf("%s is not a local host and sslmode=%q does not verify the server: add sslmode=verify-full to DATABASE_URL", host, mode)
}

// apiTransport paces requests to the API (one ceiling for the whole run, whatever the
// concurrency) and counts them for the summary and the metrics.
type apiTransport struct {
	base    http.RoundTripper
	limit   *rate.Limiter
	calls   atomic.Int64
	limited atomic.Int64 // 429 answers
}

func newAPITransport(rps float64, timeout time.Duration, concurrency int) *apiTransport {
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Keep a connection for each request a run can have in flight (a participant's day makes
	// up to 13 at once): a smaller idle pool closes connections only to dial them again.
	base.MaxIdleConnsPerHost = max(32, maxFetchConcurrency*concurrency)
	base.MaxIdleConns = base.MaxIdleConnsPerHost
	base.ResponseHeaderTimeout = timeout
	return &apiTransport{base: base, limit: rate.NewLimiter(rate.Limit(rps), max(1, int(rps/10)))}
}

func (t *apiTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.limit.Wait(r.Context()); err != nil {
		if r.Context().Err() == nil {
			// The limiter refuses a wait that would outlast the deadline; to the caller that is
			// the deadline, a network-class failure, not an API answer.
			return nil, fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
		}
		return nil, err
	}
	t.calls.Add(1)
	resp, err := t.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		t.limited.Add(1)
	}
	return resp, err
}

// lockHost takes an exclusive, non-blocking flock on path. The kernel drops it when the
// process dies, so a killed run never leaves a stale lock.
func lockHost(path string) (release func(), held bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, true, nil
}

// healthcheck pings a dead man's switch; its failures are logged, never fatal.
type healthcheck struct {
	url string
	log *slog.Logger
	c   *http.Client
}

func newHealthcheck(u string, log *slog.Logger) *healthcheck {
	return &healthcheck{url: strings.TrimSuffix(u, "/"), log: log, c: &http.Client{Timeout: 10 * time.Second}}
}

func (h *healthcheck) ping(ctx context.Context, suffix string) {
	if h.url == "" {
		return
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, h.url+suffix, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = h.c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
		}
	}
	if err != nil {
		h.log.Warn("healthcheck ping failed", "url_suffix", suffix, logging.KeyError, err)
	}
}
