package pgtest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Each test gets its own migrated database: parallel tests do not see each other's rows, and the
// database is gone once the test is over.
func TestIsolatedAndDropped(t *testing.T) {
	ctx := context.Background()
	dsns := make(chan string, 4)
	t.Run("group", func(t *testing.T) {
		for i := range 4 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				st := pgtest.New(t)
				if err := st.CheckSchema(ctx); err != nil {
					t.Fatalf("clone is not migrated: %v", err)
				}
				if _, err := st.CreateUser(ctx, store.NewUser{LegacyUserID: "SAME01"}); err != nil {
					t.Fatalf("same id in another test's database collided: %v", err)
				}
				var n int
				if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM fitbit_users").Scan(&n); err != nil || n != 1 {
					t.Errorf("users = %d, %v; want only this test's 1", n, err)
				}
				dsns <- pgtest.DSN(t)
			})
		}
	})
	close(dsns)
	for dsn := range dsns {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			conn.Close(ctx)
			t.Errorf("database %s still exists after its test", dsn)
		} else if !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("connect to dropped database: %v", err)
		}
	}
}

func TestEmptyDSN(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.EmptyDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if cur, _, err := st.MigrationStatus(ctx); err != nil || cur != 0 {
		t.Errorf("empty database at version %d, %v; want 0", cur, err)
	}
}
