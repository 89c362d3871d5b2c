// Package bench measures sync-all against its limits and a naive baseline: the store's upsert of
// one participant-day (set-based, COPY as the limit, row by row as the baseline) and the real
// binary end to end against the simulator over HTTP with added latency. cmd/sync-all-bench runs
// it (`make bench`); the store's go test benchmarks share its day and its baseline.
package bench

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/studylab/sync-all/internal/health"
)

// FullDay is a complete participant-day in loc: a heart-rate value for every minute, steps and
// calories for every 5 minutes, and a summary with a few values not reported. seed shifts the
// values, so two seeds give two versions of every window.
func FullDay(date health.Date, loc *time.Location, seed int) *health.Day {
	start := date.In(loc)
	end := date.AddDays(1).In(loc)
	d := &health.Day{Date: date, Start: start.UTC(), End: end.UTC()}
	for t := start; t.Before(end); t = t.Add(time.Minute) {
		i := len(d.HeartRate) + seed
		avg := 60 + 20*math.Sin(float64(i)/37) + 0.137
		d.HeartRate = append(d.HeartRate, health.HeartRate{Start: t.UTC(), Avg: avg, Min: avg - 3.3, Max: avg + 4.1})
	}
	for t := start; t.Before(end); t = t.Add(5 * time.Minute) {
		i := len(d.Steps) + seed
		d.Steps = append(d.Steps, health.Steps{Start: t.UTC(), Count: int64(i % 97)}) // includes worn zeros
		d.Calories = append(d.Calories, health.Calories{Start: t.UTC(), Kcal: 4.2 + float64(i%13)/7})
	}
	d.Summary = health.Summary{
		Steps:            ptr(int64(8123 + seed)),
		DistanceM:        ptr(6021.5),
		CaloriesTotal:    ptr(2310.25),
		CaloriesActive:   ptr(512.5),
		Floors:           nil, // not reported
		ElevationGainM:   nil,
		RestingHeartRate: ptr(int64(58)),
		SedentaryMinutes: ptr(int64(700)),
		LightMinutes:     ptr(int64(200)),
		ModerateMinutes:  ptr(int64(0)), // a reported zero stays 0
		VigorousMinutes:  ptr(int64(12)),
		AZMFatBurn:       ptr(int64(20)),
		AZMCardio:        ptr(int64(10)),
		AZMPeak:          nil,
	}
	return d
}

func ptr[T any](v T) *T { return &v }

// Rows is the number of rows a participant-day writes: every window plus the summary.
func Rows(d *health.Day) int { return len(d.HeartRate) + len(d.Steps) + len(d.Calories) + 1 }

// civil is a window's local date and time in loc, as the job stores them.
func civil(t time.Time, loc *time.Location) (pgtype.Date, pgtype.Time) {
	lt := t.In(loc)
	y, m, d := lt.Date()
	h, mi, s := lt.Clock()
	return pgtype.Date{Time: time.Date(y, m, d, 0, 0, 0, 0, time.UTC), Valid: true},
		pgtype.Time{Microseconds: int64(h*3600+mi*60+s) * 1e6, Valid: true}
}

func pgDate(d health.Date) pgtype.Date {
	return pgtype.Date{Time: time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC), Valid: true}
}

func summaryArgs(userID int64, day *health.Day) []any {
	sm := day.Summary
	return []any{userID, pgDate(day.Date), sm.Steps, sm.DistanceM, sm.CaloriesTotal, sm.CaloriesActive, sm.Floors,
		sm.ElevationGainM, sm.RestingHeartRate, sm.SedentaryMinutes, sm.LightMinutes, sm.ModerateMinutes,
		sm.VigorousMinutes, sm.AZMFatBurn, sm.AZMCardio, sm.AZMPeak}
}

var summaryColumns = []string{"user_id", "date", "steps", "distance_m", "calories_total", "calories_active", "floors",
	"elevation_gain_m", "resting_heart_rate", "sedentary_minutes", "light_minutes", "moderate_minutes",
	"vigorous_minutes", "azm_fat_burn", "azm_cardio", "azm_peak"}

// RowByRow writes a participant-day the way an ORM's update_or_create does: per point, SELECT the
// row FOR UPDATE, then INSERT it if missing or UPDATE it if present (Django's update_or_create
// saves the found object whether or not a value changed), each point in its own transaction
// (update_or_create's transaction.atomic) unless perPointTx is false, when the whole day is one
// transaction (the most favourable case). Real Django also wraps the create in a savepoint, two
// more round trips, so this baseline is if anything optimistic.
func RowByRow(ctx context.Context, pool *pgxpool.Pool, userID int64, loc *time.Location, day *health.Day, perPointTx bool) error {
	var outer pgx.Tx
	if !perPointTx {
		var err error
		if outer, err = pool.Begin(ctx); err != nil {
			return err
		}
		defer outer.Rollback(ctx)
	}
	updateOrCreate := func(selectSQL string, key []any, insertSQL, updateSQL string, args []any) error {
		q := outer
		if perPointTx {
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
		if perPointTx {
			return q.Commit(ctx)
		}
		return nil
	}
	for _, p := range day.HeartRate {
		ld, lt := civil(p.Start, loc)
		err := updateOrCreate(
			`SELECT 1 FROM intraday_heart_rate WHERE user_id = $1 AND ts = $2 FOR UPDATE`,
			[]any{userID, p.Start},
			`INSERT INTO intraday_heart_rate (user_id, ts, local_date, local_time, bpm_avg, bpm_min, bpm_max) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			`UPDATE intraday_heart_rate SET local_date = $3, local_time = $4, bpm_avg = $5, bpm_min = $6, bpm_max = $7 WHERE user_id = $1 AND ts = $2`,
			[]any{userID, p.Start, ld, lt, float32(p.Avg), float32(p.Min), float32(p.Max)})
		if err != nil {
			return err
		}
	}
	for _, p := range day.Steps {
		ld, lt := civil(p.Start, loc)
		err := updateOrCreate(
			`SELECT 1 FROM intraday_steps WHERE user_id = $1 AND ts = $2 FOR UPDATE`,
			[]any{userID, p.Start},
			`INSERT INTO intraday_steps (user_id, ts, local_date, local_time, steps) VALUES ($1, $2, $3, $4, $5)`,
			`UPDATE intraday_steps SET local_date = $3, local_time = $4, steps = $5 WHERE user_id = $1 AND ts = $2`,
			[]any{userID, p.Start, ld, lt, int32(p.Count)})
		if err != nil {
			return err
		}
	}
	for _, p := range day.Calories {
		ld, lt := civil(p.Start, loc)
		err := updateOrCreate(
			`SELECT 1 FROM intraday_calories WHERE user_id = $1 AND ts = $2 FOR UPDATE`,
			[]any{userID, p.Start},
			`INSERT INTO intraday_calories (user_id, ts, local_date, local_time, kcal) VALUES ($1, $2, $3, $4, $5)`,
			`UPDATE intraday_calories SET local_date = $3, local_time = $4, kcal = $5 WHERE user_id = $1 AND ts = $2`,
			[]any{userID, p.Start, ld, lt, float32(p.Kcal)})
		if err != nil {
			return err
		}
	}
	err := updateOrCreate(
		`SELECT 1 FROM daily_summaries WHERE user_id = $1 AND date = $2 FOR UPDATE`,
		[]any{userID, pgDate(day.Date)},
		`INSERT INTO daily_summaries (user_id, date, steps, distance_m, calories_total, calories_active, floors,
			elevation_gain_m, resting_heart_rate, sedentary_minutes, light_minutes, moderate_minutes,
			vigorous_minutes, azm_fat_burn, azm_cardio, azm_peak)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		`UPDATE daily_summaries SET steps = $3, distance_m = $4, calories_total = $5, calories_active = $6,
			floors = $7, elevation_gain_m = $8, resting_heart_rate = $9, sedentary_minutes = $10,
			light_minutes = $11, moderate_minutes = $12, vigorous_minutes = $13, azm_fat_burn = $14,
			azm_cardio = $15, azm_peak = $16, updated_at = now() WHERE user_id = $1 AND date = $2`,
		summaryArgs(userID, day))
	if err != nil {
		return err
	}
	if !perPointTx {
		return outer.Commit(ctx)
	}
	return nil
}

// Copy loads the day with COPY, one COPY per table in one transaction: the fastest way
// PostgreSQL takes rows, with no conflict handling, so it is the limit for the set-based upsert.
// The participant must have no rows for the day.
func Copy(ctx context.Context, pool *pgxpool.Pool, userID int64, loc *time.Location, day *health.Day) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	hr := make([][]any, len(day.HeartRate))
	for i, p := range day.HeartRate {
		ld, lt := civil(p.Start, loc)
		hr[i] = []any{userID, p.Start, ld, lt, float32(p.Avg), float32(p.Min), float32(p.Max)}
	}
	steps := make([][]any, len(day.Steps))
	for i, p := range day.Steps {
		ld, lt := civil(p.Start, loc)
		steps[i] = []any{userID, p.Start, ld, lt, int32(p.Count)}
	}
	cal := make([][]any, len(day.Calories))
	for i, p := range day.Calories {
		ld, lt := civil(p.Start, loc)
		cal[i] = []any{userID, p.Start, ld, lt, float32(p.Kcal)}
	}
	for _, c := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"intraday_heart_rate", []string{"user_id", "ts", "local_date", "local_time", "bpm_avg", "bpm_min", "bpm_max"}, hr},
		{"intraday_steps", []string{"user_id", "ts", "local_date", "local_time", "steps"}, steps},
		{"intraday_calories", []string{"user_id", "ts", "local_date", "local_time", "kcal"}, cal},
		{"daily_summaries", summaryColumns, [][]any{summaryArgs(userID, day)}},
	} {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}
