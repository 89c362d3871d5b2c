// Package pgtest gives tests a real PostgreSQL database of their own: one throwaway cluster per
// test package (internal/pglocal), or the server named by TEST_DATABASE_URL, a template database
// migrated once, and for each test a fresh clone of it (CREATE DATABASE ... TEMPLATE), dropped
// when the test ends. Cloning a template takes milliseconds, so every test can start clean and
// run in parallel.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// then st := pgtest.New(t) in each test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/studylab/sync-all/internal/pglocal"
	"github.com/studylab/sync-all/internal/store"
)

// EnvURL names the variable that points tests at an existing server (a superuser DSN, e.g.
// postgres://postgres@localhost:5432/postgres). Unset, each test package starts its own cluster.
const EnvURL = "TEST_DATABASE_URL"

// setupTimeout bounds starting the cluster and building the template.
const setupTimeout = 2 * time.Minute

// env is the per-test-binary state. It is package-level because TestMain and the tests share it
// and Go offers no other channel between them; it is written once (under once) and read after.
type env struct {
	once     sync.Once
	err      error
	cluster  *pglocal.Cluster // nil with TEST_DATABASE_URL
	adminDSN string           // superuser DSN of a maintenance database
	admin    *pgxpool.Pool
	prefix   string // unique per test binary, so packages sharing a server do not collide
	template string
	seq      atomic.Int64
}

var shared env

// Main runs the package's tests (call it from TestMain) and then drops the template database and
// stops the cluster, if any test started them. It exits the process with the tests' code.
func Main(m *testing.M) {
	code := m.Run()
	if err := shared.teardown(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// setup starts the server (once) and builds the migrated template. It is lazy so a test binary
// whose selected tests touch no database (go test -run Pure) starts nothing.
func (e *env) setup() error {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		e.err = e.start(ctx)
	})
	return e.err
}

func (e *env) start(ctx context.Context) error {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	e.prefix = fmt.Sprintf("pgtest_%d_%s", os.Getpid(), hex.EncodeToString(b[:]))
	e.template = e.prefix + "_tpl"

	if u := os.Getenv(EnvURL); u != "" {
		e.adminDSN = u
	} else {
		c, err := pglocal.Start(ctx, pglocal.Options{})
		if err != nil {
			return err
		}
		e.cluster = c
		e.adminDSN = c.DSN("postgres")
	}
	admin, err := pgxpool.New(ctx, e.adminDSN)
	if err != nil {
		return fmt.Errorf("connect to admin database at %s: %w", store.RedactDSN(e.adminDSN), err)
	}
	e.admin = admin
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{e.template}.Sanitize()); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	st, err := store.Open(ctx, withDatabase(e.adminDSN, e.template))
	if err != nil {
		return err
	}
	_, _, err = st.Migrate(ctx)
	// Close before any clone: CREATE DATABASE ... TEMPLATE fails while the template has sessions.
	st.Close()
	if err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}
	return nil
}

func (e *env) teardown() error {
	if e.admin == nil && e.cluster == nil {
		return nil
	}
	var err error
	if e.admin != nil {
		// A server of our own is about to vanish; only a shared one needs the template dropped.
		if e.cluster == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, err = e.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{e.template}.Sanitize()+" WITH (FORCE)")
			cancel()
		}
		e.admin.Close()
	}
	if e.cluster != nil {
		if serr := e.cluster.Stop(); err == nil {
			err = serr
		}
	}
	return err
}

// DSN creates a fresh database cloned from the migrated template and returns its superuser DSN,
// for tests that open their own connection (e.g. the CLI end to end). It is dropped when the test
// and its subtests finish; connections still open then are terminated.
func DSN(t testing.TB) string {
	t.Helper()
	return newDatabase(t, true)
}

// EmptyDSN is DSN for a database with no schema at all (not migrated), for testing migrations
// and the "schema behind" path.
func EmptyDSN(t testing.TB) string {
	t.Helper()
	return newDatabase(t, false)
}

// New returns a Store on a fresh migrated database (see DSN), closed and dropped at cleanup.
func New(t testing.TB) *store.Store {
	t.Helper()
	dsn := DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// Registered after newDatabase's cleanup, so it runs first: the pool closes, then the drop.
	t.Cleanup(st.Close)
	return st
}

func newDatabase(t testing.TB, migrated bool) string {
	t.Helper()
	if err := shared.setup(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := fmt.Sprintf("%s_%d", shared.prefix, shared.seq.Add(1))
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if migrated {
		stmt += " TEMPLATE " + pgx.Identifier{shared.template}.Sanitize()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := shared.admin.Exec(ctx, stmt); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE: a test that failed half-way may still hold connections.
		if _, err := shared.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return withDatabase(shared.adminDSN, name)
}

// withDatabase points a URL or key=value DSN at database db.
func withDatabase(dsn, db string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			u.Path = "/" + db
			return u.String()
		}
	}
	// In key=value form a later key wins, so appending is enough.
	return dsn + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db) + "'"
}

// RemoveOnExit removes dir when this process ends, however it ends: Main leaves through
// os.Exit (so a defer would never run) and a timed-out test binary is killed. A shell holding
// the read end of a pipe sees EOF when the kernel closes our end, whatever killed us, as
// internal/pglocal's watchdog does for its clusters.
func RemoveOnExit(dir string) {
	cmd := exec.Command("/bin/sh", "-c", `read -r _; rm -rf "$0"`, dir)
	if w, err := cmd.StdinPipe(); err == nil && cmd.Start() == nil {
		exitPipe = w
	}
}

// exitPipe is RemoveOnExit's end of the pipe, held for the life of the process: a collected
// (closed) pipe would remove the binary while tests still run it.
var exitPipe io.WriteCloser
