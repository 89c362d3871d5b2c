package health

import (
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

func TestParseDate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    Date
		wantErr bool
	}{
		{in: "2026-03-08", want: Date{2026, time.March, 8}},
		{in: "2024-02-29", want: Date{2024, time.February, 29}},
		{in: "2026-02-29", wantErr: true},
		{in: "2026-13-01", wantErr: true},
		{in: "2026-3-8", wantErr: true},
		{in: "", wantErr: true},
	} {
		got, err := ParseDate(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseDate(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("ParseDate(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestDateArithmetic(t *testing.T) {
	t.Parallel()
	d := Date{2026, time.December, 31}
	if got, want := d.AddDays(1), (Date{2027, time.January, 1}); got != want {
		t.Errorf("AddDays(1) = %v, want %v", got, want)
	}
	if got, want := (Date{2024, time.March, 1}).AddDays(-1), (Date{2024, time.February, 29}); got != want {
		t.Errorf("AddDays(-1) = %v, want %v", got, want)
	}
	a, b := Date{2026, time.March, 8}, Date{2026, time.March, 9}
	if !a.Before(b) || a.After(b) || !b.After(a) || a.Compare(a) != 0 || b.Compare(a) != 1 || a.Compare(b) != -1 {
		t.Errorf("ordering of %v and %v is wrong", a, b)
	}
	if (Date{2025, time.December, 31}).Compare(Date{2026, time.January, 1}) != -1 {
		t.Error("year boundary compare")
	}
	loc := mustLoad(t, "Asia/Kathmandu")
	if got := DateOf(time.Date(2026, 3, 7, 18, 15, 0, 0, time.UTC).In(loc)); got != (Date{2026, time.March, 8}) {
		t.Errorf("DateOf in Kathmandu = %v", got)
	}
}

// TestDateIn covers the zones the job meets: DST changes at 02:00 (23/25 h days), a :45 offset,
// and zones whose clocks jump over midnight or repeat it.
func TestDateIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		zone      string
		date      Date
		wantStart string // UTC
		wantLen   time.Duration
	}{
		{"UTC", Date{2026, 3, 8}, "2026-03-08T00:00:00Z", 24 * time.Hour},
		{"America/Los_Angeles", Date{2026, 3, 8}, "2026-03-08T08:00:00Z", 23 * time.Hour},
		{"America/Los_Angeles", Date{2026, 11, 1}, "2026-11-01T07:00:00Z", 25 * time.Hour},
		{"Europe/Berlin", Date{2026, 3, 29}, "2026-03-28T23:00:00Z", 23 * time.Hour},
		{"Europe/Berlin", Date{2026, 10, 25}, "2026-10-24T22:00:00Z", 25 * time.Hour},
		{"Asia/Kathmandu", Date{2026, 3, 8}, "2026-03-07T18:15:00Z", 24 * time.Hour},
		{"Australia/Lord_Howe", Date{2026, 4, 5}, "2026-04-04T13:00:00Z", 24*time.Hour + 30*time.Minute},
		// Cuba springs forward at 00:00 (time.Date alone answers 23:00 of the day before).
		{"America/Havana", Date{2026, 3, 8}, "2026-03-08T05:00:00Z", 23 * time.Hour},
		// ... and falls back from 01:00 to 00:00, so midnight happens twice: the first counts.
		{"America/Havana", Date{2026, 11, 1}, "2026-11-01T04:00:00Z", 25 * time.Hour},
		{"Asia/Beirut", Date{2026, 3, 29}, "2026-03-28T22:00:00Z", 23 * time.Hour},
		{"America/Santiago", Date{2026, 9, 6}, "2026-09-06T04:00:00Z", 23 * time.Hour},
		// Samoa skipped 30 December 2011 entirely.
		{"Pacific/Apia", Date{2011, 12, 30}, "2011-12-30T10:00:00Z", 0},
		{"Pacific/Apia", Date{2011, 12, 31}, "2011-12-30T10:00:00Z", 24 * time.Hour},
	} {
		loc := mustLoad(t, tc.zone)
		start := tc.date.In(loc)
		end := tc.date.AddDays(1).In(loc)
		if got := start.UTC().Format(time.RFC3339); got != tc.wantStart {
			t.Errorf("%s %v: start %s, want %s", tc.zone, tc.date, got, tc.wantStart)
		}
		if got := end.Sub(start); got != tc.wantLen {
			t.Errorf("%s %v: length %s, want %s", tc.zone, tc.date, got, tc.wantLen)
		}
		if start.Location() != loc {
			t.Errorf("%s %v: start in %v, want the zone itself", tc.zone, tc.date, start.Location())
		}
	}
	if got := (Date{2026, 3, 8}).In(nil); !got.Equal(time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("In(nil) = %v", got)
	}
}

// TestDateInProperty checks, for every day of several years in many zones, that In gives the
// first instant of the day: its local date is the day and a nanosecond earlier it was not.
func TestDateInProperty(t *testing.T) {
	t.Parallel()
	zones := []string{"UTC", "America/Los_Angeles", "America/New_York", "Europe/Berlin", "Europe/London",
		"Asia/Kathmandu", "Asia/Kolkata", "Australia/Adelaide", "Australia/Lord_Howe", "Pacific/Chatham",
		"America/Havana", "Asia/Beirut", "America/Santiago", "America/Sao_Paulo", "Africa/Casablanca",
		"Asia/Tehran", "America/St_Johns", "Pacific/Kiritimati"}
	for _, z := range zones {
		loc := mustLoad(t, z)
		for d := (Date{2016, 1, 1}); d.Before(Date{2028, 1, 1}); d = d.AddDays(1) {
			s := d.In(loc)
			if DateOf(s) != d || !DateOf(s.Add(-time.Nanosecond)).Before(d) {
				t.Fatalf("%s %v: In = %v is not the first instant of the day", z, d, s)
			}
			if n := d.AddDays(1).In(loc); n.Sub(s) < 22*time.Hour || n.Sub(s) > 26*time.Hour {
				t.Fatalf("%s %v: day of %s", z, d, n.Sub(s))
			}
		}
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	want := map[Kind]string{KindAPI: "api", KindReconsent: "reconsent", KindRateLimited: "rate_limited",
		KindTransient: "network", KindMalformed: "malformed", Kind(42): "kind(42)"}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), s)
		}
	}
}
