package store

import (
	"context"
	"fmt"
	"time"
)

// Run is one execution of the job (a sync_runs row).
type Run struct {
	ID                    int64
	StartedAt, FinishedAt time.Time // FinishedAt zero = still running
	Hostname, Version     string
	Holder                string // the run's lease holder, "host:pid:start"
	UsersTotal, UsersOK   int
	UsersFailed           int
	UsersSkipped          int
	Counts                Counts
	Status                string // running | ok | partial | aborted
	Error                 string // run-level failure, secret-free
}

const startRunSQL = `
INSERT INTO sync_runs (started_at, hostname, version, users_total, status, holder)
VALUES (coalesce($1, now()), $2, $3, $4, coalesce(nullif($5, ''), 'running'), nullif($6, ''))
RETURNING id`

// StartRun records a run as started (Status "" = running) and returns its id.
func (s *Store) StartRun(ctx context.Context, r Run) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, startRunSQL, nullTime(r.StartedAt), r.Hostname, r.Version,
		r.UsersTotal, r.Status, r.Holder).Scan(&id)
	if err != nil {
		return 0, translateRunStatus(err, "start run", r.Status)
	}
	return id, nil
}

const finishRunSQL = `
UPDATE sync_runs SET finished_at = coalesce($2, now()), users_total = $3, users_ok = $4,
	users_failed = $5, users_skipped = $6, records_inserted = $7, records_updated = $8,
	records_unchanged = $9, status = $10, error = nullif($11, '')
WHERE id = $1`

// FinishRun records r's totals and final status (ok, partial or aborted) on run r.ID.
func (s *Store) FinishRun(ctx context.Context, r Run) error {
	tag, err := s.pool.Exec(ctx, finishRunSQL, r.ID, nullTime(r.FinishedAt), r.UsersTotal, r.UsersOK,
		r.UsersFailed, r.UsersSkipped, r.Counts.Inserted, r.Counts.Updated, r.Counts.Unchanged,
		r.Status, r.Error)
	if err != nil {
		return translateRunStatus(err, fmt.Sprintf("finish run %d", r.ID), r.Status)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("finish run %d: %w", r.ID, ErrNotFound)
	}
	return nil
}

// RunningOn lists the runs of hostname still marked running, other than run except, by id and
// holder (runs recorded before holders were, have none and are not listed).
func (s *Store) RunningOn(ctx context.Context, hostname string, except int64) (map[int64]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, holder FROM sync_runs
		WHERE status = 'running' AND hostname = $1 AND id <> $2 AND holder IS NOT NULL`, hostname, except)
	if err != nil {
		return nil, translate(err, "list running runs")
	}
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var holder string
		if err := rows.Scan(&id, &holder); err != nil {
			rows.Close()
			return nil, translate(err, "list running runs")
		}
		out[id] = holder
	}
	return out, translate(rows.Err(), "list running runs")
}

// AbandonRun marks a run that is still marked running as aborted with reason; it reports
// whether it did (false: the run finished meanwhile).
func (s *Store) AbandonRun(ctx context.Context, id int64, reason string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE sync_runs SET status = 'aborted', error = $2
		WHERE id = $1 AND status = 'running'`, id, reason)
	if err != nil {
		return false, translate(err, fmt.Sprintf("abandon run %d", id))
	}
	return tag.RowsAffected() == 1, nil
}

func translateRunStatus(err error, what, status string) error {
	if pgCode(err) == sqlstateCheckViolation {
		return fmt.Errorf("%s: invalid run status %q (want running, ok, partial or aborted)", what, status)
	}
	return translate(err, what)
}
