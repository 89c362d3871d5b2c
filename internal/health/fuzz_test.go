package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fuzz targets serve the fuzzed bytes as the 200 answer of one endpoint and call the one
// function of this package that decodes that endpoint (through the generated client, our
// transport's normalisation and our validation), once per execution. They check that the result
// is either an *Error of a kind a 200 answer can have or a value that satisfies every invariant
// the store relies on: never a panic, never a partial or impossible value.
//
// An execution is one request (two when the fuzzed body carries a nextPageToken): the Session is
// built once per target and the body travels in the request's context, so nothing is set up, no
// goroutine started and no timer armed per execution.

var (
	fuzzDate = Date{2026, time.March, 8} // a 23-hour day in Los Angeles
	fuzzZone = "America/Los_Angeles"
)

// fuzzBodyKey carries an execution's fuzzed body from fuzzCtx to fuzzTransport.
type fuzzBodyKey struct{}

// fuzzCtx is the context of one execution: it carries body to the transport.
func fuzzCtx(body []byte) context.Context {
	return context.WithValue(context.Background(), fuzzBodyKey{}, body)
}

// fuzzSession returns a Session whose calls are answered in memory by fuzzTransport for endpoint
// (":rollUp", ":dailyRollUp", "/dataPoints", "/pairedDevices", "/identity", "/settings"). It is
// safe for concurrent use and shared by all executions of a target. The generated client, our
// transport and our decoding see a real *http.Response.
func fuzzSession(tb testing.TB, endpoint string) *Session {
	tb.Helper()
	// No http.Client Timeout: for a RoundTripper that is not *http.Transport, net/http enforces
	// it with a goroutine and a timer per request. fuzzWatchdog bounds an execution instead.
	hc := &http.Client{Transport: fuzzTransport{endpoint: endpoint}}
	// One attempt: production retries a malformed or truncated answer, but here every retry would
	// get the same bytes and decode them the same way, at the cost of a backoff timer and another
	// request per attempt.
	c, err := New(Config{BaseURL: "http://health.fuzz.invalid/", HTTPClient: hc, MaxAttempts: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return c.Session(testToken)
}

// fuzzLoc loads fuzzZone once per target.
func fuzzLoc(tb testing.TB) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(fuzzZone)
	if err != nil {
		tb.Fatal(err)
	}
	return loc
}

// emptyPage is the answer to every request but the first page of the fuzzed endpoint: no data,
// no further page.
var emptyPage = []byte("{}")

// fuzzTransport answers with 200 and the body from the request's context (fuzzCtx) for the
// first page of a call to endpoint, and with "{}" for any later page (so a fuzzed nextPageToken
// is followed once, not a thousand times) and for other endpoints.
type fuzzTransport struct{ endpoint string }

func (t fuzzTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	paged, err := hasPageToken(r)
	if r.Body != nil {
		r.Body.Close() // a RoundTripper must close the request body
	}
	if err != nil {
		return nil, err
	}
	body := emptyPage
	if b, ok := r.Context().Value(fuzzBodyKey{}).([]byte); ok && !paged && strings.HasSuffix(r.URL.Path, t.endpoint) {
		body = b
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json; charset=UTF-8"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}, nil
}

// hasPageToken reports whether r asks for a later page: a pageToken query parameter (GET
// lists) or a "pageToken" member in the JSON request (POST roll-ups; the generated request
// types omit an empty token).
func hasPageToken(r *http.Request) (bool, error) {
	if r.URL.Query().Get("pageToken") != "" {
		return true, nil
	}
	if r.Body == nil {
		return false, nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return false, err
	}
	return bytes.Contains(b, []byte(`"pageToken":`)), nil
}

// fuzzHang bounds one execution. The fuzzer has no per-input timeout, so instead of a context
// deadline per execution (a timer each) one watchdog goroutine per process checks the running
// execution every second and panics when it is older: the worker dies and the fuzzer records the
// input that was running as a crasher, instead of stalling until -fuzztime.
const fuzzHang = 20 * time.Second

type watchdog struct {
	once  sync.Once
	mu    sync.Mutex
	start time.Time // of the running execution; zero when none runs
	input []byte
}

var fuzzWatchdog watchdog

// begin marks the start of an execution on input; end (deferred) its end.
func (w *watchdog) begin(input []byte) {
	w.once.Do(func() { go w.run() })
	w.mu.Lock()
	w.start, w.input = time.Now(), input
	w.mu.Unlock()
}

func (w *watchdog) end() {
	w.mu.Lock()
	w.start, w.input = time.Time{}, nil
	w.mu.Unlock()
}

func (w *watchdog) run() {
	for range time.Tick(time.Second) {
		w.mu.Lock()
		start, input := w.start, w.input
		w.mu.Unlock()
		if !start.IsZero() && time.Since(start) > fuzzHang {
			debug.SetTraceback("all") // show where the execution is stuck
			panic(fmt.Sprintf("fuzz execution still running after %v on input %q", fuzzHang, input))
		}
	}
}

// checkErr asserts the error contract for a 200 answer: *Error, malformed (or truncated, which
// is transient: a cut connection looks the same), and no token in the text.
func checkErr(t *testing.T, err error) {
	t.Helper()
	var he *Error
	if !errors.As(err, &he) {
		t.Fatalf("error %T is not *Error: %v", err, err)
	}
	if he.Kind != KindMalformed && (he.Kind != KindTransient || he.Reason != "TRUNCATED") {
		t.Fatalf("a 200 answer failed as %v (reason %q), want malformed or truncated: %v", he.Kind, he.Reason, err)
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
	checkSummary(t, d.Summary)
}

// checkSummary asserts that every reported summary value is possible.
func checkSummary(t *testing.T, sm Summary) {
	t.Helper()
	for _, p := range []*int64{sm.Steps, sm.Floors, sm.SedentaryMinutes, sm.LightMinutes,
		sm.ModerateMinutes, sm.VigorousMinutes, sm.AZMFatBurn, sm.AZMCardio, sm.AZMPeak} {
		if p != nil && *p < 0 {
			t.Fatalf("negative summary value in %+v", sm)
		}
	}
	if p := sm.RestingHeartRate; p != nil && (*p < 0 || *p > maxBPM) {
		t.Fatalf("impossible resting heart rate %d", *p)
	}
	for _, p := range []*float64{sm.DistanceM, sm.CaloriesTotal, sm.CaloriesActive, sm.ElevationGainM} {
		if p != nil && !finiteNonNeg(*p) {
			t.Fatalf("impossible summary value %v", *p)
		}
	}
}

// The intraday series a FuzzDecodeRollUp input selects (series % 3).
const (
	seriesHeartRate = iota
	seriesSteps
	seriesCalories
)

// FuzzDecodeRollUp feeds one rollUp answer to the heart rate, steps or calories series of
// fuzzDate in fuzzZone (series % 3 chooses), as Day calls them.
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
		for _, series := range []uint8{seriesHeartRate, seriesSteps, seriesCalories} {
			f.Add(series, []byte(s))
		}
	}
	s, loc := fuzzSession(f, ":rollUp"), fuzzLoc(f)
	start, end := fuzzDate.In(loc).UTC(), fuzzDate.AddDays(1).In(loc).UTC()
	f.Fuzz(func(t *testing.T, series uint8, body []byte) {
		fuzzWatchdog.begin(body)
		defer fuzzWatchdog.end()
		ctx := fuzzCtx(body)
		d := &Day{Date: fuzzDate, Start: start, End: end}
		var (
			err error
			n   int // windows returned
		)
		switch series % 3 {
		case seriesHeartRate:
			d.HeartRate, err = s.heartRate(ctx, start, end)
			n = len(d.HeartRate)
		case seriesSteps:
			d.Steps, err = s.steps(ctx, start, end)
			n = len(d.Steps)
		default:
			d.Calories, err = s.calories(ctx, start, end)
			n = len(d.Calories)
		}
		if err != nil {
			if n != 0 {
				t.Fatalf("%d windows returned with %v", n, err)
			}
			checkErr(t, err)
			return
		}
		checkDay(t, d, loc)
	})
}

// FuzzDecodeDailyRollUp feeds one dailyRollUp answer for fuzzDate to dailyRollUp and then, as
// summary does with each data type's point, to every summaryFields apply.
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
	s := fuzzSession(f, ":dailyRollUp")
	dataType := summaryFields[0].dataType
	op := "dailyRollUp " + dataType + " " + fuzzDate.String()
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzWatchdog.begin(body)
		defer fuzzWatchdog.end()
		p, err := s.dailyRollUp(fuzzCtx(body), op, dataType, fuzzDate)
		if err != nil {
			if p != nil {
				t.Fatalf("dailyRollUp returned a point with %v", err)
			}
			checkErr(t, err)
			return
		}
		if p == nil {
			return // no window: the day's values are not reported
		}
		if d, err := civilDay(p.CivilStartTime); err != nil || d != fuzzDate {
			t.Fatalf("window starting %+v (%v) accepted for %s", p.CivilStartTime, err, fuzzDate)
		}
		// Each field on its own Summary, so that a value one field rejects does not hide what the
		// next does with the same point; a rejection is summary's KindMalformed.
		for _, sf := range summaryFields {
			var sm Summary
			if err := sf.apply(p, &sm); err != nil {
				continue
			}
			checkSummary(t, sm)
		}
	})
}

// FuzzDecodeList feeds one daily-resting-heart-rate list answer to restingHeartRate for fuzzDate.
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
	s := fuzzSession(f, "/dataPoints")
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzWatchdog.begin(body)
		defer fuzzWatchdog.end()
		rhr, err := s.restingHeartRate(fuzzCtx(body), fuzzDate)
		if err != nil {
			if rhr != nil {
				t.Fatalf("restingHeartRate returned %d with %v", *rhr, err)
			}
			checkErr(t, err)
			return
		}
		checkSummary(t, Summary{RestingHeartRate: rhr})
	})
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
	s := fuzzSession(f, "/pairedDevices")
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzWatchdog.begin(body)
		defer fuzzWatchdog.end()
		ts, err := s.LastSync(fuzzCtx(body))
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
	s := fuzzSession(f, "/identity")
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzWatchdog.begin(body)
		defer fuzzWatchdog.end()
		id, err := s.Identity(fuzzCtx(body))
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
	s := fuzzSession(f, "/settings")
	// Zones already checked to load: the check repeats Settings' own LoadLocation, which reads
	// and parses a zoneinfo file, so each accepted zone is checked once.
	loadable := map[string]bool{}
	var mu sync.Mutex
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzWatchdog.begin(body)
		defer fuzzWatchdog.end()
		st, err := s.Settings(fuzzCtx(body))
		if err != nil {
			if st != (Settings{}) {
				t.Fatalf("Settings returned %+v with %v", st, err)
			}
			checkErr(t, err)
			return
		}
		if st.TimeZone == "" || st.TimeZone == "Local" {
			t.Fatalf("unusable zone %q accepted", st.TimeZone)
		}
		mu.Lock()
		ok := loadable[st.TimeZone]
		mu.Unlock()
		if ok {
			return
		}
		if _, err := time.LoadLocation(st.TimeZone); err != nil {
			t.Fatalf("unusable zone %q accepted: %v", st.TimeZone, err)
		}
		mu.Lock()
		loadable[st.TimeZone] = true
		mu.Unlock()
	})
}
