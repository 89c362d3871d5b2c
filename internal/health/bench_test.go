package health

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/healthsim"
)

// BenchmarkDay fetches and decodes one full participant-day (13 calls, 2,016 windows) from the
// simulator over loopback HTTP: the job's CPU cost per day besides the store, plus the
// simulator's (profile with -cpuprofile to tell them apart).
func BenchmarkDay(b *testing.B) {
	date := Date{2026, 3, 10}
	now := date.AddDays(2).In(time.UTC)
	sim := healthsim.New(healthsim.Options{Now: func() time.Time { return now }, RateLimitPerMinute: -1, PageSize: 5000})
	sim.AddParticipant(healthsim.Participant{LegacyUserID: "BENCH1", TimeZone: "Europe/Berlin"})
	sim.SyncDevice("BENCH1")
	access, _, _ := sim.Grant("BENCH1", nil)
	ts := httptest.NewServer(sim)
	b.Cleanup(ts.Close)
	c, err := New(Config{BaseURL: ts.URL, HTTPClient: ts.Client()})
	if err != nil {
		b.Fatal(err)
	}
	s := c.Session(access)
	loc, _ := time.LoadLocation("Europe/Berlin")
	b.ReportAllocs()
	for b.Loop() {
		d, err := s.Day(context.Background(), date, loc)
		if err != nil || len(d.HeartRate) == 0 {
			b.Fatalf("Day = %v windows, %v", d, err)
		}
	}
}
