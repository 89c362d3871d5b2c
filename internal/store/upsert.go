package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/studylab/sync-all/internal/health"
)

// Counts are rows written by upserts: new rows, rows whose values changed, and rows sent that
// already held the same values (not rewritten).
type Counts struct {
	Inserted, Updated, Unchanged int64
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Inserted += o.Inserted
	c.Updated += o.Updated
	c.Unchanged += o.Unchanged
}

// Total is the number of rows sent.
func (c Counts) Total() int64 { return c.Inserted + c.Updated + c.Unchanged }

// The series upserts share one shape, so that rows whose values did not change are never
// rewritten (no dead tuples, no WAL, no row locks):
//  1. input: the day's windows as parallel arrays, unnested into rows (one round trip).
//  2. changed: an anti-join against the table keeps rows that are new or differ (IS DISTINCT FROM
//     treats NULLs as values and compares the columns as a row). The join is also bounded by the
//     series' first and last instant, so it reads one primary-key range (the day), not all of a
//     participant's history, whatever plan the row estimates of unnest lead to.
//  3. INSERT ... ON CONFLICT DO UPDATE ... WHERE IS DISTINCT FROM: correctness if another writer
//     inserted or changed the row after step 2's snapshot; its WHERE keeps that case from
//     rewriting an equal row too.
//  4. RETURNING (xmax = 0): true for a freshly inserted tuple, false for an updated one (the new
//     version of an updated row carries our transaction's lock in xmax), counted in SQL so one
//     row comes back instead of one per window.
// Unchanged is then sent - inserted - updated.

const upsertHeartRateSQL = `
WITH input AS (
	SELECT * FROM unnest($2::timestamptz[], $3::date[], $4::time[], $5::real[], $6::real[], $7::real[])
		AS t(ts, local_date, local_time, bpm_avg, bpm_min, bpm_max)
), changed AS (
	SELECT i.* FROM input i
	LEFT JOIN intraday_heart_rate h ON h.user_id = $1 AND h.ts = i.ts AND h.ts BETWEEN $8 AND $9
	WHERE h.user_id IS NULL
	   OR (h.local_date, h.local_time, h.bpm_avg, h.bpm_min, h.bpm_max)
	      IS DISTINCT FROM (i.local_date, i.local_time, i.bpm_avg, i.bpm_min, i.bpm_max)
), up AS (
	INSERT INTO intraday_heart_rate AS h (user_id, ts, local_date, local_time, bpm_avg, bpm_min, bpm_max)
	SELECT $1, ts, local_date, local_time, bpm_avg, bpm_min, bpm_max FROM changed
	ON CONFLICT (user_id, ts) DO UPDATE SET
		local_date = excluded.local_date, local_time = excluded.local_time,
		bpm_avg = excluded.bpm_avg, bpm_min = excluded.bpm_min, bpm_max = excluded.bpm_max
	WHERE (h.local_date, h.local_time, h.bpm_avg, h.bpm_min, h.bpm_max)
	      IS DISTINCT FROM (excluded.local_date, excluded.local_time, excluded.bpm_avg, excluded.bpm_min, excluded.bpm_max)
	RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up`

const upsertStepsSQL = `
WITH input AS (
	SELECT * FROM unnest($2::timestamptz[], $3::date[], $4::time[], $5::integer[])
		AS t(ts, local_date, local_time, steps)
), changed AS (
	SELECT i.* FROM input i
	LEFT JOIN intraday_steps s ON s.user_id = $1 AND s.ts = i.ts AND s.ts BETWEEN $6 AND $7
	WHERE s.user_id IS NULL
	   OR (s.local_date, s.local_time, s.steps) IS DISTINCT FROM (i.local_date, i.local_time, i.steps)
), up AS (
	INSERT INTO intraday_steps AS s (user_id, ts, local_date, local_time, steps)
	SELECT $1, ts, local_date, local_time, steps FROM changed
	ON CONFLICT (user_id, ts) DO UPDATE SET
		local_date = excluded.local_date, local_time = excluded.local_time, steps = excluded.steps
	WHERE (s.local_date, s.local_time, s.steps)
	      IS DISTINCT FROM (excluded.local_date, excluded.local_time, excluded.steps)
	RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up`

const upsertCaloriesSQL = `
WITH input AS (
	SELECT * FROM unnest($2::timestamptz[], $3::date[], $4::time[], $5::real[])
		AS t(ts, local_date, local_time, kcal)
), changed AS (
	SELECT i.* FROM input i
	LEFT JOIN intraday_calories c ON c.user_id = $1 AND c.ts = i.ts AND c.ts BETWEEN $6 AND $7
	WHERE c.user_id IS NULL
	   OR (c.local_date, c.local_time, c.kcal) IS DISTINCT FROM (i.local_date, i.local_time, i.kcal)
), up AS (
	INSERT INTO intraday_calories AS c (user_id, ts, local_date, local_time, kcal)
	SELECT $1, ts, local_date, local_time, kcal FROM changed
	ON CONFLICT (user_id, ts) DO UPDATE SET
		local_date = excluded.local_date, local_time = excluded.local_time, kcal = excluded.kcal
	WHERE (c.local_date, c.local_time, c.kcal)
	      IS DISTINCT FROM (excluded.local_date, excluded.local_time, excluded.kcal)
	RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up`

// upsertSummarySQL is the same shape for the day's one summary row; NULL parameters store NULL
// (not reported), and updated_at moves only when a value changed.
const upsertSummarySQL = `
WITH input AS (
	SELECT $2::date AS date, $3::integer AS steps, $4::double precision AS distance_m,
		$5::double precision AS calories_total, $6::double precision AS calories_active,
		$7::integer AS floors, $8::double precision AS elevation_gain_m,
		$9::integer AS resting_heart_rate, $10::integer AS sedentary_minutes,
		$11::integer AS light_minutes, $12::integer AS moderate_minutes, $13::integer AS vigorous_minutes,
		$14::integer AS azm_fat_burn, $15::integer AS azm_cardio, $16::integer AS azm_peak
), changed AS (
	SELECT i.* FROM input i
	LEFT JOIN daily_summaries d ON d.user_id = $1 AND d.date = i.date
	WHERE d.user_id IS NULL
	   OR (d.steps, d.distance_m, d.calories_total, d.calories_active, d.floors, d.elevation_gain_m,
	       d.resting_heart_rate, d.sedentary_minutes, d.light_minutes, d.moderate_minutes,
	       d.vigorous_minutes, d.azm_fat_burn, d.azm_cardio, d.azm_peak)
	      IS DISTINCT FROM
	      (i.steps, i.distance_m, i.calories_total, i.calories_active, i.floors, i.elevation_gain_m,
	       i.resting_heart_rate, i.sedentary_minutes, i.light_minutes, i.moderate_minutes,
	       i.vigorous_minutes, i.azm_fat_burn, i.azm_cardio, i.azm_peak)
), up AS (
	INSERT INTO daily_summaries AS d (user_id, date, steps, distance_m, calories_total,
		calories_active, floors, elevation_gain_m, resting_heart_rate, sedentary_minutes,
		light_minutes, moderate_minutes, vigorous_minutes, azm_fat_burn, azm_cardio, azm_peak)
	SELECT $1, * FROM changed
	ON CONFLICT (user_id, date) DO UPDATE SET
		steps = excluded.steps, distance_m = excluded.distance_m,
		calories_total = excluded.calories_total, calories_active = excluded.calories_active,
		floors = excluded.floors, elevation_gain_m = excluded.elevation_gain_m,
		resting_heart_rate = excluded.resting_heart_rate,
		sedentary_minutes = excluded.sedentary_minutes, light_minutes = excluded.light_minutes,
		moderate_minutes = excluded.moderate_minutes, vigorous_minutes = excluded.vigorous_minutes,
		azm_fat_burn = excluded.azm_fat_burn, azm_cardio = excluded.azm_cardio,
		azm_peak = excluded.azm_peak, updated_at = now()
	WHERE (d.steps, d.distance_m, d.calories_total, d.calories_active, d.floors, d.elevation_gain_m,
	       d.resting_heart_rate, d.sedentary_minutes, d.light_minutes, d.moderate_minutes,
	       d.vigorous_minutes, d.azm_fat_burn, d.azm_cardio, d.azm_peak)
	      IS DISTINCT FROM
	      (excluded.steps, excluded.distance_m, excluded.calories_total, excluded.calories_active,
	       excluded.floors, excluded.elevation_gain_m, excluded.resting_heart_rate,
	       excluded.sedentary_minutes, excluded.light_minutes, excluded.moderate_minutes,
	       excluded.vigorous_minutes, excluded.azm_fat_burn, excluded.azm_cardio, excluded.azm_peak)
	RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up`

const lockUserForDaySQL = `SELECT 1 FROM fitbit_users WHERE id = $1 FOR KEY SHARE`

// UpsertDay writes one participant-day (its summary and three series) in one transaction, one
// set-based statement each, pipelined as one batch. Rows that did not change are not
// rewritten, and the counts are exact. With dryRun the same statements run and are rolled back,
// so the counts say what a real run would do. local_date/local_time are each window's Start in loc.
// A userID with no participant gives ErrNotFound.
func (s *Store) UpsertDay(ctx context.Context, userID int64, loc *time.Location, day *health.Day, dryRun bool) (Counts, error) {
	what := "upsert day"
	if day != nil {
		what = fmt.Sprintf("upsert %s for user %d", day.Date, userID)
	}
	if day == nil || loc == nil {
		return Counts{}, fmt.Errorf("%s: day and location are required", what)
	}
	b, sent, err := dayBatch(userID, loc, day)
	if err != nil {
		return Counts{}, fmt.Errorf("%s: %w", what, err)
	}

	var total Counts
	err = s.WithTx(ctx, func(tx pgx.Tx) error {
		// The participant's row, locked as an FK check would lock it, guards the whole day (the
		// intraday tables have no FK, see migrations/0001_init.sql): a concurrent purge waits.
		var one int
		if err := tx.QueryRow(ctx, lockUserForDaySQL, userID).Scan(&one); err != nil {
			return err
		}
		br := tx.SendBatch(ctx, b)
		for i := range sent {
			var ins, upd int64
			if err := br.QueryRow().Scan(&ins, &upd); err != nil {
				br.Close()
				return err
			}
			total.Add(Counts{Inserted: ins, Updated: upd, Unchanged: sent[i] - ins - upd})
		}
		if err := br.Close(); err != nil {
			return err
		}
		if dryRun {
			return errRollback
		}
		return nil
	})
	if err != nil {
		return Counts{}, translate(err, what)
	}
	return total, nil
}

// dayBatch builds the day's statements and, per statement, how many rows it sends. Empty series
// are left out (nothing to write).
func dayBatch(userID int64, loc *time.Location, day *health.Day) (*pgx.Batch, []int64, error) {
	b := &pgx.Batch{}
	var sent []int64

	sm := day.Summary
	b.Queue(upsertSummarySQL, userID, pgDate(day.Date), sm.Steps, sm.DistanceM, sm.CaloriesTotal,
		sm.CaloriesActive, sm.Floors, sm.ElevationGainM, sm.RestingHeartRate, sm.SedentaryMinutes,
		sm.LightMinutes, sm.ModerateMinutes, sm.VigorousMinutes, sm.AZMFatBurn, sm.AZMCardio, sm.AZMPeak)
	sent = append(sent, 1)

	if n := len(day.HeartRate); n > 0 {
		c := newCivil(n)
		avg, lo, hi := make([]float32, n), make([]float32, n), make([]float32, n)
		for i, p := range day.HeartRate {
			c.add(p.Start, loc)
			avg[i], lo[i], hi[i] = float32(p.Avg), float32(p.Min), float32(p.Max)
		}
		if err := c.checkUnique("heart rate"); err != nil {
			return nil, nil, err
		}
		b.Queue(upsertHeartRateSQL, userID, c.ts, c.local, c.local, avg, lo, hi, c.min, c.max)
		sent = append(sent, int64(n))
	}
	if n := len(day.Steps); n > 0 {
		c := newCivil(n)
		steps := make([]int32, n)
		for i, p := range day.Steps {
			c.add(p.Start, loc)
			if p.Count < 0 || p.Count > math.MaxInt32 {
				return nil, nil, fmt.Errorf("steps at %s: count %d out of range", p.Start.UTC().Format(time.RFC3339), p.Count)
			}
			steps[i] = int32(p.Count)
		}
		if err := c.checkUnique("steps"); err != nil {
			return nil, nil, err
		}
		b.Queue(upsertStepsSQL, userID, c.ts, c.local, c.local, steps, c.min, c.max)
		sent = append(sent, int64(n))
	}
	if n := len(day.Calories); n > 0 {
		c := newCivil(n)
		kcal := make([]float32, n)
		for i, p := range day.Calories {
			c.add(p.Start, loc)
			kcal[i] = float32(p.Kcal)
		}
		if err := c.checkUnique("calories"); err != nil {
			return nil, nil, err
		}
		b.Queue(upsertCaloriesSQL, userID, c.ts, c.local, c.local, kcal, c.min, c.max)
		sent = append(sent, int64(n))
	}
	return b, sent, nil
}

// civil holds a series' instants and the same instants in the participant's zone. The local
// values are sent as both the date[] and the time[] parameter: pgx encodes a time.Time as a date
// from its own Year/Month/Day and as a time from its own clock, i.e. in its location, which is
// exactly local_date and local_time. Plain []time.Time also takes pgx's non-reflective array path,
// which matters at 2,000 rows a day.
type civil struct {
	ts, local []time.Time
	min, max  time.Time // earliest and latest instant
}

func newCivil(n int) *civil {
	return &civil{ts: make([]time.Time, 0, n), local: make([]time.Time, 0, n)}
}

func (c *civil) add(t time.Time, loc *time.Location) {
	if len(c.ts) == 0 || t.Before(c.min) {
		c.min = t
	}
	if len(c.ts) == 0 || t.After(c.max) {
		c.max = t
	}
	c.ts = append(c.ts, t)
	c.local = append(c.local, t.In(loc))
}

// errDuplicateWindow: ON CONFLICT cannot touch a row twice in one statement, so a series with a
// repeated window would fail in Postgres with a less helpful message.
var errDuplicateWindow = errors.New("duplicate window")

// checkUnique rejects a series with two windows at the same instant. The health client returns
// them ascending, so the common case is one linear pass without a map.
func (c *civil) checkUnique(series string) error {
	ascending := true
	for i := 1; i < len(c.ts); i++ {
		// Postgres keeps microseconds, so that is the resolution that must be unique.
		if c.ts[i-1].UnixMicro() >= c.ts[i].UnixMicro() {
			ascending = false
			break
		}
	}
	if ascending {
		return nil
	}
	seen := make(map[int64]bool, len(c.ts))
	for _, t := range c.ts {
		k := t.UnixMicro()
		if seen[k] {
			return fmt.Errorf("%s at %s: %w", series, t.UTC().Format(time.RFC3339), errDuplicateWindow)
		}
		seen[k] = true
	}
	return nil
}

func pgDate(d health.Date) pgtype.Date {
	return pgtype.Date{Time: time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC), Valid: true}
}

const hasSummarySQL = `SELECT EXISTS (SELECT 1 FROM daily_summaries WHERE user_id = $1 AND date = $2)`

// HasSummary reports whether the participant-day's summary row exists (the day was stored).
func (s *Store) HasSummary(ctx context.Context, userID int64, date health.Date) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, hasSummarySQL, userID, pgDate(date)).Scan(&ok); err != nil {
		return false, translate(err, fmt.Sprintf("check summary of user %d on %s", userID, date))
	}
	return ok, nil
}
