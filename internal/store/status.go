package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/studylab/sync-all/internal/health"
)

const recentRunsSQL = `
SELECT id, started_at, finished_at, hostname, version, users_total, users_ok, users_failed,
	users_skipped, records_inserted, records_updated, records_unchanged, status, coalesce(error, '')
FROM sync_runs ORDER BY started_at DESC, id DESC LIMIT $1`

// RecentRuns returns the newest n runs, newest first.
func (s *Store) RecentRuns(ctx context.Context, n int) ([]Run, error) {
	rows, err := s.pool.Query(ctx, recentRunsSQL, n)
	if err != nil {
		return nil, translate(err, "list runs")
	}
	runs, err := collect(rows, func(r pgx.Rows) (Run, error) {
		var run Run
		var started, finished pgtype.Timestamptz
		err := r.Scan(&run.ID, &started, &finished, &run.Hostname, &run.Version, &run.UsersTotal,
			&run.UsersOK, &run.UsersFailed, &run.UsersSkipped, &run.Counts.Inserted,
			&run.Counts.Updated, &run.Counts.Unchanged, &run.Status, &run.Error)
		run.StartedAt, run.FinishedAt = timeOf(started), timeOf(finished)
		return run, err
	})
	return runs, translate(err, "list runs")
}

// DataStat is what is stored for one participant: the freshness of its data and how much of a
// local day its heart rate covers.
type DataStat struct {
	NewestHeartRate  time.Time // start of the newest stored heart-rate window; zero = none
	HeartRateMinutes int       // heart-rate windows stored on the asked local date, before the asked instant
}

// dataStatsSQL reads, per participant, the newest heart-rate window (a backward scan of the
// primary key) and the count of windows on one local date (the local_date index). The local
// date is computed by the caller in Go, like every civil date the job writes.
const dataStatsSQL = `
SELECT t.id,
	(SELECT max(h.ts) FROM intraday_heart_rate h WHERE h.user_id = t.id),
	(SELECT count(*) FROM intraday_heart_rate h WHERE h.user_id = t.id AND h.local_date = t.d AND h.ts < $3)
FROM unnest($1::bigint[], $2::date[]) AS t(id, d)`

// DataStats returns, for each participant in days, its newest stored heart-rate window and the
// number of heart-rate minutes stored on that participant's local date days[id] before before.
func (s *Store) DataStats(ctx context.Context, days map[int64]health.Date, before time.Time) (map[int64]DataStat, error) {
	ids := make([]int64, 0, len(days))
	dates := make([]pgtype.Date, 0, len(days))
	for id, d := range days {
		ids = append(ids, id)
		dates = append(dates, pgDate(d))
	}
	rows, err := s.pool.Query(ctx, dataStatsSQL, ids, dates, before)
	if err != nil {
		return nil, translate(err, "read data statistics")
	}
	out := make(map[int64]DataStat, len(days))
	for rows.Next() {
		var id int64
		var newest pgtype.Timestamptz
		var n int
		if err := rows.Scan(&id, &newest, &n); err != nil {
			rows.Close()
			return nil, translate(err, "read data statistics")
		}
		out[id] = DataStat{NewestHeartRate: timeOf(newest), HeartRateMinutes: n}
	}
	return out, translate(rows.Err(), "read data statistics")
}

const summaryUpdatesSQL = `
SELECT date, updated_at FROM daily_summaries WHERE user_id = $1 AND date BETWEEN $2 AND $3`

// SummaryUpdates returns, for each local date from..to (inclusive) whose summary row is stored,
// when a value of that row last changed (daily_summaries.updated_at). Backfill uses it to leave
// alone days that were stored after they were over.
func (s *Store) SummaryUpdates(ctx context.Context, userID int64, from, to health.Date) (map[health.Date]time.Time, error) {
	what := fmt.Sprintf("read summaries of user %d from %s to %s", userID, from, to)
	rows, err := s.pool.Query(ctx, summaryUpdatesSQL, userID, pgDate(from), pgDate(to))
	if err != nil {
		return nil, translate(err, what)
	}
	out := map[health.Date]time.Time{}
	for rows.Next() {
		var d pgtype.Date
		var at pgtype.Timestamptz
		if err := rows.Scan(&d, &at); err != nil {
			rows.Close()
			return nil, translate(err, what)
		}
		out[health.DateOf(d.Time)] = timeOf(at)
	}
	return out, translate(rows.Err(), what)
}
