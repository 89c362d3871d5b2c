package store_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ptr[T any](v T) *T { return &v }

// fullDay is a participant-day with every window present: 1440 heart-rate minutes and 288
// five-minute steps and calories windows (in a 24-hour zone day), plus a summary with some
// values not reported (nil) and one reported zero. Values are fractional where the columns are
// real, so a float64 -> real round trip is exercised.
func fullDay(date health.Date, loc *time.Location, seed int) *health.Day {
	start := date.In(loc)
	end := date.AddDays(1).In(loc)
	d := &health.Day{Date: date, Start: start.UTC(), End: end.UTC()}
	for t := start; t.Before(end); t = t.Add(time.Minute) {
		i := len(d.HeartRate) + seed
		avg := 60 + 20*math.Sin(float64(i)/37) + 0.137
		d.HeartRate = append(d.HeartRate, health.HeartRate{Start: t.UTC(), Avg: avg, Min: avg - 3.3, Max: avg + 4.1})
	}
	for t := start; t.Before(end); t = t.Add(5 * time.Minute) {
		i := len(d.Steps) + seed
		d.Steps = append(d.Steps, health.Steps{Start: t.UTC(), Count: int64(i % 97)}) // includes worn zeros
		d.Calories = append(d.Calories, health.Calories{Start: t.UTC(), Kcal: 4.2 + float64(i%13)/7})
	}
	d.Summary = health.Summary{
		Steps:            ptr(int64(8123 + seed)),
		DistanceM:        ptr(6021.5),
		CaloriesTotal:    ptr(2310.25),
		CaloriesActive:   ptr(512.5),
		Floors:           nil, // not reported
		ElevationGainM:   nil,
		RestingHeartRate: ptr(int64(58)),
		SedentaryMinutes: ptr(int64(700)),
		LightMinutes:     ptr(int64(200)),
		ModerateMinutes:  ptr(int64(0)), // a reported zero stays 0
		VigorousMinutes:  ptr(int64(12)),
		AZMFatBurn:       ptr(int64(20)),
		AZMCardio:        ptr(int64(10)),
		AZMPeak:          nil,
	}
	return d
}

// rowsPerDay is what fullDay sends: summary + heart rate + steps + calories.
const rowsPerDay = 1 + 1440 + 288 + 288

// newUser creates an active participant with a token.
func newUser(t testing.TB, st *store.Store, legacy string) store.User {
	t.Helper()
	u, err := st.CreateUser(context.Background(), store.NewUser{
		LegacyUserID: legacy,
		HealthUserID: "h-" + legacy,
		Label:        "participant " + legacy,
		Status:       store.StatusActive,
		Token: &auth.Token{AccessToken: "at-" + legacy, RefreshToken: "rt-" + legacy,
			Expiry: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Scopes: []string{"a", "b"}},
		Timezone: "America/New_York",
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func legacyID(i int) string { return fmt.Sprintf("U%05d", i) }

// manualClock is a settable clock for Store.Now.
type manualClock struct{ t time.Time }

func (c *manualClock) Now() time.Time          { return c.t }
func (c *manualClock) Advance(d time.Duration) { c.t = c.t.Add(d) }
