package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Additional authenticated data of each token column.
const (
	aadAccess  = "fitbit_users.access_token"
	aadRefresh = "fitbit_users.refresh_token"
)

// ErrNoTokenKey is returned when a token would be stored in the clear without permission.
var ErrNoTokenKey = errors.New("no token encryption key: set SYNC_TOKEN_KEY or SYNC_TOKEN_KEY_FILE (32 random bytes, base64: head -c 32 /dev/urandom | base64), or pass --allow-plaintext-tokens")

// seal encrypts one token column value ("" stays "": no token).
func (s *Store) seal(v, aad string) (string, error) {
	if v == "" {
		return "", nil
	}
	if s.Keys == nil {
		if s.RequireKey {
			return "", ErrNoTokenKey
		}
		return v, nil
	}
	return s.Keys.Encrypt(v, aad)
}

const rekeyScanSQL = `SELECT id, access_token, refresh_token FROM fitbit_users
WHERE access_token IS NOT NULL OR refresh_token IS NOT NULL ORDER BY id`

const rekeyLockSQL = `SELECT access_token, refresh_token FROM fitbit_users WHERE id = $1 FOR UPDATE`

const rekeyUpdateSQL = `UPDATE fitbit_users SET access_token = $2, refresh_token = $3, updated_at = now() WHERE id = $1`

// RekeyTokens re-encrypts, under the current key, every stored token that is plaintext or under
// an older key, one participant per transaction (row locked, so a concurrent refresh is not
// overwritten). It returns how many participants were rewritten and how many were already
// current.
func (s *Store) RekeyTokens(ctx context.Context) (rewritten, current int, err error) {
	if s.Keys == nil {
		return 0, 0, ErrNoTokenKey
	}
	type row struct {
		id              int64
		access, refresh *string
	}
	rows, err := s.pool.Query(ctx, rekeyScanSQL)
	if err != nil {
		return 0, 0, translate(err, "list tokens")
	}
	all, err := collect(rows, func(r pgx.Rows) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.access, &x.refresh)
	})
	if err != nil {
		return 0, 0, translate(err, "list tokens")
	}
	needs := func(v *string) bool { return v != nil && s.Keys.NeedsRekey(*v) }
	for _, x := range all {
		if !needs(x.access) && !needs(x.refresh) {
			current++
			continue
		}
		err := s.WithTx(ctx, func(tx pgx.Tx) error {
			var cur tokenColumns
			if err := tx.QueryRow(ctx, rekeyLockSQL, x.id).Scan(&cur.access, &cur.refresh); err != nil {
				return err
			}
			tok, err := s.openToken(cur)
			if err != nil {
				return err
			}
			next, err := s.sealToken(tok)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, rekeyUpdateSQL, x.id, next.access, next.refresh)
			return err
		})
		if err != nil {
			return rewritten, current, translate(err, fmt.Sprintf("rekey user %d", x.id))
		}
		rewritten++
	}
	return rewritten, current, nil
}
