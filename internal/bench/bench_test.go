package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/pgtest"
)

// binary is the sync-all executable TestMain builds: the harness measures the real process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sync-all-bench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sync-all")
	build := exec.Command("go", "build", "-o", binary, "./cmd/sync-all")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: go build ./cmd/sync-all: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	pgtest.RemoveOnExit(dir)
	pgtest.Main(m)
}

// TestHarness runs `make bench`'s measurements at toy sizes, so the harness cannot rot unseen,
// and checks the behaviour its figures rest on: an unchanged day rewrites nothing, a first sync
// stores every participant's day, steady state costs exactly one API call per participant, and
// three processes sync each participant once.
func TestHarness(t *testing.T) {
	ctx := context.Background()
	st, err := StoreCases(ctx, pgtest.DSN(t), 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 5 {
		t.Fatalf("%d store cases, want 5", len(st))
	}
	for _, r := range st {
		want := int64(r.Rows)
		switch {
		case strings.Contains(r.Case, "unchanged"):
			want = 0
		case strings.Contains(r.Case, "changed"):
			want = 5
		}
		if r.Written != want || r.Median <= 0 || r.Rows != 2017 {
			t.Errorf("%s: %d rows written of %d in %v, want %d written", r.Case, r.Written, r.Rows, r.Median, want)
		}
	}

	var (
		mu  sync.Mutex
		dbs = map[string]string{}
	)
	cfg := E2EConfig{
		Bin: binary, Dir: t.TempDir(), Latency: 5 * time.Millisecond, Log: t.Logf,
		DSN: func(name string) string { mu.Lock(); defer mu.Unlock(); return dbs[name] },
		NewDB: func(name string) error {
			dsn := pgtest.DSN(t)
			mu.Lock()
			defer mu.Unlock()
			dbs[name] = dsn
			return nil
		},
		Sequential: 2, First: 6, Steady: 12, Scale: 9,
		Concurrency: 4, MaxRPS: 1000, ScaleConcurrency: 2, PageSize: 5000,
	}
	res, err := EndToEnd(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		participants int
		calls        float64 // API calls per participant; 0 = not checked
		inserted     bool
	}{
		{RunSequential, 2, 15, true},
		{RunOneAtATime, 2, 15, true},
		{RunFirst, 6, 15, true},
		{RunCatchUp, 6, 0, true},
		{RunSteady, 6, 1, false},
		{RunSteadyBig, 12, 1, false},
		{RunScaleOne, 9, 1, false},
		{RunScaleThree, 9, 1, false},
	} {
		r, ok := res.Run(c.name)
		if !ok {
			t.Errorf("no %q run", c.name)
			continue
		}
		if r.Participants != c.participants || (c.calls > 0 && r.CallsPer() != c.calls) || (r.Inserted > 0) != c.inserted || r.Wall <= 0 {
			t.Errorf("%s: %d participants, %.2f calls each, %d rows inserted; want %d participants, %.0f calls each, rows inserted %v",
				c.name, r.Participants, r.CallsPer(), r.Inserted, c.participants, c.calls, c.inserted)
		}
	}
	if first, _ := res.Run(RunFirst); first.Inserted < 6*1000 {
		t.Errorf("first sync inserted %d rows for 6 full days", first.Inserted)
	}
	if !res.ScaleOnce {
		t.Errorf("scale-out: %s", res.ScaleNote)
	}
	var out strings.Builder
	Report(&out, Conditions{Machine: "test", Postgres: "test", E2E: cfg, When: time.Now()}, st, res)
	for _, want := range []string{"| steady state, large | 12 |", "### Targets", "exactly 1 API call per participant | 1.000 | yes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
