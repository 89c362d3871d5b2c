// Command sync-all-demo runs the real job end to end on a fresh machine: it starts a throwaway
// PostgreSQL (unless DATABASE_URL is set) and the Google Health API simulator, then drives the
// real sync-all binary: migrate, enroll every simulated participant through the consent flow
// (this program plays the participant's browser), run twice, and show what landed.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/studylab/sync-all/internal/healthsim"
	"github.com/studylab/sync-all/internal/pglocal"
	"github.com/studylab/sync-all/internal/tokencrypt"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	bin   string
	state string
	env   []string
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sync-all-demo", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "folder holding the sync-all binary")
	state := fs.String("state", ".demo", "folder for the demo's logs, key and database")
	n := fs.Int("participants", 20, "simulated participants to enroll")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.RemoveAll(*state); err != nil {
		return err
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return err
	}
	d := &demo{bin: filepath.Join(*bin, "sync-all"), state: *state}

	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		step("starting a throwaway PostgreSQL")
		cluster, err := pglocal.Start(ctx, pglocal.Options{})
		if err != nil {
			return fmt.Errorf("start PostgreSQL: %w", err)
		}
		defer cluster.Stop()
		if err := createDB(ctx, cluster.DSN("postgres"), "syncall"); err != nil {
			return err
		}
		dsn = cluster.DSN("syncall")
	} else {
		step("using DATABASE_URL")
	}

	sim := healthsim.New(healthsim.Options{Participants: *n})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	step("Google Health API simulator at " + base)

	key, err := tokencrypt.GenerateKey()
	if err != nil {
		return err
	}
	keyFile := filepath.Join(*state, "token.key")
	secretFile := filepath.Join(*state, "client_secret")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(secretFile, []byte("sim-secret\n"), 0o600); err != nil {
		return err
	}
	d.env = append(os.Environ(),
		"DATABASE_URL="+dsn,
		"GOOGLE_CLIENT_ID=sim-client",
		"GOOGLE_CLIENT_SECRET_FILE="+secretFile,
		"HEALTH_API_URL="+base+"/",
		"GOOGLE_AUTH_URL="+base+"/o/oauth2/v2/auth",
		"GOOGLE_TOKEN_URL="+base+"/token",
		"SYNC_LOG_FILE="+filepath.Join(*state, "logs", "sync.log"),
		"SYNC_TOKEN_KEY_FILE="+keyFile,
	)

	step("sync-all migrate")
	if _, err := d.sync(ctx, os.Stdout, "migrate"); err != nil {
		return err
	}

	step(fmt.Sprintf("enrolling %d participants through the consent flow", *n))
	for i, p := range sim.Participants() {
		if err := d.authorize(ctx, p.LegacyUserID, fmt.Sprintf("Participant %02d", i+1)); err != nil {
			return fmt.Errorf("authorize %s: %w", p.LegacyUserID, err)
		}
	}

	for i, note := range []string{"first run: fetches today for everyone", "second run: devices have not synced since, so mostly unchanged"} {
		step(fmt.Sprintf("sync-all run #%d (%s)", i+1, note))
		// The second run must not be skipped by --min-interval: it is the demo's point.
		code, err := d.sync(ctx, os.Stdout, "run", "--min-interval", "0s")
		if err != nil && code != 1 {
			return err
		}
		if err := d.showSummary(); err != nil {
			return err
		}
	}

	step("sync-all status")
	if _, err := d.sync(ctx, os.Stdout, "status"); err != nil {
		return err
	}
	step("a few rows of each table")
	if err := showRows(ctx, dsn); err != nil {
		return err
	}
	step("done: log at " + filepath.Join(*state, "logs", "sync.log"))
	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

// sync runs the real binary; exit code 1 (some participants failed) is returned with an error.
func (d *demo) sync(ctx context.Context, out io.Writer, args ...string) (int, error) {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), fmt.Errorf("sync-all %s: exit %d", strings.Join(args, " "), ee.ExitCode())
	}
	return 0, err
}

var urlRE = regexp.MustCompile(`https?://\S+`)

// authorize runs `sync-all users authorize` and plays the participant's browser: it opens the
// consent URL the command prints, and the simulator's consent screen approves and redirects to
// the command's loopback listener.
func (d *demo) authorize(ctx context.Context, legacy, label string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, "users", "authorize", legacy, "--label", label, "--login-hint", legacy)
	cmd.Env = d.env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(stdout)
	opened := false
	var last string
	for sc.Scan() {
		line := sc.Text()
		if u := urlRE.FindString(line); u != "" && !opened && strings.Contains(u, "/o/oauth2/") {
			opened = true
			go browse(ctx, u)
			continue
		}
		last = line
	}
	if err := cmd.Wait(); err != nil {
		return err
	}
	fmt.Println("  " + last)
	return nil
}

func browse(ctx context.Context, u string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// showSummary prints the last "run finished" line of the log.
func (d *demo) showSummary() error {
	b, err := os.ReadFile(filepath.Join(d.state, "logs", "sync.log"))
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `msg="run finished"`) {
			fmt.Println("  " + lines[i])
			return nil
		}
	}
	return errors.New("no run finished line in the log")
}

func createDB(ctx context.Context, dsn, name string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

func showRows(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`SELECT id, legacy_user_id, label, status, timezone, device_last_sync_at FROM fitbit_users ORDER BY id LIMIT 5`,
		`SELECT u.legacy_user_id, d.date, d.steps, round(d.distance_m)::text AS distance_m, round(d.calories_total)::text AS kcal, d.resting_heart_rate AS rhr, d.azm_cardio FROM daily_summaries d JOIN fitbit_users u ON u.id = d.user_id ORDER BY u.id, d.date LIMIT 5`,
		`SELECT u.legacy_user_id, h.local_date, h.local_time::text AS local_time, round(h.bpm_avg::numeric, 1)::text AS bpm_avg, h.bpm_min, h.bpm_max FROM intraday_heart_rate h JOIN fitbit_users u ON u.id = h.user_id WHERE u.id = (SELECT min(id) FROM fitbit_users) ORDER BY h.ts DESC LIMIT 5`,
		`SELECT u.legacy_user_id, s.local_date, s.local_time::text AS local_time, s.steps FROM intraday_steps s JOIN fitbit_users u ON u.id = s.user_id WHERE u.id = (SELECT min(id) FROM fitbit_users) ORDER BY s.ts DESC LIMIT 5`,
		`SELECT u.legacy_user_id, c.local_date, c.local_time::text AS local_time, round(c.kcal::numeric, 2)::text AS kcal FROM intraday_calories c JOIN fitbit_users u ON u.id = c.user_id WHERE u.id = (SELECT min(id) FROM fitbit_users) ORDER BY c.ts DESC LIMIT 5`,
		`SELECT id, started_at, (finished_at - started_at)::text AS duration, status, users_total, users_ok, users_failed, users_skipped, records_inserted, records_updated, records_unchanged FROM sync_runs ORDER BY id`,
		`SELECT (SELECT count(*) FROM intraday_heart_rate) AS heart_rate_rows, (SELECT count(*) FROM intraday_steps) AS steps_rows, (SELECT count(*) FROM intraday_calories) AS calories_rows, (SELECT count(*) FROM daily_summaries) AS summaries`,
	} {
		if err := printQuery(ctx, conn, q); err != nil {
			return err
		}
	}
	return nil
}

func printQuery(ctx context.Context, conn *pgx.Conn, q string) error {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	var names []string
	for _, f := range rows.FieldDescriptions() {
		names = append(names, f.Name)
	}
	table := [][]string{names}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = format(v)
		}
		table = append(table, row)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	widths := make([]int, len(names))
	for _, r := range table {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	fmt.Println()
	for j, r := range table {
		for i, c := range r {
			fmt.Printf("%-*s  ", widths[i], c)
		}
		fmt.Println()
		if j == 0 {
			for i := range r {
				fmt.Print(strings.Repeat("-", widths[i]) + "  ")
			}
			fmt.Println()
		}
	}
	return nil
}

func format(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case time.Time:
		if x.Hour() == 0 && x.Minute() == 0 && x.Second() == 0 && x.Location() == time.UTC {
			return x.Format(time.DateOnly)
		}
		return x.UTC().Format(time.RFC3339)
	case time.Duration:
		return x.Round(time.Millisecond).String()
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}
