package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

// Benchmarks for one participant-day: 1440 heart-rate + 288 steps + 288 calories windows + 1
// summary = 2,017 rows. Run with `make bench` (go test -run '^$' -bench . -benchmem ./internal/store/).

var benchDate = health.Date{Year: 2026, Month: time.November, Day: 12}

func reportRows(b *testing.B) {
	b.ReportMetric(float64(rowsPerDay)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// createUsers makes n active participants up front, so creating them is not timed.
func createUsers(b *testing.B, st *store.Store, n int) []int64 {
	b.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = newUser(b, st, legacyID(i)).ID
	}
	return ids
}

// Cold: a participant-day never stored before (a fresh user each iteration).
func BenchmarkUpsertDayCold(b *testing.B) {
	st := pgtest.New(b)
	ctx := context.Background()
	day := fullDay(benchDate, time.UTC, 0)
	ids := createUsers(b, st, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := st.UpsertDay(ctx, ids[i], time.UTC, day, false)
		if err != nil || c.Inserted != rowsPerDay {
			b.Fatalf("UpsertDay = %+v, %v", c, err)
		}
	}
	reportRows(b)
}

// Unchanged: the steady state of a 5-minute cron re-reading today (nothing new).
func BenchmarkUpsertDayUnchanged(b *testing.B) {
	st := pgtest.New(b)
	ctx := context.Background()
	day := fullDay(benchDate, time.UTC, 0)
	id := createUsers(b, st, 1)[0]
	if _, err := st.UpsertDay(ctx, id, time.UTC, day, false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := st.UpsertDay(ctx, id, time.UTC, day, false)
		if err != nil || c.Unchanged != rowsPerDay {
			b.Fatalf("UpsertDay = %+v, %v", c, err)
		}
	}
	reportRows(b)
}

// FiveChanged: five heart-rate values differ each time (alternating between two versions).
func BenchmarkUpsertDayFiveChanged(b *testing.B) {
	st := pgtest.New(b)
	ctx := context.Background()
	id := createUsers(b, st, 1)[0]
	days := [2]*health.Day{fullDay(benchDate, time.UTC, 0), fullDay(benchDate, time.UTC, 0)}
	for _, i := range []int{3, 300, 700, 1100, 1400} {
		days[1].HeartRate[i].Avg += 1
	}
	if _, err := st.UpsertDay(ctx, id, time.UTC, days[0], false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := st.UpsertDay(ctx, id, time.UTC, days[(i+1)%2], false)
		if err != nil || c.Updated != 5 {
			b.Fatalf("UpsertDay = %+v, %v", c, err)
		}
	}
	reportRows(b)
}

// BenchmarkRowByRowBaseline writes a participant-day the way an ORM's update_or_create does: per
// point, SELECT the row FOR UPDATE, then INSERT it if missing or UPDATE it if present (Django's
// update_or_create saves the found object whether or not a value changed), each point in its own
// transaction (update_or_create's transaction.atomic). Real Django also wraps the create in a
// savepoint, two more round trips, so this baseline is if anything optimistic.
//
//   - cold: a day never stored, like BenchmarkUpsertDayCold;
//   - cold-one-tx: the same, but the whole day in one transaction (the most favourable case);
//   - unchanged: re-writing a stored day with equal values, like BenchmarkUpsertDayUnchanged.
//
// Each iteration also times the set-based UpsertDay on the same kind of input (a fresh user, or the
// same stored day) and reports speedup_x = row-by-row time / set-based time, from the same run.
func BenchmarkRowByRowBaseline(b *testing.B) {
	for _, mode := range []struct {
		name             string
		perCallTx, fresh bool
	}{{"cold", true, true}, {"cold-one-tx", false, true}, {"unchanged", true, false}} {
		b.Run(mode.name, func(b *testing.B) {
			st := pgtest.New(b)
			ctx := context.Background()
			day := fullDay(benchDate, time.UTC, 0)
			var ids []int64
			if mode.fresh {
				ids = createUsers(b, st, 2*b.N)
			} else {
				ids = createUsers(b, st, 2)
				for _, id := range ids {
					if _, err := st.UpsertDay(ctx, id, time.UTC, day, false); err != nil {
						b.Fatal(err)
					}
				}
			}
			var setBased time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rbr, set := ids[0], ids[1]
				if mode.fresh {
					rbr, set = ids[2*i], ids[2*i+1]
				}
				if err := rowByRow(ctx, st, rbr, time.UTC, day, mode.perCallTx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				start := time.Now()
				if _, err := st.UpsertDay(ctx, set, time.UTC, day, false); err != nil {
					b.Fatal(err)
				}
				setBased += time.Since(start)
				b.StartTimer()
			}
			reportRows(b)
			b.ReportMetric(b.Elapsed().Seconds()/setBased.Seconds(), "speedup_x")
		})
	}
}

func rowByRow(ctx context.Context, st *store.Store, userID int64, loc *time.Location, day *health.Day, perCallTx bool) error {
	pool := st.Pool()
	var outer pgx.Tx
	if !perCallTx {
		var err error
		if outer, err = pool.Begin(ctx); err != nil {
			return err
		}
		defer outer.Rollback(ctx)
	}
	// updateOrCreate runs one point: SELECT ... FOR UPDATE, then INSERT if missing, else UPDATE.
	updateOrCreate := func(selectSQL string, key []any, insertSQL, updateSQL string, args []any) error {
		q := outer
		if perCallTx {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			q = tx
		}
		var found int
		err := q.QueryRow(ctx, selectSQL, key...).Scan(&found)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			_, err = q.Exec(ctx, insertSQL, args...)
		case err == nil:
			_, err = q.Exec(ctx, updateSQL, args...)
		}
		if err != nil {
			return err
		}
		if perCallTx {
			return q.Commit(ctx)
		}
		return nil
	}
	civil := func(t time.Time) (pgtype.Date, pgtype.Time) {
		lt := t.In(loc)
		y, m, d := lt.Date()
		h, mi, s := lt.Clock()
		return pgtype.Date{Time: time.Date(y, m, d, 0, 0, 0, 0, time.UTC), Valid: true},
			pgtype.Time{Microseconds: int64(h*3600+mi*60+s) * 1e6, Valid: true}
	}

	for _, p := range day.HeartRate {
		ld, lt := civil(p.Start)
		avg, lo, hi := float32(p.Avg), float32(p.Min), float32(p.Max)
		err := updateOrCreate(
			`SELECT 1 FROM intraday_heart_rate WHERE user_id = $1 AND ts = $2 FOR UPDATE`,
			[]any{userID, p.Start},
			`INSERT INTO intraday_heart_rate (user_id, ts, local_date, local_time, bpm_avg, bpm_min, bpm_max) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			`UPDATE intraday_heart_rate SET local_date = $3, local_time = $4, bpm_avg = $5, bpm_min = $6, bpm_max = $7 WHERE user_id = $1 AND ts = $2`,
			[]any{userID, p.Start, ld, lt, avg, lo, hi})
		if err != nil {
			return err
		}
	}
	for _, p := range day.Steps {
		ld, lt := civil(p.Start)
		n := int32(p.Count)
		err := updateOrCreate(
			`SELECT 1 FROM intraday_steps WHERE user_id = $1 AND ts = $2 FOR UPDATE`,
			[]any{userID, p.Start},
			`INSERT INTO intraday_steps (user_id, ts, local_date, local_time, steps) VALUES ($1, $2, $3, $4, $5)`,
			`UPDATE intraday_steps SET local_date = $3, local_time = $4, steps = $5 WHERE user_id = $1 AND ts = $2`,
			[]any{userID, p.Start, ld, lt, n})
		if err != nil {
			return err
		}
	}
	for _, p := range day.Calories {
		ld, lt := civil(p.Start)
		k := float32(p.Kcal)
		err := updateOrCreate(
			`SELECT 1 FROM intraday_calories WHERE user_id = $1 AND ts = $2 FOR UPDATE`,
			[]any{userID, p.Start},
			`INSERT INTO intraday_calories (user_id, ts, local_date, local_time, kcal) VALUES ($1, $2, $3, $4, $5)`,
			`UPDATE intraday_calories SET local_date = $3, local_time = $4, kcal = $5 WHERE user_id = $1 AND ts = $2`,
			[]any{userID, p.Start, ld, lt, k})
		if err != nil {
			return err
		}
	}
	sm := day.Summary
	err := updateOrCreate(
		`SELECT 1 FROM daily_summaries WHERE user_id = $1 AND date = $2 FOR UPDATE`,
		[]any{userID, pgDateOf(day.Date)},
		`INSERT INTO daily_summaries (user_id, date, steps, distance_m, calories_total, calories_active, floors,
			elevation_gain_m, resting_heart_rate, sedentary_minutes, light_minutes, moderate_minutes,
			vigorous_minutes, azm_fat_burn, azm_cardio, azm_peak)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		`UPDATE daily_summaries SET steps = $3, distance_m = $4, calories_total = $5, calories_active = $6,
			floors = $7, elevation_gain_m = $8, resting_heart_rate = $9, sedentary_minutes = $10,
			light_minutes = $11, moderate_minutes = $12, vigorous_minutes = $13, azm_fat_burn = $14,
			azm_cardio = $15, azm_peak = $16, updated_at = now() WHERE user_id = $1 AND date = $2`,
		[]any{userID, pgDateOf(day.Date), sm.Steps, sm.DistanceM, sm.CaloriesTotal, sm.CaloriesActive, sm.Floors,
			sm.ElevationGainM, sm.RestingHeartRate, sm.SedentaryMinutes, sm.LightMinutes, sm.ModerateMinutes,
			sm.VigorousMinutes, sm.AZMFatBurn, sm.AZMCardio, sm.AZMPeak})
	if err != nil {
		return err
	}
	if !perCallTx {
		return outer.Commit(ctx)
	}
	return nil
}

func pgDateOf(d health.Date) pgtype.Date {
	return pgtype.Date{Time: time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC), Valid: true}
}
