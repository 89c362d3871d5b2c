package healthsim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2/apierror"
	health "google.golang.org/api/health/v4"
	"google.golang.org/api/option"

	"github.com/studylab/sync-all/internal/healthsim"
)

// testClock is the injected clock; tests move it instead of sleeping.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// defaultNow is a Friday noon UTC, after the legacy turn-off.
var defaultNow = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

type fixture struct {
	sim   *healthsim.Server
	srv   *httptest.Server
	clock *testClock
}

func newFixture(t *testing.T, o healthsim.Options) *fixture {
	t.Helper()
	clk := &testClock{t: defaultNow}
	if o.Now == nil {
		o.Now = clk.Now
	}
	sim := healthsim.New(o)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &fixture{sim: sim, srv: srv, clock: clk}
}

// participant returns the first participant in zone.
func (f *fixture) participant(t *testing.T, zone string) healthsim.Participant {
	t.Helper()
	for _, p := range f.sim.Participants() {
		if p.TimeZone == zone {
			return p
		}
	}
	t.Fatalf("no participant in %s", zone)
	return healthsim.Participant{}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return m
}

// rpcReason returns status and the first ErrorInfo reason of a google.rpc.Status body.
func (r response) rpc(t *testing.T) (status, reason string) {
	t.Helper()
	var b struct {
		Error struct {
			Code    int    `json:"code"`
			Status  string `json:"status"`
			Details []struct {
				Type   string `json:"@type"`
				Reason string `json:"reason"`
			} `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("not a google.rpc.Status: %q: %v", r.body, err)
	}
	if b.Error.Code != r.status {
		t.Errorf("error.code %d != HTTP status %d", b.Error.Code, r.status)
	}
	for _, d := range b.Error.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" {
			return b.Error.Status, d.Reason
		}
	}
	return b.Error.Status, ""
}

// do sends a request as a plain client would. body may be nil, a string, url.Values or a value to marshal.
func (f *fixture) do(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(js), "application/json"
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// bearer adds the access token, as internal/health will per session.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// service is Google's official client pointed at the simulator.
func (f *fixture) service(t *testing.T, token string) *health.Service {
	t.Helper()
	svc, err := health.NewService(context.Background(),
		option.WithEndpoint(f.srv.URL+"/"),
		option.WithHTTPClient(&http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// apiError unwraps what the official client returns for a google.rpc.Status answer.
func apiError(t *testing.T, err error) *apierror.APIError {
	t.Helper()
	var ae *apierror.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an apierror.APIError, got %T: %v", err, err)
	}
	return ae
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func rollUpBody(start, end time.Time, window string) map[string]any {
	return map[string]any{"range": map[string]any{"startTime": rfc(start), "endTime": rfc(end)}, "windowSize": window}
}

func civilDate(t time.Time) map[string]any {
	return map[string]any{"date": map[string]any{"year": t.Year(), "month": int(t.Month()), "day": t.Day()}}
}

func dailyBody(day time.Time) map[string]any {
	return map[string]any{"range": map[string]any{"start": civilDate(day), "end": civilDate(day.AddDate(0, 0, 1))}}
}

func dataPath(typ, op string) string {
	return "/v4/users/me/dataTypes/" + typ + "/dataPoints" + op
}

// fetchDay reads one local day through the official client the way internal/health's contract
// describes (9 dailyRollUps, the resting-HR list, three paginated rollUps) and returns it in Truth's
// shape, so the two can be compared window by window.
func fetchDay(t *testing.T, svc *health.Service, loc *time.Location, y int, m time.Month, d int) healthsim.TruthDay {
	t.Helper()
	ctx := context.Background()
	start := time.Date(y, m, d, 0, 0, 0, 0, loc)
	next := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	td := healthsim.TruthDay{Start: start.UTC(), End: next.UTC(), Summary: map[string]*float64{}}
	for _, k := range healthsim.SummaryKeys() {
		td.Summary[k] = nil
	}
	dp := svc.Users.DataTypes.DataPoints
	parse := func(s string) time.Time {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("bad timestamp %q", s)
		}
		return ts.UTC()
	}
	rollUp := func(typ, window string, each func(*health.RollupDataPoint)) {
		req := &health.RollUpDataPointsRequest{Range: &health.Interval{StartTime: rfc(start), EndTime: rfc(next)}, WindowSize: window}
		err := dp.RollUp("users/me/dataTypes/"+typ, req).Pages(ctx, func(r *health.RollUpDataPointsResponse) error {
			for _, p := range r.RollupDataPoints {
				each(p)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("rollUp %s: %v", typ, err)
		}
	}
	rollUp("heart-rate", "60s", func(p *health.RollupDataPoint) {
		if p.HeartRate != nil {
			td.HeartRate = append(td.HeartRate, healthsim.HRWindow{Start: parse(p.StartTime), Avg: p.HeartRate.BeatsPerMinuteAvg, Min: p.HeartRate.BeatsPerMinuteMin, Max: p.HeartRate.BeatsPerMinuteMax})
		}
	})
	rollUp("steps", "300s", func(p *health.RollupDataPoint) {
		if p.Steps != nil {
			td.Steps = append(td.Steps, healthsim.StepsWindow{Start: parse(p.StartTime), Count: p.Steps.CountSum})
		}
	})
	rollUp("total-calories", "300s", func(p *health.RollupDataPoint) {
		if p.TotalCalories != nil {
			td.Calories = append(td.Calories, healthsim.CaloriesWindow{Start: parse(p.StartTime), Kcal: p.TotalCalories.KcalSum})
		}
	})
	day := &health.Date{Year: int64(y), Month: int64(m), Day: int64(d)}
	nd := next.In(loc)
	dayAfter := &health.Date{Year: int64(nd.Year()), Month: int64(nd.Month()), Day: int64(nd.Day())}
	daily := func(typ string) *health.DailyRollupDataPoint {
		resp, err := dp.DailyRollUp("users/me/dataTypes/"+typ, &health.DailyRollUpDataPointsRequest{
			Range: &health.CivilTimeInterval{Start: &health.CivilDateTime{Date: day}, End: &health.CivilDateTime{Date: dayAfter}},
		}).Do()
		if err != nil {
			t.Fatalf("dailyRollUp %s: %v", typ, err)
		}
		if len(resp.RollupDataPoints) == 0 {
			return nil
		}
		return resp.RollupDataPoints[0]
	}
	set := func(k string, v float64) { td.Summary[k] = &v }
	if p := daily("steps"); p != nil && p.Steps != nil {
		set("steps", float64(p.Steps.CountSum))
	}
	if p := daily("distance"); p != nil && p.Distance != nil {
		set("distance_m", float64(p.Distance.MillimetersSum)/1000)
	}
	if p := daily("total-calories"); p != nil && p.TotalCalories != nil {
		set("calories_total", p.TotalCalories.KcalSum)
	}
	if p := daily("active-energy-burned"); p != nil && p.ActiveEnergyBurned != nil {
		set("calories_active", p.ActiveEnergyBurned.KcalSum)
	}
	if p := daily("floors"); p != nil && p.Floors != nil {
		set("floors", float64(p.Floors.CountSum))
	}
	if p := daily("altitude"); p != nil && p.Altitude != nil {
		set("elevation_gain_m", float64(p.Altitude.GainMillimetersSum)/1000)
	}
	if p := daily("sedentary-period"); p != nil && p.SedentaryPeriod != nil {
		secs := 0.0
		if s := p.SedentaryPeriod.DurationSum; s != "" {
			if _, err := fmt.Sscanf(s, "%fs", &secs); err != nil {
				t.Fatalf("durationSum %q", s)
			}
		}
		set("sedentary_minutes", float64(int(secs/60)))
	}
	if p := daily("active-minutes"); p != nil && p.ActiveMinutes != nil {
		keys := map[string]string{"LIGHT": "light_minutes", "MODERATE": "moderate_minutes", "VIGOROUS": "vigorous_minutes"}
		for _, k := range keys {
			set(k, 0)
		}
		for _, l := range p.ActiveMinutes.ActiveMinutesRollupByActivityLevel {
			set(keys[l.ActivityLevel], float64(l.ActiveMinutesSum))
		}
	}
	if p := daily("active-zone-minutes"); p != nil && p.ActiveZoneMinutes != nil {
		set("azm_fat_burn", float64(p.ActiveZoneMinutes.SumInFatBurnHeartZone))
		set("azm_cardio", float64(p.ActiveZoneMinutes.SumInCardioHeartZone))
		set("azm_peak", float64(p.ActiveZoneMinutes.SumInPeakHeartZone))
	}
	filter := fmt.Sprintf(`daily_resting_heart_rate.date >= "%s" AND daily_resting_heart_rate.date < "%s"`,
		start.Format(time.DateOnly), next.In(loc).Format(time.DateOnly))
	err := dp.List("users/me/dataTypes/daily-resting-heart-rate").Filter(filter).Pages(ctx, func(r *health.ListDataPointsResponse) error {
		for _, p := range r.DataPoints {
			if x := p.DailyRestingHeartRate; x != nil && x.Date != nil && x.Date.Year == int64(y) && x.Date.Month == int64(m) && x.Date.Day == int64(d) {
				set("resting_heart_rate", float64(x.BeatsPerMinute))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list resting heart rate: %v", err)
	}
	return td
}
