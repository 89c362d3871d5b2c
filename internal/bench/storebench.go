package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/store"
)

// StoreResult is one way of writing one participant-day, measured over Iterations days.
type StoreResult struct {
	Case       string
	Iterations int
	Rows       int           // rows per day sent
	Median     time.Duration // per day
	Min        time.Duration
	WALBytes   int64 // median WAL per day (pg_current_wal_insert_lsn difference)
	Written    int64 // rows inserted or updated per day (set-based cases: the store's own count)
}

// RowsPerSec is the rows sent per second at the median.
func (r StoreResult) RowsPerSec() float64 { return float64(r.Rows) / r.Median.Seconds() }

// StoreCases measures, on the migrated database at dsn, one participant-day written by the
// set-based upsert (cold, unchanged, five windows changed), by COPY into tables holding none of
// the participant's rows (the limit) and row by row (the baseline). Each day is its own
// participant where the case needs fresh rows, so every case writes into tables of the same size.
func StoreCases(ctx context.Context, dsn string, iterations, baselineIterations int) ([]StoreResult, error) {
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	pool := st.Pool()
	date := health.Date{Year: 2026, Month: time.November, Day: 12}
	loc := time.UTC
	day := FullDay(date, loc, 0)
	changed := FullDay(date, loc, 0)
	for _, i := range []int{3, 300, 700, 1100, 1400} {
		changed.HeartRate[i].Avg++
	}
	rows := Rows(day)
	seq := 0
	newUser := func() (int64, error) {
		seq++
		var id int64
		err := pool.QueryRow(ctx, `INSERT INTO fitbit_users (legacy_user_id, status) VALUES ($1, 'active') RETURNING id`,
			fmt.Sprintf("BENCH%05d", seq)).Scan(&id)
		return id, err
	}
	stored, err := newUser()
	if err != nil {
		return nil, err
	}
	// Cases that write fresh rows start each day from empty tables (emptied untimed), so the
	// upsert, COPY and the baseline all insert into the same, empty, tables; the others re-upsert
	// the stored day, which each case first writes again.
	empty := func() error {
		_, err := pool.Exec(ctx, `TRUNCATE intraday_heart_rate, intraday_steps, intraday_calories, daily_summaries`)
		return err
	}
	restore := func() error {
		_, err := st.UpsertDay(ctx, stored, loc, day, false)
		return err
	}
	flip := 0

	type step func(id int64) (written int64, err error)
	cases := []struct {
		name  string
		n     int
		fresh bool
		run   step
	}{
		{"set-based upsert, cold", iterations, true, func(id int64) (int64, error) {
			c, err := st.UpsertDay(ctx, id, loc, day, false)
			return c.Inserted + c.Updated, err
		}},
		{"set-based upsert, unchanged", iterations, false, func(int64) (int64, error) {
			c, err := st.UpsertDay(ctx, stored, loc, day, false)
			return c.Inserted + c.Updated, err
		}},
		{"set-based upsert, 5 windows changed", iterations, false, func(int64) (int64, error) {
			flip++
			d := day
			if flip%2 == 1 {
				d = changed
			}
			c, err := st.UpsertDay(ctx, stored, loc, d, false)
			return c.Inserted + c.Updated, err
		}},
		{"COPY into empty tables (limit)", iterations, true, func(id int64) (int64, error) {
			return int64(rows), Copy(ctx, pool, id, loc, day)
		}},
		{"row by row, SELECT then INSERT/UPDATE (baseline)", baselineIterations, true, func(id int64) (int64, error) {
			return int64(rows), RowByRow(ctx, pool, id, loc, day, true)
		}},
	}
	var out []StoreResult
	for _, c := range cases {
		times := make([]time.Duration, 0, c.n)
		wal := make([]int64, 0, c.n)
		var written int64
		if !c.fresh {
			if err := restore(); err != nil {
				return nil, err
			}
		}
		for range c.n {
			id := int64(0)
			if c.fresh {
				if err := empty(); err != nil {
					return nil, err
				}
				if id, err = newUser(); err != nil {
					return nil, err
				}
			}
			before, err := walLSN(ctx, pool)
			if err != nil {
				return nil, err
			}
			start := time.Now()
			w, err := c.run(id)
			elapsed := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			after, err := walLSN(ctx, pool)
			if err != nil {
				return nil, err
			}
			times = append(times, elapsed)
			wal = append(wal, walDiff(ctx, pool, before, after))
			written = w
		}
		slices.Sort(times)
		slices.Sort(wal)
		out = append(out, StoreResult{Case: c.name, Iterations: c.n, Rows: rows, Median: times[len(times)/2], Min: times[0],
			WALBytes: wal[len(wal)/2], Written: written})
	}
	return out, nil
}

// walLSN is the server's current WAL insert position.
func walLSN(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var lsn string
	err := pool.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn)
	return lsn, err
}

// walDiff is the WAL written between two positions; -1 if the server cannot say.
func walDiff(ctx context.Context, pool *pgxpool.Pool, before, after string) int64 {
	var n int64
	if err := pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint`, after, before).Scan(&n); err != nil {
		return -1
	}
	return n
}
