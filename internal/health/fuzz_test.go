package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The fuzz targets serve the fuzzed bytes as the 200 answer of one endpoint, through a real HTTP
// server and the generated client, and check that the result is either an *Error or a Day (or
// value) that satisfies every invariant the store relies on: never a panic, never a partial or
// impossible Day.

var (
	fuzzDate = Date{2026, time.March, 8} // a 23-hour day in Los Angeles
	fuzzZone = "America/Los_Angeles"
)

// fuzzSession answers endpoint (":rollUp", ":dailyRollUp", "/dataPoints", "/pairedDevices",
// "/identity", "/settings") with body on the first page and "{}" on any later page (so a fuzzed
// nextPageToken is followed once, not a thousand times); other endpoints answer "{}" (no data).
// The handler is served through an in-memory RoundTripper rather than a TCP server: the
// generated client, our transport and our decoding see a real *http.Response, and a million
// executions take minutes instead of hours.
func fuzzSession(t *testing.T, endpoint string, body []byte) *Session {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		if !strings.HasSuffix(r.URL.Path, endpoint) || hasPageToken(r) {
			io.WriteString(w, "{}")
			return
		}
		w.Write(body)
	})
	hc := &http.Client{Transport: handlerTransport{h}, Timeout: 10 * time.Second}
	c, err := New(Config{BaseURL: "http://health.fuzz.invalid/", HTTPClient: hc, MaxAttempts: 2, BaseBackoff: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	return c.Session(testToken)
}

// handlerTransport serves requests with an http.Handler, in memory.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

func hasPageToken(r *http.Request) bool {
	if r.URL.Query().Get("pageToken") != "" {
		return true
	}
	if r.Body == nil {
		return false
	}
	var req struct {
		PageToken string `json:"pageToken"`
	}
	b, _ := io.ReadAll(r.Body)
	return json.Unmarshal(b, &req) == nil && req.PageToken != ""
}

// checkErr asserts the error contract: *Error, a known Kind, no token in the text.
func checkErr(t *testing.T, err error) {
	t.Helper()
	var he *Error
	if !errors.As(err, &he) {
		t.Fatalf("error %T is not *Error: %v", err, err)
	}
	if he.Kind < KindAPI || he.Kind > KindMalformed {
		t.Fatalf("unknown kind %d", he.Kind)
	}
	if strings.Contains(err.Error(), testToken) {
		t.Fatalf("token in error: %v", err)
	}
}

// checkDay asserts the invariants of a Day the store may write.
func checkDay(t *testing.T, d *Day, loc *time.Location) {
	t.Helper()
	if d == nil {
		t.Fatal("nil Day without error")
	}
	if !d.Start.Equal(d.Date.In(loc)) || !d.End.Equal(d.Date.AddDays(1).In(loc)) {
		t.Fatalf("day bounds %v..%v", d.Start, d.End)
	}
	series := func(name string, n int, start func(int) time.Time, w time.Duration) {
		for i := range n {
			s := start(i)
			if s.Before(d.Start) || !s.Before(d.End) || s.Sub(d.Start)%w != 0 {
				t.Fatalf("%s window %v outside/unaligned", name, s)
			}
			if i > 0 && !start(i-1).Before(s) {
				t.Fatalf("%s windows not strictly ascending at %v", name, s)
			}
		}
	}
	series("heart rate", len(d.HeartRate), func(i int) time.Time { return d.HeartRate[i].Start }, time.Minute)
	series("steps", len(d.Steps), func(i int) time.Time { return d.Steps[i].Start }, 5*time.Minute)
	series("calories", len(d.Calories), func(i int) time.Time { return d.Calories[i].Start }, 5*time.Minute)
	for _, h := range d.HeartRate {
		if checkHeartRate(h) != nil {
			t.Fatalf("impossible heart rate %+v", h)
		}
	}
	for _, s := range d.Steps {
		if s.Count < 0 {
			t.Fatalf("negative steps %+v", s)
		}
	}
	for _, c := range d.Calories {
		if !finiteNonNeg(c.Kcal) {
			t.Fatalf("impossible kcal %+v", c)
		}
	}
	sm := d.Summary
	for _, p := range []*int64{sm.Steps, sm.Floors, sm.RestingHeartRate, sm.SedentaryMinutes, sm.LightMinutes,
		sm.ModerateMinutes, sm.VigorousMinutes, sm.AZMFatBurn, sm.AZMCardio, sm.AZMPeak} {
		if p != nil && *p < 0 {
			t.Fatalf("negative summary value in %+v", sm)
		}
	}
	for _, p := range []*float64{sm.DistanceM, sm.CaloriesTotal, sm.CaloriesActive, sm.ElevationGainM} {
		if p != nil && !finiteNonNeg(*p) {
			t.Fatalf("impossible summary value %v", *p)
		}
	}
}

// fuzzCtx bounds one fuzz execution, so a hang in the client fails with its input instead of
// stalling the fuzzer.
func fuzzCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(func() {
		if ctx.Err() != nil {
			t.Errorf("call did not finish within 20s")
		}
		cancel()
	})
	return ctx
}

func fuzzDay(t *testing.T, endpoint string, body []byte) {
	loc := mustLoad(t, fuzzZone)
	d, err := fuzzSession(t, endpoint, body).Day(fuzzCtx(t), fuzzDate, loc)
	if err != nil {
		if d != nil {
			t.Fatalf("Day returned both a Day and %v", err)
		}
		checkErr(t, err)
		return
	}
	checkDay(t, d, loc)
}

func FuzzDecodeRollUp(f *testing.F) {
	for _, s := range []string{
		`{"rollupDataPoints":[{"startTime":"2026-03-08T08:00:00Z","endTime":"2026-03-08T08:05:00Z","steps":{"countSum":"0"}},{"startTime":"2026-03-08T08:05:00Z","endTime":"2026-03-08T08:10:00Z","steps":{"countSum":"42"}}],"nextPageToken":"p2"}`,
		`{"rollupDataPoints":[{"startTime":"2026-03-08T08:00:00Z","endTime":"2026-03-08T08:01:00Z","heartRate":{"beatsPerMinuteAvg":71.4,"beatsPerMinuteMin":66,"beatsPerMinuteMax":79}},{"startTime":"2026-03-08T08:01:00Z","endTime":"2026-03-08T08:02:00Z"}]}`,
		`{"rollupDataPoints":[{"startTime":"2026-03-08T08:00:00Z","endTime":"2026-03-08T08:05:00Z","totalCalories":{"kcalSum":6.41}},{"startTime":"2026-03-08T08:05:00Z","totalCalories":{}}]}`,
		`{"rollupDataPoints":[{"startTime":"2026-03-08T08:00:00Z","steps":{"countSum":12}}]}`,
		`{"rollupDataPoints":[{"startTime":"2026-03-09T07:00:00Z","steps":{"countSum":"1"}}]}`,
		`{"rollupDataPoints":[{"startTime":"2026-03-08T08:00:00Z","heartRate":{"beatsPerMinuteAvg":"NaN"}}]}`,
		`{"rollupDataPoints":[],"nextPageToken":"again"}`,
		`{"rollupDataPoints":[{"startTime":"2026-03-08T08:00:00Z","steps":{"countSum":"5"`,
		``, `null`, `[]`, `{"rollupDataPoints":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzDay(t, ":rollUp", body) })
}

func FuzzDecodeDailyRollUp(f *testing.F) {
	for _, s := range []string{
		`{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":3,"day":8}},"civilEndTime":{"date":{"year":2026,"month":3,"day":9}},"steps":{"countSum":"10500"}}]}`,
		`{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":3,"day":8},"time":{}},"distance":{"millimetersSum":"7512345"},"totalCalories":{"kcalSum":2310.5},"activeEnergyBurned":{"kcalSum":512},"floors":{"countSum":"12"},"altitude":{"gainMillimetersSum":"36576"}}]}`,
		`{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":3,"day":8}},"activeMinutes":{"activeMinutesRollupByActivityLevel":[{"activityLevel":"LIGHT","activeMinutesSum":"180"},{"activityLevel":"MODERATE","activeMinutesSum":"31"},{"activityLevel":"VIGOROUS"}]},"activeZoneMinutes":{"sumInFatBurnHeartZone":"20","sumInCardioHeartZone":"14","sumInPeakHeartZone":"4"},"sedentaryPeriod":{"durationSum":"30659.5s"}}]}`,
		`{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":3,"day":8}},"steps":{}}]}`,
		`{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":3,"day":7}},"steps":{"countSum":"1"}}]}`,
		`{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":2,"day":30}},"steps":{"countSum":"1"}}]}`,
		`{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":3,"day":8}},"steps":{"countSum":10500}}]}`,
		`{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":3,"day":8}},"sedentaryPeriod":{"durationSum":"-1s"}}]}`,
		``, `{}`, `{"rollupDataPoints":[{}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzDay(t, ":dailyRollUp", body) })
}

func FuzzDecodeList(f *testing.F) {
	for _, s := range []string{
		`{"dataPoints":[{"dataSource":{"platform":"FITBIT"},"dailyRestingHeartRate":{"date":{"year":2026,"month":3,"day":8},"beatsPerMinute":"61","dailyRestingHeartRateMetadata":{"calculationMethod":"WITH_SLEEP"}}}],"nextPageToken":""}`,
		`{"dataPoints":[{"dailyRestingHeartRate":{"date":{"year":2026,"month":3,"day":8},"beatsPerMinute":61}}]}`,
		`{"dataPoints":[{"dailyRestingHeartRate":{"date":{"year":2026,"month":3,"day":9},"beatsPerMinute":"61"}}]}`,
		`{"dataPoints":[{"dailyRestingHeartRate":{"beatsPerMinute":"61"}}]}`,
		`{"dataPoints":[],"nextPageToken":"CiAKGjBp"}`,
		`{"dataPoints":[{"dailyRestingHeartRate":{"date":{"year":2026,"month":3,"day":8},"beatsPerMinute":"-3"}}]}`,
		``, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzDay(t, "/dataPoints", body) })
}

func FuzzDecodePairedDevices(f *testing.F) {
	for _, s := range []string{
		`{"pairedDevices":[{"name":"users/me/pairedDevices/123","deviceType":"TRACKER","batteryStatus":"High","batteryLevel":85,"lastSyncTime":"2026-12-03T14:02:11Z","deviceVersion":"Charge 6","features":["STEPS","HEART_RATE"]}],"nextPageToken":""}`,
		`{"pairedDevices":[{"lastSyncTime":"2026-12-03T14:02:11Z"},{"lastSyncTime":"2026-12-03T15:02:11.5+01:00"},{"deviceType":"SCALE"}],"nextPageToken":"n"}`,
		`{"pairedDevices":[{"lastSyncTime":"yesterday"}]}`,
		`{}`, ``, `{"pairedDevices":[{"batteryLevel":"85"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ts, err := fuzzSession(t, "/pairedDevices", body).LastSync(fuzzCtx(t))
		if err != nil {
			if !ts.IsZero() {
				t.Fatalf("LastSync returned %v with %v", ts, err)
			}
			checkErr(t, err)
			return
		}
		if !ts.IsZero() && ts.Location() != time.UTC {
			t.Fatalf("LastSync not in UTC: %v", ts)
		}
	})
}

func FuzzDecodeIdentity(f *testing.F) {
	for _, s := range []string{
		`{"name":"users/me/identity","legacyUserId":"CRBM3W","healthUserId":"a1b2-c3"}`,
		`{"healthUserId":"x"}`, `{"legacyUserId":"CRBM3W"}`, `{}`, ``, `{"healthUserId":5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := fuzzSession(t, "/identity", body).Identity(fuzzCtx(t))
		if err != nil {
			if id != (Identity{}) {
				t.Fatalf("Identity returned %+v with %v", id, err)
			}
			checkErr(t, err)
			return
		}
		if id.HealthUserID == "" {
			t.Fatal("identity without healthUserId accepted")
		}
	})
}

func FuzzDecodeSettings(f *testing.F) {
	for _, s := range []string{
		`{"name":"users/me/settings","timeZone":"America/Los_Angeles","utcOffset":"-28800s","languageLocale":"en_US","distanceUnit":"DISTANCE_UNIT_MILES"}`,
		`{"timeZone":"Asia/Kathmandu"}`, `{"timeZone":"Local"}`, `{"timeZone":"Mars/Olympus"}`, `{"timeZone":"../../etc/passwd"}`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := fuzzSession(t, "/settings", body).Settings(fuzzCtx(t))
		if err != nil {
			if st != (Settings{}) {
				t.Fatalf("Settings returned %+v with %v", st, err)
			}
			checkErr(t, err)
			return
		}
		if _, err := time.LoadLocation(st.TimeZone); err != nil || st.TimeZone == "" || st.TimeZone == "Local" {
			t.Fatalf("unusable zone %q accepted", st.TimeZone)
		}
	})
}
