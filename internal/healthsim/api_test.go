package healthsim_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	health "google.golang.org/api/health/v4"

	"github.com/studylab/sync-all/internal/healthsim"
)

func TestParticipants(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	ps := f.sim.Participants()
	if len(ps) != 20 || ps[0].LegacyUserID != "CRBM3W" {
		t.Fatalf("participants: %d, first %+v", len(ps), ps[0])
	}
	legacy := regexp.MustCompile(`^[A-Z0-9]{6}$`)
	hid := regexp.MustCompile(`^[A-Za-z0-9-]{1,63}$`)
	seen := map[string]bool{}
	zones := map[string]bool{}
	for _, p := range ps {
		if !legacy.MatchString(p.LegacyUserID) || !hid.MatchString(p.HealthUserID) || p.Email == "" || seen[p.LegacyUserID] || seen[p.HealthUserID] {
			t.Errorf("bad or duplicate participant %+v", p)
		}
		seen[p.LegacyUserID], seen[p.HealthUserID] = true, true
		zones[p.TimeZone] = true
	}
	for _, z := range []string{"America/Los_Angeles", "Europe/Berlin", "Asia/Seoul", "Asia/Kathmandu", "Australia/Adelaide", "Asia/Kolkata", "America/Sao_Paulo", "Africa/Nairobi", "UTC"} {
		if !zones[z] {
			t.Errorf("no participant in %s", z)
		}
	}
	// Deterministic: same seed, same world; another seed, another world.
	again := healthsim.New(healthsim.Options{Now: f.clock.Now})
	if diff := cmp.Diff(ps, again.Participants()); diff != "" {
		t.Errorf("same seed differs (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(f.sim.Truth("CRBM3W", 2026, 12, 3), again.Truth("CRBM3W", 2026, 12, 3)); diff != "" {
		t.Errorf("same seed, different data:\n%s", diff)
	}
	other := healthsim.New(healthsim.Options{Now: f.clock.Now, Seed: 7})
	if other.Participants()[1] == ps[1] || cmp.Equal(other.Truth("CRBM3W", 2026, 12, 3), f.sim.Truth("CRBM3W", 2026, 12, 3)) {
		t.Errorf("seed 7 produced the seed-0 world")
	}

	f.sim.AddParticipant(healthsim.Participant{LegacyUserID: "ZZ9PLZ", TimeZone: "Asia/Kathmandu"})
	access, _, _ := f.sim.Grant("ZZ9PLZ", nil)
	st, err := f.service(t, access).Users.GetSettings("users/me/settings").Do()
	if err != nil || st.TimeZone != "Asia/Kathmandu" || st.UtcOffset != "20700s" {
		t.Errorf("added participant settings %+v %v", st, err)
	}
}

func TestIdentitySettingsDevicesThroughOfficialClient(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	ps := f.sim.Participants()
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	svc := f.service(t, access)
	id, err := svc.Users.GetIdentity("users/me/identity").Do()
	if err != nil || id.Name != "users/me/identity" || id.LegacyUserId != "CRBM3W" || id.HealthUserId != ps[0].HealthUserID {
		t.Fatalf("identity %+v %v", id, err)
	}
	st, err := svc.Users.GetSettings("users/me/settings").Do()
	if err != nil || st.TimeZone != "America/Los_Angeles" || st.UtcOffset != "-28800s" || st.LanguageLocale == "" {
		t.Fatalf("settings %+v %v", st, err)
	}
	// The health user id can stand in for "me".
	if _, err := svc.Users.GetIdentity("users/" + ps[0].HealthUserID + "/identity").Do(); err != nil {
		t.Errorf("identity by health user id: %v", err)
	}
	if _, err := svc.Users.GetIdentity("users/" + ps[1].HealthUserID + "/identity").Do(); apiError(t, err).HTTPCode() != 403 {
		t.Errorf("someone else's identity: %v", err)
	}

	// Participant 1 has retired trackers listed first: the current one is on page 2 of 5.
	a1, _, _ := f.sim.Grant(ps[1].LegacyUserID, nil)
	svc1 := f.service(t, a1)
	first, err := svc1.Users.PairedDevices.List("users/me").Do()
	if err != nil || len(first.PairedDevices) != 5 || first.NextPageToken == "" {
		t.Fatalf("first page: %+v %v", first, err)
	}
	var newest time.Time
	trackers := 0
	err = svc1.Users.PairedDevices.List("users/me").Pages(context.Background(), func(r *health.ListPairedDevicesResponse) error {
		for _, d := range r.PairedDevices {
			ls, err := time.Parse(time.RFC3339, d.LastSyncTime)
			if err != nil || !strings.HasPrefix(d.Name, "users/me/pairedDevices/") || d.DeviceVersion == "" {
				t.Errorf("device %+v", d)
			}
			if d.DeviceType == "TRACKER" {
				trackers++
			}
			if ls.After(newest) {
				newest = ls
			}
		}
		return nil
	})
	if err != nil || trackers != 7 {
		t.Fatalf("all pages: %d trackers, %v", trackers, err)
	}
	if want := f.sim.LastSync(ps[1].LegacyUserID); !newest.Equal(want) || want.After(defaultNow) || want.Before(defaultNow.Add(-6*time.Hour)) {
		t.Errorf("newest lastSyncTime %v, LastSync %v", newest, want)
	}
	r := f.do(t, http.MethodGet, "/v4/users/me/pairedDevices?pageSize=-1", a1, nil)
	if st, _ := r.rpc(t); r.status != 400 || st != "INVALID_ARGUMENT" {
		t.Errorf("negative pageSize: %d %s", r.status, r.body)
	}
}

// settle makes everything up to now final: the device synced now and again 20 minutes later.
func settle(f *fixture, legacyID string) {
	f.sim.SetDeviceOffline(legacyID, f.clock.Now().Add(-48*time.Hour))
	f.sim.SyncDevice(legacyID)
	f.clock.Advance(20 * time.Minute)
	f.sim.SyncDevice(legacyID)
}

func TestDayThroughOfficialClientEqualsTruth(t *testing.T) {
	cases := []struct {
		zone string
		now  time.Time
		y    int
		m    time.Month
		d    int
	}{
		{"America/Los_Angeles", defaultNow, 2026, 12, 3},                                  // a past, fully synced day
		{"America/Los_Angeles", time.Date(2026, 3, 9, 20, 0, 0, 0, time.UTC), 2026, 3, 8}, // 23 h
		{"Europe/Berlin", time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC), 2026, 10, 25},   // 25 h
		{"Asia/Kathmandu", defaultNow, 2026, 12, 4},                                       // today, partly synced, :45 zone
		{"Australia/Adelaide", time.Date(2026, 10, 5, 3, 0, 0, 0, time.UTC), 2026, 10, 4}, // 23 h, southern DST
		{"Asia/Kolkata", defaultNow, 2026, 12, 4},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s_%d-%02d-%02d", tc.zone, tc.y, tc.m, tc.d), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, healthsim.Options{})
			f.clock.Set(tc.now)
			p := f.participant(t, tc.zone)
			access, _, _ := f.sim.Grant(p.LegacyUserID, nil)
			loc, _ := time.LoadLocation(tc.zone)
			got := fetchDay(t, f.service(t, access), loc, tc.y, tc.m, tc.d)
			want := f.sim.Truth(p.LegacyUserID, tc.y, tc.m, tc.d)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("official client vs Truth (-truth +api):\n%s", diff)
			}
			if len(want.HeartRate) == 0 || want.Summary["steps"] == nil {
				t.Fatalf("no data at all: %+v", want.Summary)
			}
			if f.sim.Requests(p.LegacyUserID, "dailyRollUp") != 9 || f.sim.Requests(p.LegacyUserID, "list") != 1 || f.sim.Requests(p.LegacyUserID, "rollUp") < 3 {
				t.Errorf("requests dailyRollUp=%d list=%d rollUp=%d", f.sim.Requests(p.LegacyUserID, "dailyRollUp"),
					f.sim.Requests(p.LegacyUserID, "list"), f.sim.Requests(p.LegacyUserID, "rollUp"))
			}
		})
	}
}

// TestSummaryConsistentWithIntraday checks the world itself, from Truth alone.
func TestSummaryConsistentWithIntraday(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	for _, p := range f.sim.Participants() {
		td := f.sim.Truth(p.LegacyUserID, 2026, 12, 2)
		var steps int64
		var kcal float64
		for _, w := range td.Steps {
			steps += w.Count
		}
		for _, w := range td.Calories {
			kcal += w.Kcal
			if w.Kcal < 0.5 || w.Kcal > 100 {
				t.Errorf("%s: 5-min calories %v", p.LegacyUserID, w.Kcal)
			}
		}
		for _, w := range td.HeartRate {
			if !(w.Min <= w.Avg && w.Avg <= w.Max) || w.Min < 30 || w.Max > 220 {
				t.Errorf("%s: heart rate window %+v", p.LegacyUserID, w)
			}
		}
		s := td.Summary
		if *s["steps"] != float64(steps) {
			t.Errorf("%s: daily steps %v, windows sum %d", p.LegacyUserID, *s["steps"], steps)
		}
		if d := *s["calories_total"] - kcal; d > 1e-6 || d < -1e-6 {
			t.Errorf("%s: daily calories %v, windows sum %v", p.LegacyUserID, *s["calories_total"], kcal)
		}
		mins := float64(len(td.HeartRate))
		if *s["calories_total"] < mins*0.9 || *s["calories_active"] >= *s["calories_total"] {
			t.Errorf("%s: calories total %v active %v for %v worn minutes", p.LegacyUserID, *s["calories_total"], *s["calories_active"], mins)
		}
		if stride := *s["distance_m"] / *s["steps"]; stride < 0.5 || stride > 1.4 {
			t.Errorf("%s: stride %v m", p.LegacyUserID, stride)
		}
		if *s["elevation_gain_m"] < *s["floors"]*3 || *s["elevation_gain_m"] > *s["floors"]*3.1 {
			t.Errorf("%s: elevation %v for %v floors", p.LegacyUserID, *s["elevation_gain_m"], *s["floors"])
		}
		if total := *s["sedentary_minutes"] + *s["light_minutes"] + *s["moderate_minutes"] + *s["vigorous_minutes"]; total > mins || total < 600 {
			t.Errorf("%s: %v classified minutes of %v worn", p.LegacyUserID, total, mins)
		}
		if rhr := s["resting_heart_rate"]; rhr == nil || *rhr < 40 || *rhr > 80 {
			t.Errorf("%s: resting heart rate %v", p.LegacyUserID, rhr)
		}
		if mins > 1440-30 || mins < 1000 {
			t.Errorf("%s: %v worn minutes: want nightly charging gaps", p.LegacyUserID, mins)
		}
	}
}

func TestDSTDaysHaveShortAndLongWindowCounts(t *testing.T) {
	cases := []struct {
		zone    string
		y       int
		m       time.Month
		d       int
		windows int
	}{
		{"America/Los_Angeles", 2026, 3, 8, 1380},
		{"America/Los_Angeles", 2026, 11, 1, 1500},
		{"Europe/Berlin", 2026, 3, 29, 1380},
		{"Europe/Berlin", 2026, 10, 25, 1500},
		{"Australia/Adelaide", 2026, 4, 5, 1500},
		{"Australia/Adelaide", 2026, 10, 4, 1380},
		{"Asia/Seoul", 2026, 3, 8, 1440},
	}
	f := newFixture(t, healthsim.Options{PageSize: 5000})
	f.clock.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	for _, tc := range cases {
		p := f.participant(t, tc.zone)
		access, _, _ := f.sim.Grant(p.LegacyUserID, nil)
		td := f.sim.Truth(p.LegacyUserID, tc.y, tc.m, tc.d)
		if got := int(td.End.Sub(td.Start) / time.Minute); got != tc.windows {
			t.Errorf("%s %d-%d: Truth spans %d minutes, want %d", tc.zone, tc.m, tc.d, got, tc.windows)
		}
		body := rollUpBody(td.Start, td.End, "60s")
		body["pageSize"] = 10000 // the default page is 1440 windows: a 25-hour day needs two
		r := f.do(t, http.MethodPost, dataPath("heart-rate", ":rollUp"), access, body)
		pts, _ := r.json(t)["rollupDataPoints"].([]any)
		if r.status != 200 || len(pts) != tc.windows {
			t.Errorf("%s %d-%d: %d one-minute windows (status %d), want %d", tc.zone, tc.m, tc.d, len(pts), r.status, tc.windows)
		}
		r = f.do(t, http.MethodPost, dataPath("steps", ":rollUp"), access, rollUpBody(td.Start, td.End, "300s"))
		if pts, _ := r.json(t)["rollupDataPoints"].([]any); len(pts) != tc.windows/5 {
			t.Errorf("%s: %d five-minute windows, want %d", tc.zone, len(pts), tc.windows/5)
		}
	}
}

func TestQuarterHourZoneAlignment(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	p := f.participant(t, "Asia/Kathmandu")
	access, _, _ := f.sim.Grant(p.LegacyUserID, nil)
	td := f.sim.Truth(p.LegacyUserID, 2026, 12, 3)
	if want := time.Date(2026, 12, 2, 18, 15, 0, 0, time.UTC); !td.Start.Equal(want) {
		t.Fatalf("Kathmandu midnight %v, want %v", td.Start, want)
	}
	// Windows are aligned to the range start, not to UTC hours; also for an odd start and window.
	start := td.Start.Add(7 * time.Minute)
	r := f.do(t, http.MethodPost, dataPath("steps", ":rollUp"), access, rollUpBody(start, start.Add(time.Hour), "420s"))
	pts, _ := r.json(t)["rollupDataPoints"].([]any)
	if len(pts) != 9 {
		t.Fatalf("%d windows of 7 min in an hour, want 9 (last truncated)", len(pts))
	}
	for i, p := range pts {
		pm := p.(map[string]any)
		if want := rfc(start.Add(time.Duration(i) * 7 * time.Minute)); pm["startTime"] != want {
			t.Errorf("window %d starts %v, want %s", i, pm["startTime"], want)
		}
	}
	if last := pts[8].(map[string]any); last["endTime"] != rfc(start.Add(time.Hour)) {
		t.Errorf("last window ends %v, want the range end", last["endTime"])
	}
	for _, w := range td.Steps {
		if w.Start.Minute()%5 != 0 || (w.Start.Sub(td.Start))%(5*time.Minute) != 0 {
			t.Fatalf("steps window %v not aligned to local midnight", w.Start)
		}
	}
}

func TestZeroAndNoDataWindows(t *testing.T) {
	f := newFixture(t, healthsim.Options{PageSize: 5000})
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	td := f.sim.Truth("CRBM3W", 2026, 12, 2)
	r := f.do(t, http.MethodPost, dataPath("steps", ":rollUp"), access, rollUpBody(td.Start, td.End, "300s"))
	if !strings.Contains(string(r.body), `"steps":{}`) {
		t.Fatalf("no worn zero-step window in a whole day")
	}
	var zero, none string
	for _, p := range r.json(t)["rollupDataPoints"].([]any) {
		pm := p.(map[string]any)
		v, ok := pm["steps"]
		switch {
		case !ok && none == "":
			none = pm["startTime"].(string)
		case ok && len(v.(map[string]any)) == 0 && zero == "":
			zero = pm["startTime"].(string)
		}
		if ok && len(v.(map[string]any)) > 0 {
			if _, isString := v.(map[string]any)["countSum"].(string); !isString {
				t.Fatalf("countSum is not an int64 string: %v", v)
			}
		}
	}
	if zero == "" || none == "" {
		t.Fatalf("want both a zero window and an off-wrist window: zero=%q none=%q", zero, none)
	}
	// The official client keeps the distinction: {} decodes to a value with CountSum 0, absence to nil.
	resp, err := f.service(t, access).Users.DataTypes.DataPoints.RollUp("users/me/dataTypes/steps", &health.RollUpDataPointsRequest{
		Range: &health.Interval{StartTime: rfc(td.Start), EndTime: rfc(td.End)}, WindowSize: "300s"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, p := range resp.RollupDataPoints {
		if p.StartTime == zero && p.Steps != nil && p.Steps.CountSum == 0 {
			found++
		}
		if p.StartTime == none && p.Steps == nil {
			found++
		}
	}
	if found != 2 {
		t.Errorf("official client lost the zero/no-data distinction")
	}
	zt, _ := time.Parse(time.RFC3339, zero)
	nt, _ := time.Parse(time.RFC3339, none)
	inTruth := func(ts time.Time) bool {
		return slices.ContainsFunc(td.Steps, func(w healthsim.StepsWindow) bool { return w.Start.Equal(ts) })
	}
	if !inTruth(zt) || inTruth(nt) {
		t.Errorf("Truth: zero window present=%v, off-wrist window present=%v", inTruth(zt), inTruth(nt))
	}
}

func TestVisibilityAndRevision(t *testing.T) {
	f := newFixture(t, healthsim.Options{PageSize: 5000})
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC) // noon in Los Angeles: awake
	f.clock.Set(now)
	f.sim.SetDeviceOffline("CRBM3W", now.Add(-3*time.Hour))
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	last := f.sim.LastSync("CRBM3W")
	if last.After(now.Add(-3*time.Hour)) || last.Before(now.Add(-12*time.Hour)) {
		t.Fatalf("offline device last sync %v", last)
	}
	rangeStart := now.Add(-6 * time.Hour)
	// windows maps each served 1-minute window's start to its raw total-calories value.
	windows := func() map[string]string {
		r := f.do(t, http.MethodPost, dataPath("total-calories", ":rollUp"), access, rollUpBody(rangeStart, f.clock.Now(), "60s"))
		out := map[string]string{}
		for _, p := range r.json(t)["rollupDataPoints"].([]any) {
			pm := p.(map[string]any)
			out[pm["startTime"].(string)] = fmt.Sprint(pm["totalCalories"])
		}
		return out
	}
	before := windows()
	for k := range before {
		if ts, _ := time.Parse(time.RFC3339, k); !ts.Before(last.Truncate(time.Minute)) {
			t.Errorf("window %s served although the device last synced at %v", k, last)
		}
	}
	f.clock.Advance(2 * time.Minute)
	f.sim.SyncDevice("CRBM3W")
	synced := f.clock.Now()
	if got := f.sim.LastSync("CRBM3W"); !got.Equal(synced) {
		t.Fatalf("after SyncDevice LastSync %v, want %v", got, synced)
	}
	mid := windows()
	if len(mid) != int(synced.Sub(rangeStart)/time.Minute) || len(mid) <= len(before) {
		t.Fatalf("sync revealed %d windows (before %d), want every minute up to the sync", len(mid), len(before))
	}
	truthAgrees(t, f, access, "CRBM3W")
	f.clock.Advance(30 * time.Minute)
	f.sim.SyncDevice("CRBM3W")
	after := windows()
	revised := 0
	for k, v := range mid {
		if after[k] != v {
			revised++
			if ts, _ := time.Parse(time.RFC3339, k); ts.Add(time.Minute).Before(synced.Add(-15 * time.Minute)) {
				t.Errorf("window %s revised although it was final", k)
			}
		}
	}
	if revised < 10 {
		t.Errorf("%d provisional windows revised by the later sync, want the last ~15", revised)
	}
	truthAgrees(t, f, access, "CRBM3W")
}

// truthAgrees compares today's Truth with the official client's reading, now.
func truthAgrees(t *testing.T, f *fixture, access, legacyID string) {
	t.Helper()
	var p healthsim.Participant
	for _, x := range f.sim.Participants() {
		if x.LegacyUserID == legacyID {
			p = x
		}
	}
	loc, _ := time.LoadLocation(p.TimeZone)
	today := f.clock.Now().In(loc)
	got := fetchDay(t, f.service(t, access), loc, today.Year(), today.Month(), today.Day())
	if diff := cmp.Diff(f.sim.Truth(legacyID, today.Year(), today.Month(), today.Day()), got); diff != "" {
		t.Errorf("Truth vs API today (-truth +api):\n%s", diff)
	}
}

func TestNaturalSyncSchedule(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	start := defaultNow
	var prev time.Time
	var gaps []time.Duration
	for m := 0; m < 4*24*60; m++ {
		f.clock.Set(start.Add(time.Duration(m) * time.Minute))
		ls := f.sim.LastSync("CRBM3W")
		if ls.After(f.clock.Now()) || ls.Before(prev) {
			t.Fatalf("lastSync %v at %v after %v", ls, f.clock.Now(), prev)
		}
		if !prev.IsZero() && !ls.Equal(prev) {
			gaps = append(gaps, ls.Sub(prev))
		}
		prev = ls
	}
	short, long := 0, 0
	for _, g := range gaps {
		if g >= 10*time.Minute && g <= 40*time.Minute {
			short++
		}
		if g >= time.Hour {
			long++
		}
	}
	if len(gaps) < 100 || short*10 < len(gaps)*6 || long == 0 {
		t.Errorf("%d syncs in 4 days, %d of them 10-40 min apart, %d gaps over an hour", len(gaps), short, long)
	}
}

func TestRestingHeartRateDerivedAfterTheNight(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	p := f.participant(t, "UTC")
	access, _, _ := f.sim.Grant(p.LegacyUserID, nil)
	f.clock.Set(time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)) // asleep
	settle(f, p.LegacyUserID)
	td := f.sim.Truth(p.LegacyUserID, 2026, 12, 4)
	if td.Summary["resting_heart_rate"] != nil || td.Summary["steps"] == nil {
		t.Fatalf("03:20 local: resting HR %v, steps %v", td.Summary["resting_heart_rate"], td.Summary["steps"])
	}
	r := f.do(t, http.MethodGet, dataPath("daily-resting-heart-rate", "")+`?filter=`+urlq(`daily_resting_heart_rate.date >= "2026-12-01"`), access, nil)
	pts, _ := r.json(t)["dataPoints"].([]any)
	if r.status != 200 || len(pts) != 3 {
		t.Fatalf("list: %d, %d points: %s", r.status, len(pts), r.body)
	}
	dates := []string{}
	for _, x := range pts {
		d := x.(map[string]any)["dailyRestingHeartRate"].(map[string]any)
		dm := d["date"].(map[string]any)
		dates = append(dates, fmt.Sprintf("%v-%v", dm["month"], dm["day"]))
		if _, ok := d["beatsPerMinute"].(string); !ok {
			t.Errorf("beatsPerMinute not an int64 string: %v", d)
		}
	}
	if want := []string{"12-3", "12-2", "12-1"}; !slices.Equal(dates, want) {
		t.Errorf("list order %v, want newest first %v", dates, want)
	}
	f.clock.Set(time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC))
	settle(f, p.LegacyUserID)
	if rhr := f.sim.Truth(p.LegacyUserID, 2026, 12, 4).Summary["resting_heart_rate"]; rhr == nil {
		t.Errorf("11:20 local: resting HR still not derived")
	}
}

func urlq(s string) string {
	return strings.NewReplacer(" ", "%20", `"`, "%22", ">", "%3E", "<", "%3C", "=", "%3D").Replace(s)
}

func TestDailyRollUpWithoutDataIsEmptyObject(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	for _, typ := range []string{"steps", "floors", "total-calories", "active-minutes", "daily-resting-heart-rate", "weight"} {
		r := f.do(t, http.MethodPost, dataPath(typ, ":dailyRollUp"), access, dailyBody(defaultNow.AddDate(0, 0, 3)))
		if r.status != 200 || strings.TrimSpace(string(r.body)) != "{}" {
			t.Errorf("%s future day: %d %s", typ, r.status, r.body)
		}
	}
	// A multi-day window sums the days; windowSizeDays groups them.
	body := map[string]any{"range": map[string]any{"start": civilDate(defaultNow.AddDate(0, 0, -7)), "end": civilDate(defaultNow.AddDate(0, 0, -1))}, "windowSizeDays": 3}
	r := f.do(t, http.MethodPost, dataPath("steps", ":dailyRollUp"), access, body)
	if pts, _ := r.json(t)["rollupDataPoints"].([]any); len(pts) != 2 {
		t.Errorf("6 days in windows of 3: %d points: %s", len(pts), r.body)
	}
}

func TestRequestValidation(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	day := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	cases := []struct {
		name, path string
		body       any
	}{
		{"window under 1s", dataPath("steps", ":rollUp"), rollUpBody(day, day.Add(time.Hour), "0.5s")},
		{"no window", dataPath("steps", ":rollUp"), map[string]any{"range": map[string]any{"startTime": rfc(day), "endTime": rfc(day.Add(time.Hour))}}},
		{"heart rate over 14 days", dataPath("heart-rate", ":rollUp"), rollUpBody(day, day.AddDate(0, 0, 15), "3600s")},
		{"total-calories over 14 days", dataPath("total-calories", ":rollUp"), rollUpBody(day, day.AddDate(0, 0, 15), "3600s")},
		{"steps over 90 days", dataPath("steps", ":rollUp"), rollUpBody(day, day.AddDate(0, 0, 91), "86400s")},
		{"end before start", dataPath("steps", ":rollUp"), rollUpBody(day, day.Add(-time.Hour), "60s")},
		{"no range", dataPath("steps", ":rollUp"), map[string]any{"windowSize": "60s"}},
		{"unknown field", dataPath("steps", ":rollUp"), map[string]any{"range": map[string]any{"startTime": rfc(day), "endTime": rfc(day.Add(time.Hour))}, "windowSize": "60s", "bucket": 1}},
		{"bad page token", dataPath("steps", ":rollUp"), map[string]any{"range": map[string]any{"startTime": rfc(day), "endTime": rfc(day.Add(time.Hour))}, "windowSize": "60s", "pageToken": "nope"}},
		{"resting HR roll-up", dataPath("daily-resting-heart-rate", ":rollUp"), rollUpBody(day, day.Add(time.Hour), "60s")},
		{"unknown data type", dataPath("stepz", ":rollUp"), rollUpBody(day, day.Add(time.Hour), "60s")},
		{"civil end not after start", dataPath("steps", ":dailyRollUp"), map[string]any{"range": map[string]any{"start": civilDate(day), "end": civilDate(day)}}},
		{"month as string", dataPath("steps", ":dailyRollUp"), `{"range":{"start":{"date":{"year":2026,"month":"03","day":1}},"end":{"date":{"year":2026,"month":3,"day":2}}}}`},
		{"non-midnight civil start", dataPath("steps", ":dailyRollUp"), `{"range":{"start":{"date":{"year":2026,"month":3,"day":1},"time":{"hours":5}},"end":{"date":{"year":2026,"month":3,"day":2}}}}`},
		{"invalid date", dataPath("steps", ":dailyRollUp"), `{"range":{"start":{"date":{"year":2026,"month":2,"day":30}},"end":{"date":{"year":2026,"month":3,"day":2}}}}`},
		{"active-minutes daily over 14 days", dataPath("active-minutes", ":dailyRollUp"), map[string]any{"range": map[string]any{"start": civilDate(day), "end": civilDate(day.AddDate(0, 0, 15))}}},
		{"bad data source family", dataPath("steps", ":rollUp"), map[string]any{"range": map[string]any{"startTime": rfc(day), "endTime": rfc(day.Add(time.Hour))}, "windowSize": "60s", "dataSourceFamily": "users/me/dataSourceFamilies/phones"}},
	}
	for _, tc := range cases {
		r := f.do(t, http.MethodPost, tc.path, access, tc.body)
		if st, _ := r.rpc(t); r.status != 400 || st != "INVALID_ARGUMENT" {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	// The limits themselves are accepted.
	for _, b := range []struct {
		typ  string
		days int
	}{{"heart-rate", 14}, {"steps", 90}} {
		if r := f.do(t, http.MethodPost, dataPath(b.typ, ":rollUp"), access, rollUpBody(day, day.AddDate(0, 0, b.days), "86400s")); r.status != 200 {
			t.Errorf("%s over %d days: %d %s", b.typ, b.days, r.status, r.body)
		}
	}
}

func TestFilterValidation(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	cases := []struct{ filter, reason string }{
		{`daily-resting-heart-rate.date >= "2026-12-01"`, "INVALID_DATA_POINT_FILTER"},
		{`heart_rate.date >= "2026-12-01"`, "INVALID_DATA_POINT_FILTER"},
		{`daily_resting_heart_rate.interval.start_time >= "2026-12-01T00:00:00Z"`, "INVALID_DATA_POINT_FILTER_DATA_TYPE_MEMBER"},
		{`daily_resting_heart_rate.date > "2026-12-01"`, "INVALID_DATA_POINT_FILTER_SYNTAX"},
		{`daily_resting_heart_rate.date >= "2026-12-01" OR daily_resting_heart_rate.date < "2026-12-03"`, "INVALID_DATA_POINT_FILTER_SYNTAX"},
		{`daily_resting_heart_rate.date >= "12/01/2026"`, "INVALID_FILTER_FORMAT"},
		{`daily_resting_heart_rate.date >=`, "INVALID_DATA_POINT_FILTER_MISSING_TOKEN"},
	}
	for _, tc := range cases {
		r := f.do(t, http.MethodGet, dataPath("daily-resting-heart-rate", "")+"?filter="+urlq(tc.filter), access, nil)
		if st, reason := r.rpc(t); r.status != 400 || st != "INVALID_ARGUMENT" || reason != tc.reason {
			t.Errorf("%s: %d %s %s, want %s", tc.filter, r.status, st, reason, tc.reason)
		}
	}
	r := f.do(t, http.MethodGet, dataPath("daily-resting-heart-rate", "")+"?filter="+urlq(`daily_resting_heart_rate.date >= "2026-12-02" AND daily_resting_heart_rate.date < "2026-12-03"`), access, nil)
	if pts, _ := r.json(t)["dataPoints"].([]any); r.status != 200 || len(pts) != 1 {
		t.Errorf("one-day filter: %d %s", r.status, r.body)
	}
	if r := f.do(t, http.MethodGet, dataPath("total-calories", ""), access, nil); r.status != 400 {
		t.Errorf("listing total-calories: %d", r.status)
	}
}

func TestPagination(t *testing.T) {
	for _, empty := range []bool{false, true} {
		t.Run(fmt.Sprintf("empty_pages=%v", empty), func(t *testing.T) {
			f := newFixture(t, healthsim.Options{EmptyPages: empty})
			access, _, _ := f.sim.Grant("CRBM3W", nil)
			td := f.sim.Truth("CRBM3W", 2026, 12, 2)
			body := rollUpBody(td.Start, td.End, "60s")
			var sizes []int
			total := 0
			for page := 0; page < 20; page++ {
				r := f.do(t, http.MethodPost, dataPath("heart-rate", ":rollUp"), access, body)
				m := r.json(t)
				pts, _ := m["rollupDataPoints"].([]any)
				sizes = append(sizes, len(pts))
				total += len(pts)
				next, _ := m["nextPageToken"].(string)
				if next == "" {
					break
				}
				body["pageToken"] = next
			}
			want := []int{500, 500, 440}
			if empty {
				want = []int{0, 500, 0, 500, 0, 440}
			}
			if !slices.Equal(sizes, want) || total != 1440 {
				t.Fatalf("page sizes %v, want %v", sizes, want)
			}
			// The official client's Pages follows empty pages too.
			n := 0
			err := f.service(t, access).Users.DataTypes.DataPoints.RollUp("users/me/dataTypes/heart-rate", &health.RollUpDataPointsRequest{
				Range: &health.Interval{StartTime: rfc(td.Start), EndTime: rfc(td.End)}, WindowSize: "60s"}).
				Pages(context.Background(), func(r *health.RollUpDataPointsResponse) error { n += len(r.RollupDataPoints); return nil })
			if err != nil || n != 1440 {
				t.Fatalf("Pages: %d points, %v", n, err)
			}
			// A token belongs to its request.
			first := f.do(t, http.MethodPost, dataPath("heart-rate", ":rollUp"), access, rollUpBody(td.Start, td.End, "60s")).json(t)
			other := rollUpBody(td.Start, td.End, "120s")
			other["pageToken"] = first["nextPageToken"]
			if r := f.do(t, http.MethodPost, dataPath("heart-rate", ":rollUp"), access, other); r.status != 400 {
				t.Errorf("token reused with another windowSize: %d", r.status)
			}
			// A requested page size below the cap is honoured.
			small := rollUpBody(td.Start, td.End, "300s")
			small["pageSize"] = 100
			if pts, _ := f.do(t, http.MethodPost, dataPath("steps", ":rollUp"), access, small).json(t)["rollupDataPoints"].([]any); !empty && len(pts) != 100 {
				t.Errorf("pageSize 100: %d points", len(pts))
			}
		})
	}
}

func TestAuthenticationAndRouting(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		rpcStatus, reason         string
	}{
		{"no token", "GET", "/v4/users/me/identity", "", nil, 401, "UNAUTHENTICATED", "CREDENTIALS_MISSING"},
		{"unknown token", "GET", "/v4/users/me/identity", "ya29.nope", nil, 401, "UNAUTHENTICATED", "ACCESS_TOKEN_TYPE_UNSUPPORTED"},
		{"unknown path", "GET", "/v4/users/me/nothing", access, nil, 404, "NOT_FOUND", ""},
		{"wrong verb", "GET", dataPath("steps", ":rollUp"), access, nil, 404, "NOT_FOUND", ""},
		{"outside /v4", "GET", "/v3/users/me/identity", access, nil, 404, "NOT_FOUND", ""},
	}
	for _, tc := range cases {
		r := f.do(t, tc.method, tc.path, tc.token, tc.body)
		if st, reason := r.rpc(t); r.status != tc.status || st != tc.rpcStatus || reason != tc.reason {
			t.Errorf("%s: %d %s %s", tc.name, r.status, st, reason)
		}
	}
	for _, legacy := range []struct{ method, path string }{
		{"GET", "/1/user/-/activities/date/2026-12-03.json"},
		{"GET", "/1.1/user/-/profile.json"},
		{"POST", "/oauth2/token"},
	} {
		if r := f.do(t, legacy.method, legacy.path, access, nil); r.status != http.StatusGone {
			t.Errorf("legacy %s: %d", legacy.path, r.status)
		}
	}
	if f.sim.Requests("", "legacy") != 3 || f.sim.Requests("", "identity") != 2 {
		t.Errorf("counters legacy=%d identity=%d", f.sim.Requests("", "legacy"), f.sim.Requests("", "identity"))
	}
}
