package store

import (
	"context"
	"fmt"

	"github.com/jackc/tern/v2/migrate"

	"github.com/studylab/sync-all/migrations"
)

// versionTable is tern's bookkeeping table, schema-qualified as tern recommends so a search_path
// set by a migration cannot make it look elsewhere.
const versionTable = "public.schema_version"

// Migrate applies pending migrations and reports the version before and after. tern holds a
// session advisory lock (per database) around both creating its version table and applying
// migrations, and re-reads the version under that lock, so two processes migrating at once
// serialise: one applies, the other finds the schema current and returns (from == to).
func (s *Store) Migrate(ctx context.Context) (from, to int32, err error) {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	// A migration may leave session state behind (tern resets GUCs, not prepared statements or
	// temp tables), and a canceled ctx can leave tern's advisory lock held on the session, so the
	// connection is closed rather than returned to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))

	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: prepare %s: %w", versionTable, err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return 0, 0, fmt.Errorf("migrate: load migrations: %w", err)
	}
	// from is read from tern's own callback, which runs under its lock: reading the version
	// before calling Migrate could race with another process and report a version never seen.
	from = -1
	m.OnStart = func(seq int32, _, _, _ string) {
		if from < 0 {
			from = seq - 1
		}
	}
	if err := m.Migrate(ctx); err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	to, err = m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: read version: %w", err)
	}
	if from < 0 {
		from = to
	}
	return from, to, nil
}

// MigrationStatus reports the database's schema version and the newest this binary knows,
// without changing anything (an unmigrated database is version 0).
func (s *Store) MigrationStatus(ctx context.Context) (current, latest int32, err error) {
	names, err := migrate.FindMigrations(migrations.FS)
	if err != nil {
		return 0, 0, fmt.Errorf("migration status: %w", err)
	}
	latest = int32(len(names))
	current, err = s.schemaVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("migration status: %w", err)
	}
	return current, latest, nil
}

const schemaVersionExistsSQL = `SELECT to_regclass('public.schema_version') IS NOT NULL`

const schemaVersionSQL = `SELECT version FROM public.schema_version`

func (s *Store) schemaVersion(ctx context.Context) (int32, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, schemaVersionExistsSQL).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int32
	if err := s.pool.QueryRow(ctx, schemaVersionSQL).Scan(&v); err != nil {
		return 0, translate(err, "read schema version")
	}
	return v, nil
}

// CheckSchema returns an error wrapping ErrSchemaBehind when the database needs `sync-all
// migrate`. A database ahead of the binary passes: migrations are additive, and refusing would
// block rolling back a bad release of the binary.
func (s *Store) CheckSchema(ctx context.Context) error {
	current, latest, err := s.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	if current < latest {
		return fmt.Errorf("%w: database is at version %d, this sync-all needs %d; run `sync-all migrate`",
			ErrSchemaBehind, current, latest)
	}
	return nil
}
