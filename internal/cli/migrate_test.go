package cli

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/studylab/sync-all/internal/pgtest"
)

func TestMigrateAndSchemaChecks(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 1})
	empty := pgtest.EmptyDSN(t)
	env := w.env(EnvDatabaseURL, empty)

	r := w.run(env, "migrate", "--status")
	if r.code != ExitOK || !strings.Contains(r.stdout, "current version: 0") || !strings.Contains(r.stdout, "pending: run `sync-all migrate`") {
		t.Fatalf("status before: exit %d %q", r.code, r.stdout)
	}
	// run against a schema that is behind aborts with the next step (exit 3, the run contract).
	r = w.run(env, "run")
	if r.code != ExitAborted || !strings.Contains(r.stderr, "run `sync-all migrate`") {
		t.Fatalf("run on an unmigrated database: exit %d, stderr %q", r.code, r.stderr)
	}

	// Two migrations at once (two hosts deploying) both end at the latest version.
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Go(func() { results[i] = w.run(env, "migrate") })
	}
	wg.Wait()
	for i, r := range results {
		if r.code != ExitOK {
			t.Fatalf("concurrent migrate %d: exit %d %s", i, r.code, r.stderr)
		}
	}
	if got := results[0].stdout + results[1].stdout; !strings.Contains(got, "migrated schema from version 0 to 2") {
		t.Errorf("neither migrate reported the migration: %q", got)
	}
	r = w.run(env, "migrate")
	if r.code != ExitOK || !strings.Contains(r.stdout, "schema is up to date at version 2") {
		t.Fatalf("second migrate: exit %d %q", r.code, r.stdout)
	}
	if r := w.run(env, "migrate", "--status"); !strings.Contains(r.stdout, "up to date") {
		t.Errorf("status after: %q", r.stdout)
	}
}

func TestRunConfigurationErrors(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 1})
	down := (&url.URL{Scheme: "postgres", User: url.UserPassword("syncer", "hunter2"), Host: "127.0.0.1:1", Path: "study"}).String()
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"database down", w.env(EnvDatabaseURL, down), nil, ExitAborted, "127.0.0.1:1/study"},
		{"no database url", w.env(EnvDatabaseURL, ""), nil, ExitUsage, "DATABASE_URL is not set"},
		{"not a postgres url", w.env(EnvDatabaseURL, "mysql://u:hunter2@h/db"), nil, ExitUsage, "not a postgres:// URL"},
		{"no client id", w.env(EnvClientID, ""), nil, ExitUsage, "GOOGLE_CLIENT_ID is not set"},
		{"no client secret", w.env(EnvClientSecret, ""), nil, ExitUsage, "GOOGLE_CLIENT_SECRET (or GOOGLE_CLIENT_SECRET_FILE) is not set"},
		{"missing secret file", w.env(EnvClientSecret, "", EnvClientSecretFile, "/nonexistent/secret"), nil, ExitUsage, "cannot read /nonexistent/secret"},
		{"bad api url", w.env(EnvHealthAPIURL, "health.googleapis.com"), nil, ExitUsage, "HEALTH_API_URL"},
		{"bad date", w.env(), []string{"--date", "2026-13-01"}, ExitUsage, "--date"},
		{"bad concurrency", w.env(), []string{"--concurrency", "0"}, ExitUsage, "--concurrency"},
		{"bad fetch concurrency", w.env(), []string{"--fetch-concurrency", "14"}, ExitUsage, "--fetch-concurrency 14: use a number from 1 to 13"},
		{"bad log format", w.env(), []string{"--log-format", "xml"}, ExitUsage, "--log-format"},
		{"unknown flag", w.env(), []string{"--nope"}, ExitUsage, "unknown flag"},
		{"stray argument", w.env(), []string{"CRBM3W"}, ExitUsage, "unknown command"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := w.run(c.env, append([]string{"run"}, c.args...)...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", r.code, r.stderr, c.code, c.want)
			}
			if strings.Contains(r.stderr, "hunter2") || strings.Contains(r.stderr, "sim-secret") {
				t.Errorf("a secret leaked: %q", r.stderr)
			}
		})
	}
	if r := w.run(w.env(), "nosuchcommand"); r.code != ExitUsage {
		t.Errorf("unknown command: exit %d", r.code)
	}
}

// TestInstallCron runs deploy/install-cron.sh against a stand-in crontab that keeps the table
// in a file: installing twice leaves one line, --schedule replaces it, --remove takes it out,
// and other users' lines survive.
func TestInstallCron(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	table := filepath.Join(dir, "table")
	if err := os.WriteFile(table, []byte("0 3 * * * /usr/bin/backup # not ours\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := "#!/bin/sh\nif [ \"$1\" = -l ]; then cat \"$CRONTAB_FILE\"; else cat > \"$CRONTAB_FILE\"; fi\n"
	if err := os.WriteFile(filepath.Join(dir, "crontab"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	// The script checks for the binary and a 0600 env file.
	checkout := filepath.Join(dir, "checkout")
	for _, d := range []string{"bin", "deploy"} {
		if err := os.MkdirAll(filepath.Join(checkout, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"deploy/install-cron.sh", "deploy/crontab"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(checkout, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(checkout, "bin", "sync-all"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(checkout, "deploy", "sync-all.env")
	if err := os.WriteFile(envFile, []byte("GOOGLE_CLIENT_SECRET=s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	install := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{filepath.Join(checkout, "deploy", "install-cron.sh")}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "CRONTAB_FILE="+table)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install-cron.sh %v: %v\n%s", args, err, out)
		}
		b, _ := os.ReadFile(table)
		return string(b)
	}
	install()
	got := install()
	if n := strings.Count(got, "# sync-all"); n != 1 {
		t.Fatalf("after two installs the table has %d sync-all lines:\n%s", n, got)
	}
	want := "*/5 * * * * cd " + checkout + " && set -a && . " + envFile + " && set +a && exec bin/sync-all run # sync-all"
	if !strings.Contains(got, want) || !strings.Contains(got, "/usr/bin/backup") || strings.Contains(got, "s3cret") {
		t.Fatalf("table:\n%s\nwant the line:\n%s", got, want)
	}
	if fi, _ := os.Stat(envFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("env file left at mode %v", fi.Mode().Perm())
	}
	if got := install("--schedule", "*/10 * * * *"); !strings.Contains(got, "*/10 * * * * cd ") || strings.Count(got, "# sync-all") != 1 {
		t.Fatalf("--schedule:\n%s", got)
	}
	if got := install("--remove"); strings.Contains(got, "sync-all") || !strings.Contains(got, "/usr/bin/backup") {
		t.Fatalf("--remove:\n%s", got)
	}
}

// TestLeastPrivilegeRole runs the job as a role made by deploy/least-privilege.sql, the grants
// the README recommends: everything the job and the operator's commands do works with them.
func TestLeastPrivilegeRole(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	ctx := context.Background()
	b, err := os.ReadFile("../../deploy/least-privilege.sql")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	role := "sync_all_" + strings.ReplaceAll(db, "-", "_")
	// What psql's -v substitution would do.
	script := strings.NewReplacer(`:"DBNAME"`, pgx.Identifier{db}.Sanitize(), ":role", pgx.Identifier{role}.Sanitize(),
		":password", "'job-password'").Replace(string(b))
	var lines []string
	for _, l := range strings.Split(script, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	if _, err := w.st.Pool().Exec(ctx, strings.Join(lines, "\n")); err != nil {
		t.Fatalf("least-privilege.sql: %v", err)
	}
	t.Cleanup(func() {
		w.st.Pool().Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
		w.st.Pool().Exec(context.Background(), "DROP ROLE "+pgx.Identifier{role}.Sanitize())
	})
	u.User = url.UserPassword(role, "job-password")
	env := w.env(EnvDatabaseURL, u.String())

	if r := w.run(env, "run"); r.code != ExitOK {
		t.Fatalf("run as %s: exit %d\n%s\n%s", role, r.code, r.stderr, w.log())
	}
	if r := w.run(env, "status"); r.code != ExitOK {
		t.Fatalf("status: exit %d %s", r.code, r.stderr)
	}
	if r := w.run(env, "users", "remove", "CRBM3W", "--purge-data"); r.code != ExitOK {
		t.Fatalf("remove --purge-data: exit %d %s", r.code, r.stderr)
	}
	var left int
	if err := w.st.Pool().QueryRow(ctx, `SELECT count(*) FROM intraday_heart_rate WHERE user_id = $1`, w.users["CRBM3W"].ID).Scan(&left); err != nil || left != 0 {
		t.Fatalf("purge left %d heart-rate rows (%v)", left, err)
	}
	// And it cannot change the schema.
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER TABLE fitbit_users ADD COLUMN x int`); err == nil {
		t.Errorf("the job's role could alter the schema")
	}
}

func TestInsecureDSNWarning(t *testing.T) {
	for _, c := range []struct {
		dsn  string
		warn bool
	}{
		{"postgres://u:p@localhost:5432/db", false},
		{"postgres://u:p@127.0.0.1/db", false},
		{"postgres://u@[::1]/db", false},
		{"postgres://u@/db?host=/var/run/postgresql", false},
		{"postgres://u:p@db.example.org/db", true},
		{"postgres://u:p@db.example.org/db?sslmode=require", true},
		{"postgres://u:p@db.example.org/db?sslmode=verify-full", false},
		{"postgres://u:p@10.0.0.5/db?sslmode=verify-ca", false},
		{"host=db.example.org user=u password=p dbname=db", true},
		{"host=db.example.org sslmode=verify-full dbname=db", false},
		{"host=/tmp dbname=db", false},
	} {
		w := insecureDSN(c.dsn)
		if (w != "") != c.warn {
			t.Errorf("insecureDSN(%q) = %q, want warning %v", c.dsn, w, c.warn)
		}
		if strings.Contains(w, "password") || strings.Contains(w, ":p@") {
			t.Errorf("warning shows credentials: %q", w)
		}
	}
}
