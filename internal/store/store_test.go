package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://sync:s3cret@db.example:5432/syncall?sslmode=require",
			"postgres://sync:xxxxx@db.example:5432/syncall?sslmode=require"},
		{"postgresql://sync@db/syncall", "postgresql://sync@db/syncall"},
		{"postgres://db/syncall?user=sync&password=s3cret", "postgres://db/syncall?password=xxxxx&user=sync"},
		{"host=db user=sync password=s3cret dbname=syncall", "host=db user=sync password=xxxxx dbname=syncall"},
		{"host=db password = 's3 cr\\'et' dbname=syncall", "host=db password = xxxxx dbname=syncall"},
		{"host=db sslpassword=s3cret", "host=db sslpassword=xxxxx"},
		{"postgres://sync:s3cret@[::1", "[unparsable database URL]"},
	} {
		if got := RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(RedactDSN(tc.in), "s3") {
			t.Errorf("RedactDSN(%q) leaks the password", tc.in)
		}
	}
}

// RedactDSN is store.RedactDSN; a short name keeps the table readable.
var RedactDSN = store.RedactDSN

// deadPort returns a port on 127.0.0.1 where connections are refused: a socket is bound to it but
// never listens. Holding the binding for the test keeps anyone else from taking the port (a free
// port merely closed again can be reused by a parallel test's server).
func deadPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	port := deadPort(t)
	for _, dsn := range []string{
		fmt.Sprintf("postgres://sync:s3cret@127.0.0.1:%d/syncall", port),
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=syncall user=sync password=s3cret", port),
	} {
		start := time.Now()
		st, err := store.Open(context.Background(), dsn)
		if err == nil {
			st.Close()
			t.Fatalf("Open(%s) succeeded", store.RedactDSN(dsn))
		}
		want := fmt.Sprintf("cannot connect to database at 127.0.0.1:%d/syncall: connection refused", port)
		if err.Error() != want {
			t.Errorf("error = %q\nwant    %q", err, want)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error leaks the password: %v", err)
		}
		if !errors.Is(err, store.ErrUnreachable) {
			t.Errorf("error does not wrap ErrUnreachable: %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Open took %s to fail", d)
		}
	}
	if _, err := store.Open(context.Background(), "postgres://sync:s3cret@[::1/x"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad URL: err = %v", err)
	}
}

func TestOpenMissingDatabase(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	i := strings.LastIndex(dsn, "/")
	_, err := store.Open(context.Background(), dsn[:i]+"/no_such_db")
	if err == nil || !strings.Contains(err.Error(), `database "no_such_db" does not exist`) ||
		!strings.HasPrefix(err.Error(), "cannot connect to database at 127.0.0.1:") {
		t.Errorf("err = %v", err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := pgtest.EmptyDSN(t)
			type result struct{ from, to int32 }
			results := make([]result, 2)
			errs := make([]error, 2)
			stores := make([]*store.Store, 2)
			for i := range stores {
				st, err := store.Open(ctx, dsn) // separate pools: separate sessions, as two processes
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(st.Close)
				stores[i] = st
			}
			var wg sync.WaitGroup
			for i, st := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i].from, results[i].to, errs[i] = st.Migrate(ctx)
				}()
			}
			wg.Wait()
			_, latest, err := stores[0].MigrationStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			applied := int32(0)
			for i := range stores {
				if errs[i] != nil {
					t.Fatalf("Migrate %d: %v", i, errs[i])
				}
				if results[i].to != latest {
					t.Errorf("Migrate %d ended at %d, want %d", i, results[i].to, latest)
				}
				applied += results[i].to - results[i].from
			}
			if applied != latest {
				t.Errorf("migrations applied %d times in total, want %d (each exactly once): %+v", applied, latest, results)
			}
			for i, st := range stores {
				if err := st.CheckSchema(ctx); err != nil {
					t.Errorf("CheckSchema %d after migrate: %v", i, err)
				}
			}
		})
	}
}

func TestMigrationStatusAndCheckSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.EmptyDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	cur, latest, err := st.MigrationStatus(ctx)
	if err != nil || cur != 0 || latest < 1 {
		t.Fatalf("empty database: status %d/%d, %v", cur, latest, err)
	}
	if err := st.CheckSchema(ctx); !errors.Is(err, store.ErrSchemaBehind) || !strings.Contains(err.Error(), "sync-all migrate") {
		t.Errorf("CheckSchema on empty database: %v", err)
	}
	from, to, err := st.Migrate(ctx)
	if err != nil || from != 0 || to != latest {
		t.Fatalf("Migrate = %d, %d, %v", from, to, err)
	}
	// Idempotent: the fast path does nothing.
	if from, to, err := st.Migrate(ctx); err != nil || from != latest || to != latest {
		t.Fatalf("second Migrate = %d, %d, %v", from, to, err)
	}
	if err := st.CheckSchema(ctx); err != nil {
		t.Errorf("CheckSchema when current: %v", err)
	}
	// A database one migration behind (as when a new release adds 0002) is detected.
	if _, err := st.Pool().Exec(ctx, "UPDATE schema_version SET version = $1", latest-1); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckSchema(ctx); !errors.Is(err, store.ErrSchemaBehind) {
		t.Errorf("CheckSchema one behind: %v", err)
	}
}

// The migrated template holds the contract's tables and columns.
func TestSchemaContract(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	want := map[string][]string{
		"fitbit_users": {"id", "legacy_user_id", "health_user_id", "label", "status", "access_token",
			"refresh_token", "token_expires_at", "scopes", "timezone", "device_last_sync_at", "last_success_at",
			"last_error", "last_error_at", "created_at", "updated_at", "lease_holder", "lease_expires_at",
			"last_claimed_at", "timezone_checked_at", "consecutive_failures"},
		"daily_summaries": {"user_id", "date", "steps", "distance_m", "calories_total", "calories_active",
			"floors", "elevation_gain_m", "resting_heart_rate", "sedentary_minutes", "light_minutes",
			"moderate_minutes", "vigorous_minutes", "azm_fat_burn", "azm_cardio", "azm_peak", "updated_at"},
		"intraday_heart_rate": {"user_id", "ts", "local_date", "local_time", "bpm_avg", "bpm_min", "bpm_max"},
		"intraday_steps":      {"user_id", "ts", "local_date", "local_time", "steps"},
		"intraday_calories":   {"user_id", "ts", "local_date", "local_time", "kcal"},
		"sync_runs": {"id", "started_at", "finished_at", "hostname", "version", "users_total", "users_ok",
			"users_failed", "users_skipped", "records_inserted", "records_updated", "records_unchanged",
			"status", "error"},
	}
	for table, cols := range want {
		rows, err := st.Pool().Query(context.Background(),
			`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1`, table)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			have[c] = true
		}
		rows.Close()
		for _, c := range cols {
			if !have[c] {
				t.Errorf("%s.%s missing", table, c)
			}
		}
	}
	if _, err := st.Pool().Exec(context.Background(), "INSERT INTO fitbit_users (status) VALUES ('paused')"); err == nil {
		t.Error("status CHECK constraint missing")
	}
}

func TestRuns(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	started := time.Date(2026, 11, 12, 10, 0, 0, 0, time.UTC)
	id, err := st.StartRun(ctx, store.Run{StartedAt: started, Hostname: "h1", Version: "v1", UsersTotal: 3})
	if err != nil {
		t.Fatal(err)
	}
	r := store.Run{ID: id, FinishedAt: started.Add(time.Minute), UsersTotal: 3, UsersOK: 2, UsersFailed: 1,
		Counts: store.Counts{Inserted: 10, Updated: 2, Unchanged: 5}, Status: "partial", Error: ""}
	if err := st.FinishRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	var status, host string
	var ok, ins, unch int64
	var finished time.Time
	var errText *string
	if err := st.Pool().QueryRow(ctx, `SELECT status, hostname, users_ok, records_inserted, records_unchanged,
		finished_at, error FROM sync_runs WHERE id = $1`, id).Scan(&status, &host, &ok, &ins, &unch, &finished, &errText); err != nil {
		t.Fatal(err)
	}
	if status != "partial" || host != "h1" || ok != 2 || ins != 10 || unch != 5 || !finished.Equal(r.FinishedAt) || errText != nil {
		t.Errorf("run row: %s %s %d %d %d %s %v", status, host, ok, ins, unch, finished, errText)
	}
	if err := st.FinishRun(ctx, store.Run{ID: id, Status: "done"}); err == nil {
		t.Error("invalid run status accepted")
	}
	if err := st.FinishRun(ctx, store.Run{ID: id + 100, Status: "ok"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
}

// A run still marked running is listed for its host (not for others, not once finished, not the
// asking run itself) and can be marked aborted once; a run that finished meanwhile is not.
func TestAbandonRun(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	start := func(host, holder string) int64 {
		t.Helper()
		id, err := st.StartRun(ctx, store.Run{Hostname: host, Holder: holder})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	dead := start("h1", "h1:101:1")
	done := start("h1", "h1:102:2")
	other := start("h2", "h2:103:3")
	self := start("h1", "h1:104:4")
	if err := st.FinishRun(ctx, store.Run{ID: done, Status: store.RunOK}); err != nil {
		t.Fatal(err)
	}
	got, err := st.RunningOn(ctx, "h1", self)
	if err != nil || len(got) != 1 || got[dead] != "h1:101:1" {
		t.Fatalf("RunningOn(h1) = %v, %v; want only run %d", got, err, dead)
	}
	if ok, err := st.AbandonRun(ctx, dead, "gone"); err != nil || !ok {
		t.Fatalf("AbandonRun = %v, %v", ok, err)
	}
	if ok, err := st.AbandonRun(ctx, dead, "gone"); err != nil || ok {
		t.Fatalf("second AbandonRun = %v, %v; want false", ok, err)
	}
	if ok, err := st.AbandonRun(ctx, done, "gone"); err != nil || ok {
		t.Fatalf("AbandonRun of a finished run = %v, %v; want false", ok, err)
	}
	var status, reason string
	if err := st.Pool().QueryRow(ctx, `SELECT status, error FROM sync_runs WHERE id = $1`, dead).Scan(&status, &reason); err != nil || status != "aborted" || reason != "gone" {
		t.Errorf("abandoned run: %s %q %v", status, reason, err)
	}
	if got, _ := st.RunningOn(ctx, "h2", self); len(got) != 1 || got[other] == "" {
		t.Errorf("RunningOn(h2) = %v", got)
	}
}
