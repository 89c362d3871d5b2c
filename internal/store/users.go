package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/studylab/sync-all/internal/auth"
)

// Participant statuses, as the fitbit_users.status CHECK constraint allows.
const (
	StatusPendingConsent = "pending_consent"
	StatusActive         = "active"
	StatusNeedsReconsent = "needs_reconsent"
	StatusDisabled       = "disabled"
)

// User is one participant (a fitbit_users row). Empty strings and zero times stand for NULL.
type User struct {
	ID                  int64
	LegacyUserID        string // "" = NULL
	HealthUserID        string // "" = NULL
	Label               string
	Status              string
	Token               auth.Token
	Timezone            string    // IANA name; "" = not known yet
	TimezoneCheckedAt   time.Time // zero = NULL
	DeviceLastSyncAt    time.Time // zero = NULL: nothing stored yet
	LastSuccessAt       time.Time
	LastError           string
	LastErrorAt         time.Time
	ConsecutiveFailures int
}

// Handle names the user in logs and messages: the legacy Fitbit id, else the Google Health id,
// else "id:<n>". Never a token or an e-mail address.
func (u User) Handle() string {
	switch {
	case u.LegacyUserID != "":
		return u.LegacyUserID
	case u.HealthUserID != "":
		return u.HealthUserID
	}
	return "id:" + strconv.FormatInt(u.ID, 10)
}

// UnknownUsersError lists ids given to FindUsers that match no participant.
type UnknownUsersError struct{ IDs []string }

// Error lists the unknown ids.
func (e *UnknownUsersError) Error() string {
	return "unknown participant(s): " + strings.Join(e.IDs, ", ")
}

// userColumns is the select list scanUser reads, in its order.
const userColumns = `id, coalesce(legacy_user_id, '') AS legacy_user_id,
	coalesce(health_user_id, '') AS health_user_id, label, status,
	access_token, refresh_token, token_expires_at, scopes,
	coalesce(timezone, '') AS timezone, timezone_checked_at, device_last_sync_at, last_success_at,
	coalesce(last_error, '') AS last_error, last_error_at, consecutive_failures`

// scanUser scans userColumns, after any extra leading destinations.
func (s *Store) scanUser(row pgx.Row, extra ...any) (User, error) {
	var (
		u                                  User
		tc                                 tokenColumns
		tzChecked, devSync, success, errAt pgtype.Timestamptz
	)
	dest := append(extra, &u.ID, &u.LegacyUserID, &u.HealthUserID, &u.Label, &u.Status,
		&tc.access, &tc.refresh, &tc.expiresAt, &tc.scopes,
		&u.Timezone, &tzChecked, &devSync, &success, &u.LastError, &errAt, &u.ConsecutiveFailures)
	if err := row.Scan(dest...); err != nil {
		return User{}, err
	}
	tok, err := s.openToken(tc)
	if err != nil {
		return User{}, fmt.Errorf("user %d: %w", u.ID, err)
	}
	u.Token = tok
	u.TimezoneCheckedAt = timeOf(tzChecked)
	u.DeviceLastSyncAt = timeOf(devSync)
	u.LastSuccessAt = timeOf(success)
	u.LastErrorAt = timeOf(errAt)
	return u, nil
}

// tokenColumns is a token as the fitbit_users columns hold it.
type tokenColumns struct {
	access, refresh *string // NULL = none
	expiresAt       pgtype.Timestamptz
	scopes          []string
}

// sealToken and openToken are the only conversions between auth.Token and its columns. With
// Keys set, both tokens are encrypted (tokencrypt's "enc:v1:<key id>:..." text form); the
// additional data names the column, so an access token's ciphertext cannot pass for a refresh
// token. Expiry and scopes are not secret and stay readable for SQL.
func (s *Store) sealToken(t auth.Token) (tokenColumns, error) {
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{} // the column is NOT NULL; no scopes is an empty array
	}
	access, err := s.seal(t.AccessToken, aadAccess)
	if err != nil {
		return tokenColumns{}, err
	}
	refresh, err := s.seal(t.RefreshToken, aadRefresh)
	if err != nil {
		return tokenColumns{}, err
	}
	return tokenColumns{
		access:    nullString(access),
		refresh:   nullString(refresh),
		expiresAt: pgtype.Timestamptz{Time: t.Expiry, Valid: !t.Expiry.IsZero()},
		scopes:    scopes,
	}, nil
}

func (s *Store) openToken(c tokenColumns) (auth.Token, error) {
	var t auth.Token
	var err error
	if c.access != nil {
		if t.AccessToken, err = s.Keys.Decrypt(*c.access, aadAccess); err != nil {
			return auth.Token{}, fmt.Errorf("decrypt access token: %w", err)
		}
	}
	if c.refresh != nil {
		if t.RefreshToken, err = s.Keys.Decrypt(*c.refresh, aadRefresh); err != nil {
			return auth.Token{}, fmt.Errorf("decrypt refresh token: %w", err)
		}
	}
	t.Expiry = timeOf(c.expiresAt)
	if len(c.scopes) > 0 {
		t.Scopes = c.scopes
	}
	return t, nil
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// nullTime maps the zero time to NULL.
func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

// timeOf maps NULL to the zero time and everything else to UTC (pgx returns time.Local).
func timeOf(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// findActiveUsersSQL lists every active participant, in id order.
const findActiveUsersSQL = `SELECT ` + userColumns + ` FROM fitbit_users WHERE status = 'active' ORDER BY id`

// findUsersSQL resolves each requested id to at most one participant. An id may be a legacy
// Fitbit id, a Google Health id or our numeric id; if it matches several users (a legacy id
// made only of digits that is also someone's numeric id), the legacy id wins, then the health id.
const findUsersSQL = `
SELECT t.w, u.* FROM unnest($1::text[]) WITH ORDINALITY AS t(w, ord)
CROSS JOIN LATERAL (
	SELECT ` + userColumns + ` FROM fitbit_users f
	WHERE f.legacy_user_id = t.w OR f.health_user_id = t.w
	   OR f.id = CASE WHEN t.w ~ '^[0-9]{1,18}$' THEN t.w::bigint END
	ORDER BY CASE WHEN f.legacy_user_id = t.w THEN 0 WHEN f.health_user_id = t.w THEN 1 ELSE 2 END
	LIMIT 1
) u
ORDER BY t.ord`

// FindUsers loads participants. With no ids it returns every active participant. Otherwise each
// id matches a legacy_user_id, a health_user_id or a numeric id (any status), results follow
// the order of ids without duplicates, and ids that match nobody give *UnknownUsersError.
func (s *Store) FindUsers(ctx context.Context, ids []string) ([]User, error) {
	if len(ids) == 0 {
		rows, err := s.pool.Query(ctx, findActiveUsersSQL)
		if err != nil {
			return nil, translate(err, "find active users")
		}
		users, err := collect(rows, func(r pgx.Rows) (User, error) { return s.scanUser(r) })
		return users, translate(err, "find active users")
	}
	rows, err := s.pool.Query(ctx, findUsersSQL, ids)
	if err != nil {
		return nil, translate(err, "find users")
	}
	found := make(map[string]bool, len(ids))
	seen := make(map[int64]bool, len(ids))
	var users []User
	for rows.Next() {
		var w string
		u, err := s.scanUser(rows, &w)
		if err != nil {
			rows.Close()
			return nil, translate(err, "find users")
		}
		found[w] = true
		if !seen[u.ID] {
			seen[u.ID] = true
			users = append(users, u)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find users")
	}
	var unknown []string
	for _, id := range ids {
		if !found[id] {
			unknown = append(unknown, id)
		}
	}
	if unknown != nil {
		return nil, &UnknownUsersError{IDs: unknown}
	}
	return users, nil
}

func collect[T any](rows pgx.Rows, scan func(pgx.Rows) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// NewUser is a participant to create. Empty strings are stored as NULL; Status "" is
// pending_consent; a nil Token stores none.
type NewUser struct {
	LegacyUserID, HealthUserID string
	Label, Status              string
	Token                      *auth.Token
	Timezone                   string
}

const createUserSQL = `
INSERT INTO fitbit_users (legacy_user_id, health_user_id, label, status,
	access_token, refresh_token, token_expires_at, scopes, timezone)
VALUES (nullif($1, ''), nullif($2, ''), $3, coalesce(nullif($4, ''), 'pending_consent'),
	$5, $6, $7, $8, nullif($9, ''))
RETURNING ` + userColumns

// CreateUser inserts a participant. A legacy or health id that is already enrolled gives
// ErrDuplicate; an unknown status is an error.
func (s *Store) CreateUser(ctx context.Context, n NewUser) (User, error) {
	var tok auth.Token
	if n.Token != nil {
		tok = *n.Token
	}
	tc, err := s.sealToken(tok)
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	u, err := s.scanUser(s.pool.QueryRow(ctx, createUserSQL, n.LegacyUserID, n.HealthUserID, n.Label,
		n.Status, tc.access, tc.refresh, tc.expiresAt, tc.scopes, n.Timezone))
	if err != nil {
		return User{}, translateStatus(err, "create user", n.Status)
	}
	return u, nil
}

// translateStatus is translate, naming the status when the CHECK constraint rejected it.
func translateStatus(err error, what, status string) error {
	if pgCode(err) == sqlstateCheckViolation {
		return fmt.Errorf("%s: invalid status %q (want %s, %s, %s or %s)", what, status,
			StatusPendingConsent, StatusActive, StatusNeedsReconsent, StatusDisabled)
	}
	return translate(err, what)
}

const setStatusSQL = `
UPDATE fitbit_users SET status = $2,
	last_error = CASE WHEN $3 = '' THEN last_error ELSE $3 END,
	last_error_at = CASE WHEN $3 = '' THEN last_error_at ELSE now() END,
	updated_at = now()
WHERE id = $1`

// SetStatus sets a participant's status. A non-empty reason is recorded as the last error (why
// the participant needs re-consent or was disabled); an empty one leaves the last error as is.
func (s *Store) SetStatus(ctx context.Context, userID int64, status, reason string) error {
	tag, err := s.pool.Exec(ctx, setStatusSQL, userID, status, reason)
	if err != nil {
		return translateStatus(err, fmt.Sprintf("set status of user %d", userID), status)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set status of user %d: %w", userID, ErrNotFound)
	}
	return nil
}

const lockTokenSQL = `
SELECT access_token, refresh_token, token_expires_at, scopes FROM fitbit_users WHERE id = $1 FOR UPDATE`

const saveTokenSQL = `
UPDATE fitbit_users SET access_token = $2, refresh_token = $3, token_expires_at = $4, scopes = $5,
	updated_at = now()
WHERE id = $1`

// SaveToken stores tok for userID only if the stored refresh token still equals
// prevRefreshToken ("" matches a user with no token yet), and commits before returning. Otherwise
// nothing changes and the error wraps ErrStaleToken.
//
// The comparison is done in Go on the row locked FOR UPDATE rather than in the UPDATE's WHERE, so
// that it keeps working once tokens are encrypted at rest (ciphertexts of equal tokens differ).
func (s *Store) SaveToken(ctx context.Context, userID int64, prevRefreshToken string, tok auth.Token) error {
	if tok.RefreshToken == "" {
		// Storing no refresh token would lose the grant for good; auth keeps the old one when
		// the token endpoint omits it, so this is a caller bug.
		return fmt.Errorf("save token for user %d: refusing to store a token without a refresh token", userID)
	}
	next, err := s.sealToken(tok)
	if err != nil {
		return fmt.Errorf("save token for user %d: %w", userID, err)
	}
	err = s.WithTx(ctx, func(tx pgx.Tx) error {
		var cur tokenColumns
		if err := tx.QueryRow(ctx, lockTokenSQL, userID).Scan(&cur.access, &cur.refresh, &cur.expiresAt, &cur.scopes); err != nil {
			return err
		}
		stored, err := s.openToken(cur)
		if err != nil {
			return err
		}
		if stored.RefreshToken != prevRefreshToken {
			return ErrStaleToken
		}
		_, err = tx.Exec(ctx, saveTokenSQL, userID, next.access, next.refresh, next.expiresAt, next.scopes)
		return err
	})
	return translate(err, fmt.Sprintf("save token for user %d", userID))
}

const setTimezoneSQL = `
UPDATE fitbit_users SET timezone = nullif($2, ''), timezone_checked_at = $3, updated_at = now()
WHERE id = $1`

// SetTimezone records the participant's IANA time zone and when it was read from the API.
func (s *Store) SetTimezone(ctx context.Context, userID int64, tz string, checkedAt time.Time) error {
	tag, err := s.pool.Exec(ctx, setTimezoneSQL, userID, tz, nullTime(checkedAt))
	if err != nil {
		return translate(err, fmt.Sprintf("set time zone of user %d", userID))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set time zone of user %d: %w", userID, ErrNotFound)
	}
	return nil
}

// ClaimRequest asks ClaimNext for one participant to sync.
type ClaimRequest struct {
	Holder string        // who holds the lease (e.g. "host:pid:run"), checked by Release
	Lease  time.Duration // how long the claim lasts if never released (a crashed run)
	// MinInterval skips users claimed less than this long ago, so overlapping cron runs do not
	// sync the same user twice in a row. Ignored for users listed in Only.
	MinInterval time.Duration
	Only        []int64 // nil: any active user; else only these ids (still active only)
	// ClaimedBefore, when not 0, is a mark from ClaimMark taken when the run started: users
	// claimed since (by this run or any other) are skipped, so a run gives each participant one
	// turn even when MinInterval is 0 or the user is named in Only, and two runs with
	// MinInterval 0 do not hand a participant back and forth.
	ClaimedBefore int64
}

// ClaimMark returns a number that every later claim exceeds (ClaimRequest.ClaimedBefore): a
// transaction id, which PostgreSQL hands out in increasing order.
func (s *Store) ClaimMark(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&n); err != nil {
		return 0, translate(err, "take a claim mark")
	}
	return n, nil
}

// claimNextSQL leases one claimable user. The inner SELECT ... FOR UPDATE SKIP LOCKED makes
// concurrent claimers (in any process) pass over a row another transaction is claiming instead of
// waiting for it or taking it too; a row whose claim committed meanwhile is re-checked against
// the lease condition (READ COMMITTED re-evaluation), so it is skipped as well.
// $3 is the clock: NULL uses the server's now().
const claimNextSQL = `
UPDATE fitbit_users SET
	lease_holder = $1,
	lease_expires_at = coalesce($3::timestamptz, now()) + $2::bigint * interval '1 microsecond',
	last_claimed_at = coalesce($3::timestamptz, now()),
	claim_xid = pg_current_xact_id()::text::bigint
WHERE id = (
	SELECT id FROM fitbit_users
	WHERE status = 'active'
	  AND (lease_expires_at IS NULL OR lease_expires_at <= coalesce($3::timestamptz, now()))
	  AND ($4::bigint[] IS NULL OR id = ANY ($4::bigint[]))
	  AND ($6::bigint = 0 OR claim_xid IS NULL OR claim_xid < $6::bigint)
	  AND ($4::bigint[] IS NOT NULL OR last_claimed_at IS NULL
	       OR last_claimed_at <= coalesce($3::timestamptz, now()) - $5::bigint * interval '1 microsecond')
	ORDER BY last_claimed_at NULLS FIRST, id
	LIMIT 1
	FOR UPDATE SKIP LOCKED
)
RETURNING ` + userColumns

// ClaimNext leases one active, unleased participant (oldest last claim first) to r.Holder until
// now+r.Lease, or returns ErrNotFound when none is left. An expired lease counts as unleased, so a
// crashed run's claims free themselves.
func (s *Store) ClaimNext(ctx context.Context, r ClaimRequest) (User, error) {
	if r.Holder == "" || r.Lease <= 0 {
		return User{}, errors.New("claim user: holder and a positive lease are required")
	}
	var now pgtype.Timestamptz
	if s.Now != nil {
		now = pgtype.Timestamptz{Time: s.Now(), Valid: true}
	}
	u, err := s.scanUser(s.pool.QueryRow(ctx, claimNextSQL, r.Holder, r.Lease.Microseconds(), now,
		r.Only, r.MinInterval.Microseconds(), r.ClaimedBefore))
	if err != nil {
		return User{}, translate(err, "claim user")
	}
	return u, nil
}

// Outcome is how syncing one claimed user ended.
type Outcome struct {
	OK               bool
	DeviceLastSyncAt time.Time // zero: keep; only applied when OK (data up to it is stored)
	Status           string    // "": keep; e.g. needs_reconsent
	Error            string    // recorded when !OK; must be secret-free
	At               time.Time // when it ended; zero: the server's now()
}

const releaseSQL = `
UPDATE fitbit_users SET
	lease_holder     = CASE WHEN lease_holder = $2 THEN NULL ELSE lease_holder END,
	lease_expires_at = CASE WHEN lease_holder = $2 THEN NULL ELSE lease_expires_at END,
	last_success_at  = CASE WHEN $3 THEN coalesce($4, now()) ELSE last_success_at END,
	last_error       = CASE WHEN $3 THEN NULL ELSE $5 END,
	last_error_at    = CASE WHEN $3 THEN last_error_at ELSE coalesce($4, now()) END,
	consecutive_failures = CASE WHEN $3 THEN 0 ELSE consecutive_failures + 1 END,
	device_last_sync_at  = CASE WHEN $3 THEN greatest(device_last_sync_at, $6) ELSE device_last_sync_at END,
	status           = coalesce(nullif($7, ''), status),
	updated_at       = now()
WHERE id = $1`

// Release records the outcome and clears the lease if holder still holds it. The outcome is
// recorded even if the lease expired and passed to someone else meanwhile: the data this run
// wrote is stored either way, and device_last_sync_at only moves forward (greatest).
func (s *Store) Release(ctx context.Context, userID int64, holder string, o Outcome) error {
	tag, err := s.pool.Exec(ctx, releaseSQL, userID, holder, o.OK, nullTime(o.At), nullString(o.Error),
		nullTime(o.DeviceLastSyncAt), o.Status)
	if err != nil {
		return translateStatus(err, fmt.Sprintf("release user %d", userID), o.Status)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("release user %d: %w", userID, ErrNotFound)
	}
	return nil
}
