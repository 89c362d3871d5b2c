package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/bench"
	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

// Benchmarks for one participant-day: 1440 heart-rate + 288 steps + 288 calories windows + 1
// summary = 2,017 rows. Run with `make bench` (go test -run '^$' -bench . -benchmem ./internal/store/).

var benchDate = health.Date{Year: 2026, Month: time.November, Day: 12}

func reportRows(b *testing.B) {
	b.ReportMetric(float64(rowsPerDay)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// createUsers makes n active participants up front, so creating them is not timed.
func createUsers(b *testing.B, st *store.Store, n int) []int64 {
	b.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = newUser(b, st, legacyID(i)).ID
	}
	return ids
}

// Cold: a participant-day never stored before (a fresh user each iteration).
func BenchmarkUpsertDayCold(b *testing.B) {
	st := pgtest.New(b)
	ctx := context.Background()
	day := fullDay(benchDate, time.UTC, 0)
	ids := createUsers(b, st, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := st.UpsertDay(ctx, ids[i], time.UTC, day, false)
		if err != nil || c.Inserted != rowsPerDay {
			b.Fatalf("UpsertDay = %+v, %v", c, err)
		}
	}
	reportRows(b)
}

// Unchanged: the steady state of a 5-minute cron re-reading today (nothing new).
func BenchmarkUpsertDayUnchanged(b *testing.B) {
	st := pgtest.New(b)
	ctx := context.Background()
	day := fullDay(benchDate, time.UTC, 0)
	id := createUsers(b, st, 1)[0]
	if _, err := st.UpsertDay(ctx, id, time.UTC, day, false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := st.UpsertDay(ctx, id, time.UTC, day, false)
		if err != nil || c.Unchanged != rowsPerDay {
			b.Fatalf("UpsertDay = %+v, %v", c, err)
		}
	}
	reportRows(b)
}

// FiveChanged: five heart-rate values differ each time (alternating between two versions).
func BenchmarkUpsertDayFiveChanged(b *testing.B) {
	st := pgtest.New(b)
	ctx := context.Background()
	id := createUsers(b, st, 1)[0]
	days := [2]*health.Day{fullDay(benchDate, time.UTC, 0), fullDay(benchDate, time.UTC, 0)}
	for _, i := range []int{3, 300, 700, 1100, 1400} {
		days[1].HeartRate[i].Avg += 1
	}
	if _, err := st.UpsertDay(ctx, id, time.UTC, days[0], false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := st.UpsertDay(ctx, id, time.UTC, days[(i+1)%2], false)
		if err != nil || c.Updated != 5 {
			b.Fatalf("UpsertDay = %+v, %v", c, err)
		}
	}
	reportRows(b)
}

// BenchmarkRowByRowBaseline writes a participant-day the way an ORM's update_or_create does
// (bench.RowByRow: per point, SELECT ... FOR UPDATE, then INSERT or UPDATE):
//
//   - cold: a day never stored, like BenchmarkUpsertDayCold;
//   - cold-one-tx: the same, but the whole day in one transaction (the most favourable case);
//   - unchanged: re-writing a stored day with equal values, like BenchmarkUpsertDayUnchanged.
//
// Each iteration also times the set-based UpsertDay on the same kind of input (a fresh user, or the
// same stored day) and reports speedup_x = row-by-row time / set-based time, from the same run.
func BenchmarkRowByRowBaseline(b *testing.B) {
	for _, mode := range []struct {
		name             string
		perCallTx, fresh bool
	}{{"cold", true, true}, {"cold-one-tx", false, true}, {"unchanged", true, false}} {
		b.Run(mode.name, func(b *testing.B) {
			st := pgtest.New(b)
			ctx := context.Background()
			day := fullDay(benchDate, time.UTC, 0)
			var ids []int64
			if mode.fresh {
				ids = createUsers(b, st, 2*b.N)
			} else {
				ids = createUsers(b, st, 2)
				for _, id := range ids {
					if _, err := st.UpsertDay(ctx, id, time.UTC, day, false); err != nil {
						b.Fatal(err)
					}
				}
			}
			var setBased time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rbr, set := ids[0], ids[1]
				if mode.fresh {
					rbr, set = ids[2*i], ids[2*i+1]
				}
				if err := bench.RowByRow(ctx, st.Pool(), rbr, time.UTC, day, mode.perCallTx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				start := time.Now()
				if _, err := st.UpsertDay(ctx, set, time.UTC, day, false); err != nil {
					b.Fatal(err)
				}
				setBased += time.Since(start)
				b.StartTimer()
			}
			reportRows(b)
			b.ReportMetric(b.Elapsed().Seconds()/setBased.Seconds(), "speedup_x")
		})
	}
}
