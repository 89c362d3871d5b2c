package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

func TestStatusQueries(t *testing.T) {
	t.Parallel()
	st := pgtest.New(t)
	ctx := context.Background()
	a := newUser(t, st, "AAAAAA")
	b := newUser(t, st, "BBBBBB")

	t0 := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	for i := range 12 {
		r := store.Run{StartedAt: t0.Add(time.Duration(i) * 5 * time.Minute), Hostname: "h", Version: "v"}
		id, err := st.StartRun(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		r.ID, r.FinishedAt, r.Status, r.UsersTotal, r.UsersOK = id, r.StartedAt.Add(3*time.Second), store.RunOK, 2, 2
		r.Counts = store.Counts{Inserted: int64(i)}
		if err := st.FinishRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := st.RecentRuns(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 10 || runs[0].Counts.Inserted != 11 || runs[9].Counts.Inserted != 2 ||
		runs[0].FinishedAt.Sub(runs[0].StartedAt) != 3*time.Second || runs[0].Status != store.RunOK || runs[0].UsersOK != 2 {
		t.Errorf("RecentRuns: %d runs, first %+v", len(runs), runs[0])
	}

	loc, _ := time.LoadLocation("America/New_York")
	date := health.Date{Year: 2026, Month: 11, Day: 20}
	day := fullDay(date, loc, 1)
	if _, err := st.UpsertDay(ctx, a.ID, loc, day, false); err != nil {
		t.Fatal(err)
	}
	noon := date.In(loc).Add(12 * time.Hour)
	stats, err := st.DataStats(ctx, map[int64]health.Date{a.ID: date, b.ID: date}, noon)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]store.DataStat{
		a.ID: {NewestHeartRate: day.HeartRate[len(day.HeartRate)-1].Start, HeartRateMinutes: 720},
		b.ID: {},
	}
	if diff := cmp.Diff(want, stats); diff != "" {
		t.Errorf("DataStats (-want +got):\n%s", diff)
	}

	ups, err := st.SummaryUpdates(ctx, a.ID, date.AddDays(-3), date.AddDays(3))
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 1 || ups[date].IsZero() {
		t.Errorf("SummaryUpdates = %v, want only %s", ups, date)
	}
	if ups, _ := st.SummaryUpdates(ctx, a.ID, date.AddDays(1), date.AddDays(3)); len(ups) != 0 {
		t.Errorf("SummaryUpdates outside the stored day = %v", ups)
	}
}
