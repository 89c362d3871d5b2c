package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/bench"
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
	return bench.FullDay(date, loc, seed)
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
