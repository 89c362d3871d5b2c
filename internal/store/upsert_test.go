package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

var seriesTables = []string{"daily_summaries", "intraday_heart_rate", "intraday_steps", "intraday_calories"}

type tupStats struct{ Ins, Upd, Dead int64 }

// tableStats reads pg_stat_user_tables for the series tables. PG15 backends flush their pending
// counters at most once a second, so first every idle pool connection (the writers) is told to
// flush now: pg_stat_force_next_flush() makes the flush happen before that statement's
// ReadyForQuery, i.e. before Exec returns. The read then drops any cached snapshot.
func tableStats(t *testing.T, st *store.Store) map[string]tupStats {
	t.Helper()
	ctx := context.Background()
	for _, c := range st.Pool().AcquireAllIdle(ctx) {
		_, err := c.Exec(ctx, "SELECT pg_stat_force_next_flush()")
		c.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_dead_tup FROM pg_stat_user_tables
		WHERE relname = ANY($1)`, seriesTables)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]tupStats{}
	for rows.Next() {
		var name string
		var s tupStats
		if err := rows.Scan(&name, &s.Ins, &s.Upd, &s.Dead); err != nil {
			t.Fatal(err)
		}
		out[name] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func countRows(t *testing.T, st *store.Store, table string, userID int64) int64 {
	t.Helper()
	var n int64
	if err := st.Pool().QueryRow(context.Background(),
		"SELECT count(*) FROM "+table+" WHERE user_id = $1", userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The acceptance of issue 2: insert, idempotent re-upsert with no rewritten tuples, an exact
// count of changed rows.
func TestUpsertDayCountsAndNoRewrite(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	u := newUser(t, st, "CRBM3W")
	loc, _ := time.LoadLocation("America/New_York")
	date := health.Date{Year: 2026, Month: time.November, Day: 12}
	day := fullDay(date, loc, 0)
	if len(day.HeartRate) != 1440 || len(day.Steps) != 288 || len(day.Calories) != 288 {
		t.Fatalf("fixture: %d/%d/%d windows", len(day.HeartRate), len(day.Steps), len(day.Calories))
	}

	got, err := st.UpsertDay(ctx, u.ID, loc, day, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.Counts{Inserted: rowsPerDay}, got); diff != "" {
		t.Fatalf("first upsert counts (-want +got):\n%s", diff)
	}
	for table, want := range map[string]int64{"daily_summaries": 1, "intraday_heart_rate": 1440,
		"intraday_steps": 288, "intraday_calories": 288} {
		if n := countRows(t, st, table, u.ID); n != want {
			t.Errorf("%s has %d rows, want %d", table, n, want)
		}
	}
	before := tableStats(t, st)
	if before["intraday_heart_rate"].Ins != 1440 {
		t.Fatalf("stats not flushed: %+v", before)
	}

	// The same day again, rebuilt from scratch (new slices, equal values).
	got, err = st.UpsertDay(ctx, u.ID, loc, fullDay(date, loc, 0), false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.Counts{Unchanged: rowsPerDay}, got); diff != "" {
		t.Fatalf("re-upsert counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, tableStats(t, st)); diff != "" {
		t.Fatalf("re-upsert wrote tuples (-before +after):\n%s", diff)
	}

	// Five heart-rate values change (one field each, spread over the day).
	changed := fullDay(date, loc, 0)
	for _, i := range []int{0, 100, 719, 1000, 1439} {
		changed.HeartRate[i].Max += 1
	}
	got, err = st.UpsertDay(ctx, u.ID, loc, changed, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.Counts{Updated: 5, Unchanged: rowsPerDay - 5}, got); diff != "" {
		t.Fatalf("five changed (-want +got):\n%s", diff)
	}
	after := tableStats(t, st)
	if d := after["intraday_heart_rate"].Upd - before["intraday_heart_rate"].Upd; d != 5 {
		t.Errorf("n_tup_upd on intraday_heart_rate grew by %d, want 5", d)
	}
	for _, table := range []string{"daily_summaries", "intraday_steps", "intraday_calories"} {
		if after[table] != before[table] {
			t.Errorf("%s stats changed: %+v -> %+v", table, before[table], after[table])
		}
	}
	var max float32
	if err := st.Pool().QueryRow(ctx, "SELECT bpm_max FROM intraday_heart_rate WHERE user_id = $1 AND ts = $2",
		u.ID, changed.HeartRate[719].Start).Scan(&max); err != nil {
		t.Fatal(err)
	}
	if want := float32(changed.HeartRate[719].Max); max != want {
		t.Errorf("bpm_max = %v, want %v", max, want)
	}
}

func TestUpsertDaySummaryNulls(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	u := newUser(t, st, "NULLS1")
	date := health.Date{Year: 2026, Month: time.November, Day: 12}
	day := &health.Day{Date: date, Summary: health.Summary{Steps: ptr(int64(0)), DistanceM: ptr(12.5)}}

	if c, err := st.UpsertDay(ctx, u.ID, time.UTC, day, false); err != nil || c != (store.Counts{Inserted: 1}) {
		t.Fatalf("UpsertDay = %+v, %v", c, err)
	}
	type row struct {
		Steps, Floors, AZMPeak *int32
		Distance, Elevation    *float64
	}
	read := func() row {
		var r row
		if err := st.Pool().QueryRow(ctx, `SELECT steps, floors, azm_peak, distance_m, elevation_gain_m
			FROM daily_summaries WHERE user_id = $1 AND date = '2026-11-12'`, u.ID).
			Scan(&r.Steps, &r.Floors, &r.AZMPeak, &r.Distance, &r.Elevation); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if diff := cmp.Diff(row{Steps: ptr(int32(0)), Distance: ptr(12.5)}, read()); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	// Unchanged with NULLs compares equal (IS DISTINCT FROM, not =).
	if c, err := st.UpsertDay(ctx, u.ID, time.UTC, day, false); err != nil || c != (store.Counts{Unchanged: 1}) {
		t.Fatalf("re-upsert = %+v, %v", c, err)
	}
	// A value now reported is an update; one no longer reported goes back to NULL.
	day.Summary.Floors = ptr(int64(3))
	day.Summary.DistanceM = nil
	if c, err := st.UpsertDay(ctx, u.ID, time.UTC, day, false); err != nil || c != (store.Counts{Updated: 1}) {
		t.Fatalf("changed upsert = %+v, %v", c, err)
	}
	if diff := cmp.Diff(row{Steps: ptr(int32(0)), Floors: ptr(int32(3))}, read()); diff != "" {
		t.Errorf("summary after change (-want +got):\n%s", diff)
	}
	ok, err := st.HasSummary(ctx, u.ID, date)
	if err != nil || !ok {
		t.Errorf("HasSummary(%s) = %v, %v; want true", date, ok, err)
	}
	ok, err = st.HasSummary(ctx, u.ID, date.AddDays(1))
	if err != nil || ok {
		t.Errorf("HasSummary(next day) = %v, %v; want false", ok, err)
	}
}

func TestUpsertDayDryRun(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	u := newUser(t, st, "DRYRUN")
	date := health.Date{Year: 2026, Month: time.November, Day: 12}

	got, err := st.UpsertDay(ctx, u.ID, time.UTC, fullDay(date, time.UTC, 0), true)
	if err != nil {
		t.Fatal(err)
	}
	if got != (store.Counts{Inserted: rowsPerDay}) {
		t.Errorf("dry run counts = %+v, want all inserted", got)
	}
	for _, table := range seriesTables {
		if n := countRows(t, st, table, u.ID); n != 0 {
			t.Errorf("dry run left %d rows in %s", n, table)
		}
	}
	// After a real write, a dry run with changes reports them and still writes nothing.
	if _, err := st.UpsertDay(ctx, u.ID, time.UTC, fullDay(date, time.UTC, 0), false); err != nil {
		t.Fatal(err)
	}
	changed := fullDay(date, time.UTC, 0)
	changed.Steps[3].Count++
	if got, err := st.UpsertDay(ctx, u.ID, time.UTC, changed, true); err != nil || got != (store.Counts{Updated: 1, Unchanged: rowsPerDay - 1}) {
		t.Fatalf("dry run with change = %+v, %v", got, err)
	}
	if got, err := st.UpsertDay(ctx, u.ID, time.UTC, changed, true); err != nil || got.Updated != 1 {
		t.Fatalf("second dry run = %+v, %v; the first must not have written", got, err)
	}
}

// local_date/local_time follow the participant's zone, including a 23-hour DST day.
func TestUpsertDayLocalDateTime(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	u := newUser(t, st, "DSTDAY")
	loc, _ := time.LoadLocation("America/New_York")
	date := health.Date{Year: 2026, Month: time.March, Day: 8} // clocks jump 02:00 -> 03:00
	day := fullDay(date, loc, 0)
	if len(day.HeartRate) != 23*60 {
		t.Fatalf("fixture: %d minutes on a 23-hour day", len(day.HeartRate))
	}
	if _, err := st.UpsertDay(ctx, u.ID, loc, day, false); err != nil {
		t.Fatal(err)
	}
	var n, otherDates, gapRows int64
	var first, last pgtype.Time
	if err := st.Pool().QueryRow(ctx, `SELECT count(*),
		count(*) FILTER (WHERE local_date <> '2026-03-08'),
		count(*) FILTER (WHERE local_time >= '02:00' AND local_time < '03:00'),
		min(local_time), max(local_time)
		FROM intraday_heart_rate WHERE user_id = $1`, u.ID).Scan(&n, &otherDates, &gapRows, &first, &last); err != nil {
		t.Fatal(err)
	}
	if n != 1380 || otherDates != 0 || gapRows != 0 {
		t.Errorf("rows=%d, other dates=%d, rows in the DST gap=%d; want 1380, 0, 0", n, otherDates, gapRows)
	}
	if first.Microseconds != 0 || last.Microseconds != (23*3600+59*60)*1e6 {
		t.Errorf("local_time range %v..%v, want 00:00..23:59", first, last)
	}
	var ts time.Time
	if err := st.Pool().QueryRow(ctx, `SELECT ts FROM intraday_heart_rate WHERE user_id = $1 AND local_time = '03:00'`,
		u.ID).Scan(&ts); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC); !ts.Equal(want) {
		t.Errorf("03:00 local is %s, want %s", ts.UTC(), want)
	}
}

func TestUpsertDayErrors(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	date := health.Date{Year: 2026, Month: time.November, Day: 12}

	if _, err := st.UpsertDay(ctx, 999999, time.UTC, fullDay(date, time.UTC, 0), false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: err = %v, want ErrNotFound", err)
	}

	u := newUser(t, st, "DUPWIN")
	dup := fullDay(date, time.UTC, 0)
	dup.Steps = append(dup.Steps, dup.Steps[10])
	if _, err := st.UpsertDay(ctx, u.ID, time.UTC, dup, false); err == nil {
		t.Error("duplicate window accepted")
	}
	// Nothing of the failed day was kept: the day is one transaction.
	for _, table := range seriesTables {
		if n := countRows(t, st, table, u.ID); n != 0 {
			t.Errorf("failed upsert left %d rows in %s", n, table)
		}
	}
	if _, err := st.UpsertDay(ctx, u.ID, nil, fullDay(date, time.UTC, 0), false); err == nil {
		t.Error("nil location accepted")
	}
}

// Deleting a participant removes their data (ON DELETE CASCADE).
func TestDeleteCascades(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	u := newUser(t, st, "CASCAD")
	if _, err := st.UpsertDay(ctx, u.ID, time.UTC, fullDay(health.Date{Year: 2026, Month: 1, Day: 2}, time.UTC, 0), false); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, "DELETE FROM fitbit_users WHERE id = $1", u.ID); err != nil {
		t.Fatal(err)
	}
	for _, table := range seriesTables {
		if n := countRows(t, st, table, u.ID); n != 0 {
			t.Errorf("%s kept %d rows of a deleted user", table, n)
		}
	}
}
