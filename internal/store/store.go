// Package store holds all of sync-all's SQL: the pgx pool, schema migrations, participants and
// their tokens, run claims (leases), the set-based upsert of a participant-day, and run records.
//
// pgx and Postgres errors are translated here, once: callers see ErrNotFound, ErrStaleToken,
// ErrSchemaBehind, *UnknownUsersError or a wrapped error, and never need to know pgx.
package store

import (
	"context"
	"errors"
	"fmt"
	"github.com/studylab/sync-all/internal/tokencrypt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	// ErrNotFound means the row asked for does not exist (or, for ClaimNext, no user is left).
	ErrNotFound = errors.New("not found")
	// ErrStaleToken means SaveToken's compare-and-swap failed: the stored refresh token is no
	// longer the one the caller started from (another process refreshed first). Nothing changed.
	ErrStaleToken = errors.New("stored refresh token changed concurrently")
	// ErrSchemaBehind means the database's schema is older than this binary; run `sync-all migrate`.
	ErrSchemaBehind = errors.New("database schema is behind")
	// ErrUnreachable is wrapped by Open when the server cannot be reached or refuses the login.
	ErrUnreachable = errors.New("database unreachable")
	// ErrDuplicate means an insert hit a unique constraint (e.g. a legacy_user_id already enrolled).
	ErrDuplicate = errors.New("already exists")
)

// Store is the database handle. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// Now, when set, is the clock for leases (ClaimNext); nil uses the database server's now(), so
	// that several hosts agree on lease expiry. Tests set it to move time without sleeping.
	// Set it before the Store is shared.
	Now func() time.Time
	// Keys encrypts tokens at rest (AES-256-GCM); nil stores them as given. Rows written before
	// a key was configured are read as plaintext and encrypted on their next save.
	Keys *tokencrypt.Keyring
	// RequireKey makes saving a token without Keys an error (ErrNoTokenKey) instead of storing
	// it in the clear: the job's default; plaintext needs an explicit operator decision.
	RequireKey bool
}

const (
	// maxConns bounds the pool: the syncer runs a handful of workers, each holding at most one
	// connection at a time (one transaction per participant-day); 10 leaves room for the claimer.
	maxConns = 10
	// connectTimeout is how long one connection attempt may take. An unreachable host must fail
	// the run quickly and clearly rather than hang a cron slot.
	connectTimeout = 5 * time.Second
)

// Open connects to the database at dsn (a postgres:// URL or key=value string), checks it with a
// ping, and returns the Store. Errors name host:port/db and never include the password; an
// unreachable server wraps ErrUnreachable.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse error quotes the DSN (password masked best-effort); ours is static
		// apart from the redacted form, so it cannot leak.
		return nil, fmt.Errorf("invalid database URL %s: %s", RedactDSN(dsn), parseProblem(err))
	}
	// An operator's explicit pool_max_conns / connect_timeout in the DSN wins over our defaults.
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = maxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	target := targetOf(cfg.ConnConfig.Config)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &connectError{target: target, cause: connectCause(err), err: err}
	}
	// The ping's own bound only backs up ConnectTimeout (which covers the dial and the login).
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnConfig.ConnectTimeout+time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, &connectError{target: target, cause: connectCause(err), err: err}
	}
	return &Store{pool: pool}, nil
}

// connectError reads "cannot connect to database at host:port/db: cause". It keeps the pgx error
// for errors.As (e.g. *pgconn.PgError) but prints only the short cause: pgx's own text repeats the
// target and user, and is not needed to act on the failure.
type connectError struct {
	target, cause string
	err           error
}

// Error implements error.
func (e *connectError) Error() string {
	return "cannot connect to database at " + e.target + ": " + e.cause
}

func (e *connectError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// connectCause reduces a pgx connect error to what a person can act on.
func connectCause(err error) string {
	var pgErr *pgconn.PgError
	var errno syscall.Errno
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &errno):
		return errno.Error()
	case errors.As(err, &dnsErr):
		return dnsErr.Err + " (" + dnsErr.Name + ")"
	case errors.Is(err, os.ErrNotExist):
		return "no such socket"
	}
	// pgconn's ConnectError text names user and database, never the password.
	return err.Error()
}

// parseProblem is a secret-free description of a DSN parse failure.
func parseProblem(err error) string {
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		// Its Unwrap may quote a URL fragment (url.Parse echoes input), so only the kind is kept.
		msg := pce.Error()
		if i := strings.LastIndex(msg, "`: "); i >= 0 {
			msg = msg[i+3:]
		}
		if j := strings.Index(msg, " ("); j >= 0 {
			msg = msg[:j]
		}
		return msg
	}
	return "cannot parse"
}

// targetOf renders host:port/db for messages.
func targetOf(c pgconn.Config) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

var (
	kvPasswordQuoted = regexp.MustCompile(`(?i)\b((?:ssl)?password\s*=\s*)'(?:[^'\\]|\\.)*'`)
	kvPasswordPlain  = regexp.MustCompile(`(?i)\b((?:ssl)?password\s*=\s*)[^\s']\S*`)
)

// RedactDSN returns dsn with any password replaced by "xxxxx", for URLs (userinfo and
// password/sslpassword query parameters) and key=value strings alike. An unparsable URL is
// replaced entirely, since where its password is cannot be known.
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "[unparsable database URL]"
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
		}
		q := u.Query()
		changed := false
		for k := range q {
			if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
				q.Set(k, "xxxxx")
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	dsn = kvPasswordQuoted.ReplaceAllString(dsn, "${1}xxxxx")
	return kvPasswordPlain.ReplaceAllString(dsn, "${1}xxxxx")
}

// Close closes the pool, waiting for connections in use to be returned.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pgx pool, for tests and benchmarks that measure raw SQL. Application code
// goes through Store methods.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// errRollback makes WithTx roll back without reporting an error (dry runs).
var errRollback = errors.New("rollback requested")

// WithTx runs fn in a transaction, committing if fn returns nil and rolling back otherwise
// (including on panic). The rollback uses a context that outlives ctx's cancellation, so a
// canceled run does not leave the connection in a failed transaction.
func (s *Store) WithTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		rerr := tx.Rollback(context.WithoutCancel(ctx))
		if errors.Is(err, errRollback) {
			if rerr != nil {
				return fmt.Errorf("roll back: %w", rerr)
			}
			return nil
		}
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// SQLSTATE codes we translate.
const (
	sqlstateUniqueViolation     = "23505"
	sqlstateForeignKeyViolation = "23503"
	sqlstateCheckViolation      = "23514"
)

// pgCode returns err's SQLSTATE, or "".
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// translate maps pgx errors to the package's errors at the boundary; what names the failing
// operation for the message.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case sqlstateUniqueViolation:
			return fmt.Errorf("%s: %w (%s)", what, ErrDuplicate, pgErr.ConstraintName)
		case sqlstateForeignKeyViolation:
			return fmt.Errorf("%s: %w (%s)", what, ErrNotFound, pgErr.ConstraintName)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
