// Command sync-all-bench measures sync-all against its limits and a naive baseline (`make bench`):
// the store's upsert of one participant-day next to COPY and a row-by-row write, then the real
// sync-all binary end to end against the simulator over HTTP with added latency: a sequential
// baseline, a first sync, steady state at two sizes and scale-out to three processes. It starts a
// throwaway PostgreSQL with production durability settings and prints a Markdown table at the
// end (also written to --out).
//
//	sync-all-bench --bin bin [--out FILE] [--quick] [--skip-e2e] [--first 1000 --steady 10000 ...]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/studylab/sync-all/internal/bench"
	"github.com/studylab/sync-all/internal/pglocal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sync-all-bench", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "folder holding the sync-all binary")
	out := fs.String("out", "", "also write the tables to this Markdown file")
	quick := fs.Bool("quick", false, "small sizes (a smoke run of the harness, not figures)")
	skipE2E := fs.Bool("skip-e2e", false, "store cases only")
	iters := fs.Int("store-days", 30, "days per store case")
	baseIters := fs.Int("baseline-days", 3, "days of the row-by-row baseline (about a second each)")
	cfg := bench.E2EConfig{}
	fs.DurationVar(&cfg.Latency, "latency", 50*time.Millisecond, "latency added to every simulator request")
	fs.IntVar(&cfg.Sequential, "sequential", 100, "participants of the sequential baseline")
	fs.IntVar(&cfg.First, "first", 1000, "participants of the first sync")
	fs.IntVar(&cfg.Steady, "steady", 10000, "participants of the large steady state")
	fs.IntVar(&cfg.Scale, "scale", 3000, "participants of the scale-out comparison")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "--concurrency of the tuned runs")
	fs.Float64Var(&cfg.MaxRPS, "max-rps", 3000, "--max-rps of the tuned runs")
	fs.IntVar(&cfg.ScaleConcurrency, "scale-concurrency", 16, "--concurrency of each scale-out process")
	fs.IntVar(&cfg.PageSize, "page-size", 5000, "the simulator's page cap (about 5000 observed on the real API)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *quick {
		*iters, *baseIters = 3, 1
		cfg.Sequential, cfg.First, cfg.Steady, cfg.Scale = 5, 20, 60, 30
	}
	if cfg.Steady < cfg.First {
		return fmt.Errorf("--steady %d must be at least --first %d", cfg.Steady, cfg.First)
	}
	cfg.Bin = filepath.Join(*bin, "sync-all")
	if _, err := os.Stat("/usr/bin/time"); err != nil && !*skipE2E {
		fmt.Fprintln(os.Stderr, "bench: /usr/bin/time is missing (apt-get install time): peak RSS will not be measured")
	}
	if _, err := os.Stat(cfg.Bin); err != nil {
		return fmt.Errorf("%w (run `make build` first)", err)
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
	cfg.Log = logf

	state, err := os.MkdirTemp("", "sync-all-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	cfg.Dir = state

	logf("starting a throwaway PostgreSQL (production durability settings)")
	cluster, err := pglocal.Start(ctx, pglocal.Options{Durable: true})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	cfg.DSN = cluster.DSN
	if err := execSQL(ctx, cluster.DSN("postgres"), "CREATE DATABASE bench_template"); err != nil {
		return err
	}
	migrate := exec.CommandContext(ctx, cfg.Bin, "migrate")
	migrate.Env = append(os.Environ(), "DATABASE_URL="+cluster.DSN("bench_template"))
	if b, err := migrate.CombinedOutput(); err != nil {
		return fmt.Errorf("sync-all migrate: %w\n%s", err, b)
	}
	cfg.NewDB = func(name string) error {
		return execSQL(ctx, cluster.DSN("postgres"), fmt.Sprintf("CREATE DATABASE %s TEMPLATE bench_template", pgx.Identifier{name}.Sanitize()))
	}
	var pgVersion string
	if conn, err := pgx.Connect(ctx, cluster.DSN("postgres")); err == nil {
		_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion)
		conn.Close(ctx)
	}

	logf("store: one participant-day, %d days per case (%d row by row)", *iters, *baseIters)
	if err := cfg.NewDB("bench_store"); err != nil {
		return err
	}
	st, err := bench.StoreCases(ctx, cluster.DSN("bench_store"), *iters, *baseIters)
	if err != nil {
		return err
	}
	var e2e bench.E2EResult
	if !*skipE2E {
		if e2e, err = bench.EndToEnd(ctx, cfg); err != nil {
			return err
		}
	}

	var buf bytes.Buffer
	bench.Report(&buf, bench.Conditions{Machine: machine(), Postgres: "PostgreSQL " + strings.Fields(pgVersion + " ?")[0], E2E: cfg, When: time.Now()}, st, e2e)
	fmt.Print("\n" + buf.String())
	if *out != "" {
		return os.WriteFile(*out, buf.Bytes(), 0o644)
	}
	return nil
}

func execSQL(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// machine names the CPU and its cores.
func machine() string {
	model := runtime.GOARCH
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s)", runtime.NumCPU(), model)
}
