// Package health reads one participant's Fitbit data from the Google Health API v4 through Google's
// generated client (google.golang.org/api/health/v4) and returns it as plain Go types: a local civil
// day of summary values and intraday series, the participant's identity and settings, and the
// newest device sync time. Every error it returns is (or wraps) *Error, classified by Kind so the job
// can act on it (re-consent, defer, retry next run, count as malformed) without matching text.
package health

import (
	"fmt"
	"time"
)

// Date is a civil (calendar) date with no zone. The API's daily values and a participant's "day" are
// civil dates in the participant's time zone, so they are kept apart from instants.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// ParseDate parses "2006-01-02". Out-of-range values (2026-02-30) are rejected rather than
// normalised, so a typo does not silently select another day.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Date{}, fmt.Errorf("parse date %q: %w", s, err)
	}
	return DateOf(t), nil
}

// DateOf returns the civil date of t in t's own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{Year: y, Month: m, Day: d}
}

// String formats d as "2006-01-02" (the form the API's filters and our logs use).
func (d Date) String() string {
	return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day)
}

// AddDays returns d moved by n calendar days (normalised, so 2026-01-31 + 1 = 2026-02-01).
func (d Date) AddDays(n int) Date {
	// Computed in UTC, where every day has 24 hours, so DST cannot shift the result.
	return DateOf(time.Date(d.Year, d.Month, d.Day+n, 0, 0, 0, 0, time.UTC))
}

// In returns the first instant of d in loc, in loc: local midnight; where the clocks jump over
// midnight (America/Havana, Asia/Beirut, America/Santiago in spring), the end of the gap (01:00);
// where midnight happens twice, the earlier one. Precisely: the first instant whose local date
// is d or later, so a day a zone skipped entirely (Pacific/Apia 2011-12-30) starts where the next
// day does and has length 0. A nil loc means UTC.
func (d Date) In(loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	t := time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, loc)
	// Fast path, nearly every zone and day: t reads 00:00 on d and a moment earlier was d-1.
	if h, m, s := t.Clock(); h == 0 && m == 0 && s == 0 && DateOf(t) == d && DateOf(t.Add(-time.Nanosecond)).Before(d) {
		return t
	}
	// Otherwise search. UTC offsets lie within ±15h, so 16h either side of the wall-clock
	// midnight read as UTC brackets the answer: local date is before d at lo, d or later at hi.
	naive := time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)
	lo, hi := naive.Add(-16*time.Hour), naive.Add(16*time.Hour)
	for hi.Sub(lo) > time.Nanosecond {
		mid := lo.Add(hi.Sub(lo) / 2)
		if DateOf(mid.In(loc)).Before(d) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi.In(loc)
}

// Compare returns -1, 0 or +1 as d is before, equal to or after e.
func (d Date) Compare(e Date) int {
	switch {
	case d.Year != e.Year:
		return cmpInt(d.Year, e.Year)
	case d.Month != e.Month:
		return cmpInt(int(d.Month), int(e.Month))
	default:
		return cmpInt(d.Day, e.Day)
	}
}

// Before reports whether d is an earlier date than e.
func (d Date) Before(e Date) bool { return d.Compare(e) < 0 }

// After reports whether d is a later date than e.
func (d Date) After(e Date) bool { return d.Compare(e) > 0 }

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d == Date{} }

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Day is one participant's local civil day of data, complete or not returned at all (never partial).
type Day struct {
	Date Date
	// Start and End are the UTC instants of the day's first local instant and the next day's; the
	// span is 23, 24 or 25 hours (DST), or another length in zones that moved their offset.
	Start, End time.Time
	Summary    Summary
	HeartRate  []HeartRate // 1-minute windows with data only, ascending by Start
	Steps      []Steps     // 5-minute windows with data only (a worn zero is present with 0)
	Calories   []Calories  // 5-minute windows with data only
}

// Summary holds the day's totals. A nil field means the API did not report the value (the store
// writes NULL), which is different from a reported zero.
type Summary struct {
	Steps            *int64
	DistanceM        *float64 // metres (API: millimetersSum)
	CaloriesTotal    *float64 // kcal
	CaloriesActive   *float64 // kcal (active-energy-burned)
	Floors           *int64
	ElevationGainM   *float64 // metres (API: altitude gainMillimetersSum)
	RestingHeartRate *int64   // bpm, from the daily-resting-heart-rate point for the date
	SedentaryMinutes *int64   // whole minutes, rounded down from durationSum
	LightMinutes     *int64
	ModerateMinutes  *int64
	VigorousMinutes  *int64
	AZMFatBurn       *int64 // active-zone minutes as the API sums them (cardio/peak already count 2/min)
	AZMCardio        *int64
	AZMPeak          *int64
}

// HeartRate is one 1-minute window of heart rate in beats per minute.
type HeartRate struct {
	Start         time.Time
	Avg, Min, Max float64
}

// Steps is one 5-minute window of steps.
type Steps struct {
	Start time.Time
	Count int64
}

// Calories is one 5-minute window of total energy burned, in kcal.
type Calories struct {
	Start time.Time
	Kcal  float64
}

// Identity links the participant's legacy Fitbit id and their Google Health id.
type Identity struct {
	LegacyUserID string
	HealthUserID string
}

// Settings holds the participant settings the job uses.
type Settings struct {
	TimeZone string // IANA name, e.g. "Europe/Berlin"
}
