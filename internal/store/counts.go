package store

import "context"

// countActiveSQL counts the participants a run would consider: every active one, or the active
// ones among the ids given.
const countActiveSQL = `SELECT count(*) FROM fitbit_users
WHERE status = 'active' AND ($1::bigint[] IS NULL OR id = ANY ($1::bigint[]))`

// CountActive returns how many participants a run selects (all active, or the active ones of
// only), the denominator of its summary.
func (s *Store) CountActive(ctx context.Context, only []int64) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, countActiveSQL, only).Scan(&n); err != nil {
		return 0, translate(err, "count active users")
	}
	return n, nil
}

const countStatusSQL = `SELECT count(*) FROM fitbit_users WHERE status = $1`

// CountStatus returns how many participants have status (e.g. needs_reconsent, for metrics).
func (s *Store) CountStatus(ctx context.Context, status string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, countStatusSQL, status).Scan(&n); err != nil {
		return 0, translate(err, "count users by status")
	}
	return n, nil
}

// Run statuses (sync_runs.status).
const (
	RunRunning = "running"
	RunOK      = "ok"
	RunPartial = "partial"
	RunAborted = "aborted"
)
