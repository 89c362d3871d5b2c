package healthsim_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	health "google.golang.org/api/health/v4"

	"github.com/studylab/sync-all/internal/healthsim"
)

func TestQuotaFixedMinuteWindow(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	f.clock.Set(defaultNow.Add(15 * time.Second))
	ps := f.sim.Participants()
	access, _, _ := f.sim.Grant(ps[0].LegacyUserID, nil)
	other, _, _ := f.sim.Grant(ps[1].LegacyUserID, nil)
	for i := range 300 {
		if r := f.do(t, http.MethodGet, "/v4/users/me/identity", access, nil); r.status != 200 {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	r := f.do(t, http.MethodGet, "/v4/users/me/identity", access, nil)
	if st, reason := r.rpc(t); r.status != 429 || st != "RESOURCE_EXHAUSTED" || reason != "RATE_LIMIT_EXCEEDED" || r.header.Get("Retry-After") != "45" {
		t.Fatalf("request 301: %d %s %s Retry-After=%q", r.status, st, reason, r.header.Get("Retry-After"))
	}
	_, err := f.service(t, access).Users.GetIdentity("users/me/identity").Do()
	if ae := apiError(t, err); ae.HTTPCode() != 429 || ae.Reason() != "RATE_LIMIT_EXCEEDED" {
		t.Errorf("official client: %v", err)
	}
	if r := f.do(t, http.MethodGet, "/v4/users/me/identity", other, nil); r.status != 200 {
		t.Errorf("quota is per participant: %d", r.status)
	}
	f.clock.Set(defaultNow.Add(time.Minute))
	if r := f.do(t, http.MethodGet, "/v4/users/me/identity", access, nil); r.status != 200 {
		t.Errorf("next minute: %d", r.status)
	}
	if st := f.sim.Stats(); st.RateLimited != 2 {
		t.Errorf("stats %+v", st)
	}
	if n := f.sim.Requests(ps[0].LegacyUserID, "identity"); n != 303 {
		t.Errorf("identity requests %d, want 303 (429s count)", n)
	}
}

func TestQuotaRollingWindow(t *testing.T) {
	f := newFixture(t, healthsim.Options{RateLimitPerMinute: 3, RateLimitRolling: true})
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	get := func() response { return f.do(t, http.MethodGet, "/v4/users/me/identity", access, nil) }
	for _, at := range []time.Duration{0, 20 * time.Second, 40 * time.Second} {
		f.clock.Set(defaultNow.Add(at))
		if r := get(); r.status != 200 {
			t.Fatalf("at %v: %d", at, r.status)
		}
	}
	f.clock.Set(defaultNow.Add(50 * time.Second))
	if r := get(); r.status != 429 || r.header.Get("Retry-After") != "10" {
		t.Fatalf("4th in 60 s: %d Retry-After=%q", r.status, r.header.Get("Retry-After"))
	}
	f.clock.Set(defaultNow.Add(61 * time.Second)) // the first request left the window
	if r := get(); r.status != 200 {
		t.Fatalf("after the window rolled: %d", r.status)
	}
}

func TestFaults(t *testing.T) {
	day := time.Date(2026, 12, 3, 20, 0, 0, 0, time.UTC) // noon in Los Angeles
	stepsBody := rollUpBody(day, day.Add(time.Hour), "300s")
	cases := []struct {
		name  string
		fault healthsim.Fault
		path  string
		body  any
		check func(t *testing.T, r response)
	}{
		{"status 503", healthsim.Fault{Status: 503}, "/v4/users/me/identity", nil, func(t *testing.T, r response) {
			if st, _ := r.rpc(t); r.status != 503 || st != "UNAVAILABLE" {
				t.Errorf("%d %s", r.status, st)
			}
		}},
		{"429 with Retry-After", healthsim.Fault{Status: 429, RetryAfter: 90 * time.Second, Reason: "RATE_LIMIT_EXCEEDED"}, "/v4/users/me/identity", nil, func(t *testing.T, r response) {
			if st, reason := r.rpc(t); r.status != 429 || st != "RESOURCE_EXHAUSTED" || reason != "RATE_LIMIT_EXCEEDED" || r.header.Get("Retry-After") != "90" {
				t.Errorf("%d %s %s %q", r.status, st, reason, r.header.Get("Retry-After"))
			}
		}},
		{"account not linked", healthsim.Fault{AccountNotLinked: true}, "/v4/users/me/settings", nil, func(t *testing.T, r response) {
			if st, reason := r.rpc(t); r.status != 400 || st != "FAILED_PRECONDITION" || reason != "ACCOUNT_NOT_LINKED" {
				t.Errorf("%d %s %s", r.status, st, reason)
			}
		}},
		{"missing scope", healthsim.Fault{MissingScope: true}, dataPath("steps", ":rollUp"), stepsBody, func(t *testing.T, r response) {
			if st, reason := r.rpc(t); r.status != 403 || st != "PERMISSION_DENIED" || reason != "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
				t.Errorf("%d %s %s", r.status, st, reason)
			}
		}},
		{"UberMint", healthsim.Fault{Status: 403, Message: healthsim.MessageUberMint}, "/v4/users/me/identity", nil, func(t *testing.T, r response) {
			if r.status != 403 || !strings.Contains(string(r.body), "Could not mint UberMint") {
				t.Errorf("%d %s", r.status, r.body)
			}
		}},
		{"malformed body", healthsim.Fault{Body: "malformed"}, "/v4/users/me/identity", nil, func(t *testing.T, r response) {
			if m := r.json(t); r.status != 200 || m["legacyUserId"] == "CRBM3W" {
				t.Errorf("%d %s", r.status, r.body)
			}
		}},
		{"int64 as numbers", healthsim.Fault{Body: "numbers"}, dataPath("steps", ":rollUp"), stepsBody, func(t *testing.T, r response) {
			if r.status != 200 || strings.Contains(string(r.body), `"countSum":"`) || !strings.Contains(string(r.body), `"countSum":`) {
				t.Errorf("%d %s", r.status, r.body)
			}
		}},
		{"point outside the range", healthsim.Fault{Body: "outside-range"}, dataPath("steps", ":rollUp"), stepsBody, func(t *testing.T, r response) {
			pts := r.json(t)["rollupDataPoints"].([]any)
			last, _ := time.Parse(time.RFC3339, pts[len(pts)-1].(map[string]any)["startTime"].(string))
			if len(pts) != 13 || !last.After(day.Add(time.Hour)) {
				t.Errorf("%d points, last at %v", len(pts), last)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, healthsim.Options{})
			access, _, _ := f.sim.Grant("CRBM3W", nil)
			f.sim.SetFault("CRBM3W", tc.fault)
			method := http.MethodGet
			if tc.body != nil {
				method = http.MethodPost
			}
			tc.check(t, f.do(t, method, tc.path, access, tc.body))
			f.sim.ClearFaults("CRBM3W")
			if r := f.do(t, method, tc.path, access, tc.body); r.status != 200 {
				t.Errorf("after ClearFaults: %d", r.status)
			}
			if f.sim.Stats().FaultsInjected != 1 {
				t.Errorf("stats %+v", f.sim.Stats())
			}
		})
	}
}

func TestFaultsThroughOfficialClient(t *testing.T) {
	f := newFixture(t, healthsim.Options{})
	access, _, _ := f.sim.Grant("CRBM3W", nil)
	svc := f.service(t, access)
	identity := func() error { _, err := svc.Users.GetIdentity("users/me/identity").Do(); return err }

	f.sim.SetFault("CRBM3W", healthsim.Fault{Body: "malformed"})
	if err := identity(); err == nil || strings.Contains(err.Error(), "googleapi") {
		t.Errorf("malformed body: %v", err)
	}
	f.sim.SetFault("CRBM3W", healthsim.Fault{Body: "garbage"})
	if err := identity(); err == nil {
		t.Errorf("garbage body decoded")
	}
	f.sim.SetFault("CRBM3W", healthsim.Fault{Body: "truncated"})
	if err := identity(); err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated body: %v", err)
	}
	f.sim.SetFault("CRBM3W", healthsim.Fault{Path: "steps", Body: "numbers"})
	day := time.Date(2026, 12, 3, 20, 0, 0, 0, time.UTC) // noon in Los Angeles
	_, err := svc.Users.DataTypes.DataPoints.RollUp("users/me/dataTypes/steps", &health.RollUpDataPointsRequest{
		Range: &health.Interval{StartTime: rfc(day), EndTime: rfc(day.Add(time.Hour))}, WindowSize: "300s"}).Do()
	if err == nil {
		t.Errorf("the generated client accepted int64 numbers (reference §12 item 7): update the contract note")
	}
	f.sim.ClearFaults("CRBM3W")

	// Times: the fault hits twice, then the request succeeds; every attempt is counted.
	f.sim.SetFault("CRBM3W", healthsim.Fault{Path: "identity", Status: 500, Times: 2})
	for i, want := range []int{500, 500, 0} {
		err := identity()
		if want == 0 && err != nil || want != 0 && apiError(t, err).HTTPCode() != want {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
	if n := f.sim.Requests("CRBM3W", "identity"); n != 3+3 {
		t.Errorf("identity requests %d", n)
	}

	// Path selects: heart-rate fails, steps does not.
	f.sim.SetFault("CRBM3W", healthsim.Fault{Path: "heart-rate", Status: 503})
	hr := f.do(t, http.MethodPost, dataPath("heart-rate", ":rollUp"), access, rollUpBody(day, day.Add(time.Hour), "60s"))
	st := f.do(t, http.MethodPost, dataPath("steps", ":rollUp"), access, rollUpBody(day, day.Add(time.Hour), "300s"))
	if hr.status != 503 || st.status != 200 {
		t.Errorf("path fault: heart-rate %d, steps %d", hr.status, st.status)
	}
	f.sim.ClearFaults("CRBM3W")

	// Latency trips a client timeout (real time: it is what a timeout measures).
	f.sim.SetFault("CRBM3W", healthsim.Fault{Latency: 2 * time.Second, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := svc.Users.GetIdentity("users/me/identity").Context(ctx).Do(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("latency: %v", err)
	}

	// Probability is seeded: about half of 200 requests fail, the same number every run.
	f.sim.SetFault("CRBM3W", healthsim.Fault{Path: "settings", Status: 500, Probability: 0.5})
	failed := 0
	for range 200 {
		if r := f.do(t, http.MethodGet, "/v4/users/me/settings", access, nil); r.status == 500 {
			failed++
		}
	}
	if failed < 70 || failed > 130 {
		t.Errorf("probability 0.5: %d of 200 failed", failed)
	}
}

func TestTokenEndpointFault(t *testing.T) {
	f := newFixture(t, healthsim.Options{RotateRefreshTokens: true})
	_, rt, _ := f.sim.Grant("CRBM3W", nil)
	f.sim.SetFault("CRBM3W", healthsim.Fault{Path: "/token", Status: 503, Times: 1})
	if r := f.refresh(t, rt); r.status != 503 {
		t.Fatalf("token fault: %d", r.status)
	}
	// The failed call rotated nothing: the same refresh token works and rotates once.
	ok := f.refresh(t, rt)
	if ok.status != 200 || ok.str("refresh_token") == "" {
		t.Fatalf("after the fault: %v", ok.m)
	}
	// A data-API fault with Path "" does not touch the token endpoint.
	f.sim.SetFault("CRBM3W", healthsim.Fault{Status: 500})
	if r := f.refresh(t, ok.str("refresh_token")); r.status != 200 {
		t.Errorf("catch-all data fault hit /token: %d", r.status)
	}
	// A truncated token answer after rotation is exactly the lost-response case the grace covers.
	_, rt2, _ := f.sim.Grant("CRBM3W", nil)
	f.sim.SetFault("CRBM3W", healthsim.Fault{Path: "/token", Body: "truncated", Times: 1})
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/token", strings.NewReader(url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "client_id": {"sim-client"}, "client_secret": {"sim-secret"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatalf("truncated token answer read completely")
	}
	if again := f.refresh(t, rt2); again.status != 200 || f.sim.Stats().GraceReplays != 1 {
		t.Errorf("replay after lost answer: %v %+v", again.m, f.sim.Stats())
	}
}

// TestConcurrentUse hammers one server from many goroutines; run with -race.
func TestConcurrentUse(t *testing.T) {
	f := newFixture(t, healthsim.Options{RotateRefreshTokens: true, EmptyPages: true})
	ps := f.sim.Participants()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ps[g%len(ps)]
			access, rt, _ := f.sim.Grant(p.LegacyUserID, nil)
			day := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
			for i := range 18 {
				var r response
				switch i % 6 {
				case 0:
					r = f.do(t, http.MethodPost, dataPath("heart-rate", ":rollUp"), access, rollUpBody(day, day.Add(6*time.Hour), "60s"))
				case 1:
					r = f.do(t, http.MethodPost, dataPath("steps", ":dailyRollUp"), access, dailyBody(day))
				case 2:
					r = f.do(t, http.MethodGet, "/v4/users/me/pairedDevices", access, nil)
				case 3:
					f.sim.SyncDevice(p.LegacyUserID)
					_ = f.sim.Truth(p.LegacyUserID, 2026, 12, 3)
					r = f.do(t, http.MethodGet, "/v4/users/me/settings", access, nil)
				case 4:
					r = f.do(t, http.MethodPost, "/token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"sim-client"}, "client_secret": {"sim-secret"}})
				case 5:
					f.clock.Advance(time.Second)
					f.sim.SetFault(p.LegacyUserID, healthsim.Fault{Path: "nothing-matches", Status: 500})
					r = f.do(t, http.MethodGet, "/v4/users/me/identity", access, nil)
					_ = f.sim.Requests("", "identity")
					_ = f.sim.Stats()
				}
				// 400 = a concurrent refresh rotated the token and used the replacement first.
				if r.status != 200 && !(i%6 == 4 && r.status == 400) {
					errs <- fmt.Errorf("goroutine %d op %d: %d %s", g, i%6, r.status, r.body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkTruthUncachedDay(b *testing.B) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	sim := healthsim.New(healthsim.Options{Now: func() time.Time { return now }})
	for i := 0; b.Loop(); i++ {
		d := time.Date(2025, 1, 1+i%400, 0, 0, 0, 0, time.UTC) // beyond the cache: generated every time
		sim.Truth("CRBM3W", d.Year(), d.Month(), d.Day())
	}
}

func BenchmarkTruthCachedDay(b *testing.B) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	sim := healthsim.New(healthsim.Options{Now: func() time.Time { return now }})
	for b.Loop() {
		sim.Truth("CRBM3W", 2026, 12, 3)
	}
}
