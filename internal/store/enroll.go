package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/studylab/sync-all/internal/auth"
)

// ErrDisabled means an import would have changed a disabled participant's status or tokens;
// re-enabling is an explicit operator decision (sync-all users enable).
var ErrDisabled = errors.New("participant is disabled")

// Change says what an idempotent write did to a participant.
type Change int

// Changes.
const (
	Unchanged Change = iota // the row already held these values; nothing was written
	Created                 // a new participant row
	Updated                 // an existing row changed
)

func (c Change) String() string {
	switch c {
	case Created:
		return "created"
	case Updated:
		return "updated"
	}
	return "unchanged"
}

const listUsersSQL = `SELECT ` + userColumns + ` FROM fitbit_users
WHERE ($1 = '' OR status = $1) ORDER BY id`

// ListUsers returns every participant (status "") or those with status, in id order.
func (s *Store) ListUsers(ctx context.Context, status string) ([]User, error) {
	rows, err := s.pool.Query(ctx, listUsersSQL, status)
	if err != nil {
		return nil, translate(err, "list users")
	}
	users, err := collect(rows, func(r pgx.Rows) (User, error) { return s.scanUser(r) })
	return users, translate(err, "list users")
}

// Activation is a completed consent: who the API says the participant is, and their token.
type Activation struct {
	UserID       int64  // the participant to update, keeping its id and history; 0 creates one
	LegacyUserID string // identity's legacyUserId; "" = none (a Google-only account)
	HealthUserID string // identity's healthUserId; required
	Label        string // "" keeps the current label
	Token        auth.Token
	Timezone     string    // settings.timeZone (IANA)
	CheckedAt    time.Time // when the time zone was read
}

// activateUserSQL re-consents an existing participant. A legacy id already on the row is never
// replaced (the caller checked that the consent belongs to it; the row is the identity of record),
// only filled in when missing. Clearing last_error and the failure streak says the consent that
// they were about is gone.
const activateUserSQL = `
UPDATE fitbit_users SET
	legacy_user_id = coalesce(legacy_user_id, nullif($2, '')),
	health_user_id = $3,
	label = CASE WHEN $4 = '' THEN label ELSE $4 END,
	status = 'active',
	access_token = $5, refresh_token = $6, token_expires_at = $7, scopes = $8,
	timezone = nullif($9, ''), timezone_checked_at = $10,
	last_error = NULL, consecutive_failures = 0,
	updated_at = now()
WHERE id = $1
RETURNING ` + userColumns

const insertActiveUserSQL = `
INSERT INTO fitbit_users (legacy_user_id, health_user_id, label, status,
	access_token, refresh_token, token_expires_at, scopes, timezone, timezone_checked_at)
VALUES (nullif($1, ''), $2, $3, 'active', $4, $5, $6, $7, nullif($8, ''), $9)
RETURNING ` + userColumns

// ActivateUser stores a consent: it updates participant a.UserID (status active, the token, the
// health id and time zone) or, when a.UserID is 0, creates an active participant. A legacy or
// health id that belongs to another participant gives ErrDuplicate; an unknown a.UserID gives
// ErrNotFound.
func (s *Store) ActivateUser(ctx context.Context, a Activation) (User, error) {
	if a.HealthUserID == "" || a.Token.RefreshToken == "" {
		return User{}, errors.New("activate user: a health user id and a refresh token are required")
	}
	tc, err := s.sealToken(a.Token)
	if err != nil {
		return User{}, fmt.Errorf("activate user: %w", err)
	}
	var row pgx.Row
	if a.UserID != 0 {
		row = s.pool.QueryRow(ctx, activateUserSQL, a.UserID, a.LegacyUserID, a.HealthUserID, a.Label,
			tc.access, tc.refresh, tc.expiresAt, tc.scopes, a.Timezone, nullTime(a.CheckedAt))
	} else {
		row = s.pool.QueryRow(ctx, insertActiveUserSQL, a.LegacyUserID, a.HealthUserID, a.Label,
			tc.access, tc.refresh, tc.expiresAt, tc.scopes, a.Timezone, nullTime(a.CheckedAt))
	}
	u, err := s.scanUser(row)
	if err != nil {
		return User{}, translate(err, "activate user")
	}
	return u, nil
}

// importPendingSQL creates a participant awaiting consent or, if the legacy id is enrolled,
// changes its label and nothing else: status and tokens stay, so an import never downgrades a
// participant. The ON CONFLICT WHERE skips the write when the label is the same (or not given),
// and then no row comes back.
const importPendingSQL = `
INSERT INTO fitbit_users AS f (legacy_user_id, label, status) VALUES ($1, $2, 'pending_consent')
ON CONFLICT (legacy_user_id) DO UPDATE SET label = excluded.label, updated_at = now()
WHERE excluded.label <> '' AND f.label IS DISTINCT FROM excluded.label
RETURNING (xmax = 0)`

// ImportPending creates participant legacyID as pending_consent with label, or updates the label
// of an existing one (an empty label keeps the current one). It reports what it did.
func (s *Store) ImportPending(ctx context.Context, legacyID, label string) (Change, error) {
	if legacyID == "" {
		return Unchanged, errors.New("import user: legacy user id is required")
	}
	var inserted bool
	err := s.pool.QueryRow(ctx, importPendingSQL, legacyID, label).Scan(&inserted)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Unchanged, nil
	case err != nil:
		return Unchanged, translate(err, "import user "+legacyID)
	case inserted:
		return Created, nil
	}
	return Updated, nil
}

// importActiveSQL creates or updates a participant with a verified token. The conflict target
// is the legacy id; a health id held by another row raises a unique violation instead (two
// rows must never share a Google account). A disabled row is left alone (no row comes back).
const importActiveSQL = `
INSERT INTO fitbit_users AS f (legacy_user_id, health_user_id, label, status,
	access_token, refresh_token, token_expires_at, scopes, timezone, timezone_checked_at)
VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, nullif($8, ''), $9)
ON CONFLICT (legacy_user_id) DO UPDATE SET
	health_user_id = excluded.health_user_id,
	label = CASE WHEN excluded.label = '' THEN f.label ELSE excluded.label END,
	status = 'active',
	access_token = excluded.access_token, refresh_token = excluded.refresh_token,
	token_expires_at = excluded.token_expires_at, scopes = excluded.scopes,
	timezone = excluded.timezone, timezone_checked_at = excluded.timezone_checked_at,
	last_error = NULL, consecutive_failures = 0,
	updated_at = now()
WHERE f.status <> 'disabled'
RETURNING (xmax = 0)`

// ImportActive stores an imported participant whose token was refreshed and whose identity was
// checked, as active: created, or updated in place (same id and history). A disabled participant
// gives ErrDisabled; a health id enrolled under another legacy id gives ErrDuplicate.
func (s *Store) ImportActive(ctx context.Context, a Activation) (Change, error) {
	if a.LegacyUserID == "" || a.HealthUserID == "" || a.Token.RefreshToken == "" {
		return Unchanged, errors.New("import user: legacy id, health id and a refresh token are required")
	}
	tc, err := s.sealToken(a.Token)
	if err != nil {
		return Unchanged, fmt.Errorf("import user %s: %w", a.LegacyUserID, err)
	}
	var inserted bool
	err = s.pool.QueryRow(ctx, importActiveSQL, a.LegacyUserID, a.HealthUserID, a.Label,
		tc.access, tc.refresh, tc.expiresAt, tc.scopes, a.Timezone, nullTime(a.CheckedAt)).Scan(&inserted)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Unchanged, fmt.Errorf("import user %s: %w", a.LegacyUserID, ErrDisabled)
	case err != nil:
		return Unchanged, translate(err, "import user "+a.LegacyUserID)
	case inserted:
		return Created, nil
	}
	return Updated, nil
}

// enableUserSQL re-enables a disabled participant: active when a grant is stored, otherwise
// waiting for consent. Only a disabled row matches, so enabling cannot resurrect a participant
// whose consent is known to be gone.
const enableUserSQL = `
UPDATE fitbit_users SET
	status = CASE WHEN refresh_token IS NOT NULL THEN 'active' ELSE 'pending_consent' END,
	updated_at = now()
WHERE id = $1 AND status = 'disabled'
RETURNING status`

// EnableUser re-enables disabled participant userID and returns its new status (active or
// pending_consent). A participant that is not disabled (or does not exist) gives ErrNotFound.
func (s *Store) EnableUser(ctx context.Context, userID int64) (string, error) {
	var status string
	if err := s.pool.QueryRow(ctx, enableUserSQL, userID).Scan(&status); err != nil {
		return "", translate(err, fmt.Sprintf("enable disabled user %d", userID))
	}
	return status, nil
}

// clearTokensSQL deletes a participant's tokens. A run holding the participant's lease cannot
// put them back: its SaveToken compare-and-swap no longer finds the refresh token it started from.
const clearTokensSQL = `
UPDATE fitbit_users SET access_token = NULL, refresh_token = NULL, token_expires_at = NULL,
	scopes = '{}', status = $2,
	last_error = CASE WHEN $3 = '' THEN last_error ELSE $3 END,
	last_error_at = CASE WHEN $3 = '' THEN last_error_at ELSE now() END,
	updated_at = now()
WHERE id = $1`

// ClearTokens deletes participant userID's tokens and sets its status (needs_reconsent after a
// revocation, disabled after a removal). A non-empty reason is recorded as the last error.
func (s *Store) ClearTokens(ctx context.Context, userID int64, status, reason string) error {
	tag, err := s.pool.Exec(ctx, clearTokensSQL, userID, status, reason)
	if err != nil {
		return translateStatus(err, fmt.Sprintf("clear tokens of user %d", userID), status)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("clear tokens of user %d: %w", userID, ErrNotFound)
	}
	return nil
}

// deleteUserSQL removes a participant; ON DELETE CASCADE removes its summaries and series.
const deleteUserSQL = `DELETE FROM fitbit_users WHERE id = $1`

// DeleteUser deletes participant userID and every data row of theirs, in one statement.
func (s *Store) DeleteUser(ctx context.Context, userID int64) error {
	tag, err := s.pool.Exec(ctx, deleteUserSQL, userID)
	if err != nil {
		return translate(err, fmt.Sprintf("delete user %d", userID))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete user %d: %w", userID, ErrNotFound)
	}
	return nil
}
