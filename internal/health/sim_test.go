package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/studylab/sync-all/internal/healthsim"
)

// simEnv is a simulator behind a real HTTP server at a fixed clock, and a client pointed at it.
type simEnv struct {
	sim *healthsim.Server
	ts  *httptest.Server
	c   *Client

	mu   sync.Mutex
	hits map[string]int // requests by access token and URL path
}

// ServeHTTP counts the request by token and path, then lets the simulator answer.
func (e *simEnv) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.hits[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")+" "+r.URL.Path]++
	e.mu.Unlock()
	e.sim.ServeHTTP(w, r)
}

// requests counts the requests made with access to paths containing part, and the most any one
// such path had.
func (e *simEnv) requests(access, part string) (total, most int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, n := range e.hits {
		tok, path, _ := strings.Cut(k, " ")
		if tok == access && strings.Contains(path, part) {
			total += n
			most = max(most, n)
		}
	}
	return total, most
}

func newSim(t *testing.T, o healthsim.Options, now time.Time) *simEnv {
	t.Helper()
	o.Now = func() time.Time { return now }
	e := &simEnv{sim: healthsim.New(o), hits: map[string]int{}}
	e.ts = httptest.NewServer(e)
	t.Cleanup(e.ts.Close)
	c, err := New(Config{BaseURL: e.ts.URL, HTTPClient: e.ts.Client(), MaxAttempts: 3, BaseBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

// participant adds a participant in zone, syncs their device at the clock's now (so the whole
// past is visible) and grants all scopes; it returns a Session with the access token.
func (e *simEnv) participant(t *testing.T, id, zone string, sync bool) *Session {
	t.Helper()
	e.sim.AddParticipant(healthsim.Participant{LegacyUserID: id, TimeZone: zone})
	if sync {
		e.sim.SyncDevice(id)
	}
	access, _, _ := e.sim.Grant(id, nil)
	return e.c.Session(access)
}

// truthDay converts the simulator's answer into the Day the client should produce.
func truthDay(d Date, td healthsim.TruthDay) *Day {
	out := &Day{Date: d, Start: td.Start.UTC(), End: td.End.UTC()}
	for _, w := range td.HeartRate {
		out.HeartRate = append(out.HeartRate, HeartRate{Start: w.Start.UTC(), Avg: w.Avg, Min: w.Min, Max: w.Max})
	}
	for _, w := range td.Steps {
		out.Steps = append(out.Steps, Steps{Start: w.Start.UTC(), Count: w.Count})
	}
	for _, w := range td.Calories {
		out.Calories = append(out.Calories, Calories{Start: w.Start.UTC(), Kcal: w.Kcal})
	}
	i := func(k string) *int64 {
		if v := td.Summary[k]; v != nil {
			n := int64(*v)
			return &n
		}
		return nil
	}
	out.Summary = Summary{
		Steps: i("steps"), DistanceM: td.Summary["distance_m"], CaloriesTotal: td.Summary["calories_total"],
		CaloriesActive: td.Summary["calories_active"], Floors: i("floors"), ElevationGainM: td.Summary["elevation_gain_m"],
		RestingHeartRate: i("resting_heart_rate"), SedentaryMinutes: i("sedentary_minutes"), LightMinutes: i("light_minutes"),
		ModerateMinutes: i("moderate_minutes"), VigorousMinutes: i("vigorous_minutes"), AZMFatBurn: i("azm_fat_burn"),
		AZMCardio: i("azm_cardio"), AZMPeak: i("azm_peak"),
	}
	return out
}

// TestDayMatchesSimulator decodes whole days through the generated client over real HTTP and
// compares them window by window with what the simulator generated.
func TestDayMatchesSimulator(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, zone string
		date       Date
		hours      int
		today      bool // the current day, partly synced: only windows up to lastSyncTime exist
		opts       healthsim.Options
	}{
		{name: "LA spring forward", zone: "America/Los_Angeles", date: Date{2026, 3, 8}, hours: 23},
		{name: "LA fall back", zone: "America/Los_Angeles", date: Date{2026, 11, 1}, hours: 25},
		{name: "Berlin fall back", zone: "Europe/Berlin", date: Date{2026, 10, 25}, hours: 25},
		{name: "Kathmandu +05:45", zone: "Asia/Kathmandu", date: Date{2026, 3, 8}, hours: 24},
		{name: "Kathmandu today unsynced", zone: "Asia/Kathmandu", date: Date{2026, 3, 10}, hours: 24, today: true},
		{name: "empty pages", zone: "America/Los_Angeles", date: Date{2026, 3, 8}, hours: 23,
			opts: healthsim.Options{EmptyPages: true, PageSize: 37, RateLimitPerMinute: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
			if !tc.today {
				now = tc.date.AddDays(2).In(time.UTC).Add(12 * time.Hour)
			}
			env := newSim(t, tc.opts, now)
			id := "P" + strings.ToUpper(strings.NewReplacer("/", "", "_", "").Replace(tc.zone))[:6]
			s := env.participant(t, id, tc.zone, !tc.today)
			loc := mustLoad(t, tc.zone)

			got, err := s.Day(context.Background(), tc.date, loc)
			if err != nil {
				t.Fatalf("Day: %v", err)
			}
			want := truthDay(tc.date, env.sim.Truth(id, tc.date.Year, tc.date.Month, tc.date.Day))
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("Day differs from the simulator (-want +got):\n%s", d)
			}
			checkDay(t, got, loc)
			if h := got.End.Sub(got.Start); h != time.Duration(tc.hours)*time.Hour {
				t.Errorf("day length %v, want %dh", h, tc.hours)
			}
			// The comparison must be about real data: windows exist, some are off-wrist (absent),
			// and some worn windows are zeros, which the simulator sends as "steps": {}.
			minutes := int(got.End.Sub(got.Start) / time.Minute)
			if len(got.HeartRate) == 0 || len(got.HeartRate) >= minutes {
				t.Errorf("%d heart-rate windows of %d minutes: want some present and some absent", len(got.HeartRate), minutes)
			}
			zeros := 0
			for _, w := range got.Steps {
				if w.Count == 0 {
					zeros++
				}
			}
			if zeros == 0 {
				t.Errorf("no worn zero-step window decoded from {}")
			}
			if !tc.today && got.Summary.Steps == nil {
				t.Errorf("summary steps not reported for a synced day")
			}
			if tc.today && (len(got.HeartRate) == 0 || !got.HeartRate[len(got.HeartRate)-1].Start.Before(env.sim.LastSync(id))) {
				t.Errorf("today: windows after lastSyncTime %v", env.sim.LastSync(id))
			}
			if tc.opts.EmptyPages {
				// 1-minute heart rate alone is ceil(1380/37) = 38 data pages, each after an empty one.
				if n := env.sim.Requests(id, "rollUp"); n < 2*38 {
					t.Errorf("rollUp requests = %d: empty pages were not followed", n)
				}
			}
		})
	}
}

func TestIdentitySettingsLastSync(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	env := newSim(t, healthsim.Options{Seed: 7, Participants: 3}, now)
	ctx := context.Background()
	for _, p := range env.sim.Participants() {
		access, _, _ := env.sim.Grant(p.LegacyUserID, nil)
		s := env.c.Session(access)
		id, err := s.Identity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if id != (Identity{LegacyUserID: p.LegacyUserID, HealthUserID: p.HealthUserID}) {
			t.Errorf("identity %+v, want %+v", id, p)
		}
		st, err := s.Settings(ctx)
		if err != nil || st.TimeZone != p.TimeZone {
			t.Errorf("settings %+v, %v; want zone %s", st, err, p.TimeZone)
		}
		ls, err := s.LastSync(ctx)
		if err != nil || !ls.Equal(env.sim.LastSync(p.LegacyUserID)) || ls.IsZero() || ls.Location() != time.UTC {
			t.Errorf("last sync %v, %v; want %v", ls, err, env.sim.LastSync(p.LegacyUserID))
		}
	}
	// Participant 1 owns retired trackers: the newest sync still wins.
	p1 := env.sim.Participants()[1]
	access, _, _ := env.sim.Grant(p1.LegacyUserID, nil)
	env.sim.SyncDevice(p1.LegacyUserID)
	if ls, err := env.c.Session(access).LastSync(ctx); err != nil || !ls.Equal(now) {
		t.Errorf("after SyncDevice: %v, %v; want %v", ls, err, now)
	}
}

// errLog collects every error string the client produced, to check them for secrets at the end.
type errLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *errLog) add(err error) {
	if err != nil {
		l.mu.Lock()
		l.errs = append(l.errs, err.Error())
		l.mu.Unlock()
	}
}

// TestFaults drives every error class through the simulator fault that produces it and checks
// the classification, the retry behaviour (by counting requests), and that no Day is returned.
// Finally no token or secret the simulator issued appears in any error string.
func TestFaults(t *testing.T) {
	t.Parallel()
	date := Date{2026, 3, 8}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	env := newSim(t, healthsim.Options{RateLimitPerMinute: -1}, now)
	loc := mustLoad(t, "America/Los_Angeles")
	var log errLog

	// Not "heart-rate": that also matches daily-resting-heart-rate.
	const hrRollUp = "heart-rate/dataPoints:rollUp"
	const stepsRollUp = "steps/dataPoints:rollUp"
	// A clean day, for the number of requests its heart rate takes. The calls of a day run at
	// once, so only the faulted path's requests are counted, never the day's total.
	env.sim.AddParticipant(healthsim.Participant{LegacyUserID: "BASE01", TimeZone: "America/Los_Angeles"})
	env.sim.SyncDevice("BASE01")
	baseAccess, _, _ := env.sim.Grant("BASE01", nil)
	if _, err := env.c.Session(baseAccess).Day(context.Background(), date, loc); err != nil {
		t.Fatal(err)
	}
	cleanHR, _ := env.requests(baseAccess, hrRollUp)
	if cleanHR < 3 {
		t.Fatalf("a clean day took %d heart-rate rollUps: it should paginate (500 per page)", cleanHR)
	}

	for _, tc := range []struct {
		name    string
		fault   healthsim.Fault
		scopes  []string // grant only these (nil = all)
		revoke  bool
		kind    Kind
		status  int
		reason  string
		retry   time.Duration
		path    string // count requests to this path (default: the heart-rate rollUp)
		hits    int    // expected requests to path; 0 = do not check
		once    bool   // no path may be requested twice (the error is not retried)
		wantDay bool   // the fault is absorbed by retries
	}{
		{name: "500 once is retried", fault: healthsim.Fault{Path: hrRollUp, Status: 500, Times: 1},
			wantDay: true, hits: cleanHR + 1},
		{name: "503 always exhausts attempts", fault: healthsim.Fault{Path: hrRollUp, Status: 503},
			kind: KindTransient, status: 503, reason: "UNAVAILABLE", hits: 3},
		{name: "truncated once is retried", fault: healthsim.Fault{Path: hrRollUp, Body: "truncated", Times: 1},
			wantDay: true, hits: cleanHR + 1},
		{name: "truncated always is transient", fault: healthsim.Fault{Path: hrRollUp, Body: "truncated"},
			kind: KindTransient, reason: "TRUNCATED", hits: 3},
		{name: "429 with a short Retry-After is retried", fault: healthsim.Fault{Path: hrRollUp, Status: 429, Reason: "RATE_LIMIT_EXCEEDED", RetryAfter: time.Second, Times: 1},
			wantDay: true, hits: cleanHR + 1},
		{name: "429 is not retried", fault: healthsim.Fault{Path: hrRollUp, Status: 429, Reason: "RATE_LIMIT_EXCEEDED", RetryAfter: 30 * time.Second},
			kind: KindRateLimited, status: 429, reason: "RATE_LIMIT_EXCEEDED", retry: 30 * time.Second, hits: 1},
		{name: "account not linked", fault: healthsim.Fault{AccountNotLinked: true},
			kind: KindReconsent, status: 400, reason: "ACCOUNT_NOT_LINKED", once: true},
		{name: "missing scope fault", fault: healthsim.Fault{Path: "steps", MissingScope: true},
			kind: KindReconsent, status: 403, reason: "ACCESS_TOKEN_SCOPE_INSUFFICIENT", once: true},
		// Resting heart rate and heart rate need the health_metrics scope.
		{name: "scope not granted", scopes: []string{healthsim.ScopeActivity, healthsim.ScopeSettings},
			kind: KindReconsent, status: 403, reason: "ACCESS_TOKEN_SCOPE_INSUFFICIENT", once: true},
		{name: "legacy login", fault: healthsim.Fault{Status: 403, Message: healthsim.MessageUberMint},
			kind: KindReconsent, status: 403, reason: "PERMISSION_DENIED", once: true},
		{name: "legacy 410", fault: healthsim.Fault{Status: 410},
			kind: KindReconsent, status: 410, once: true, reason: "-"},
		{name: "revoked grant", revoke: true, kind: KindAPI, status: 401, once: true, reason: "-"},
		{name: "malformed body is retried, then reported", fault: healthsim.Fault{Path: hrRollUp, Body: "malformed"},
			kind: KindMalformed, hits: 3},
		{name: "malformed once is retried", fault: healthsim.Fault{Path: hrRollUp, Body: "malformed", Times: 1},
			wantDay: true, hits: cleanHR + 1},
		{name: "garbage body", fault: healthsim.Fault{Path: "total-calories/dataPoints:rollUp", Body: "garbage"},
			kind: KindMalformed},
		// A body that decodes but is wrong is not a corrupted transfer: not retried.
		{name: "window outside range", fault: healthsim.Fault{Path: stepsRollUp, Body: "outside-range"},
			kind: KindMalformed, path: stepsRollUp, hits: 1},
		{name: "int64 as numbers", fault: healthsim.Fault{Body: "numbers"}, wantDay: true, hits: cleanHR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := "F" + strings.ToUpper(strings.ReplaceAll(tc.name, " ", ""))
			if len(id) > 12 {
				id = id[:12]
			}
			env.sim.AddParticipant(healthsim.Participant{LegacyUserID: id, TimeZone: "America/Los_Angeles"})
			env.sim.SyncDevice(id)
			access, _, _ := env.sim.Grant(id, tc.scopes)
			if tc.fault != (healthsim.Fault{}) {
				env.sim.SetFault(id, tc.fault)
			}
			if tc.revoke {
				env.sim.RevokeGrants(id)
			}
			day, err := env.c.Session(access).Day(context.Background(), date, loc)
			log.add(err)
			if tc.wantDay {
				if err != nil {
					t.Fatalf("Day: %v", err)
				}
				want := truthDay(date, env.sim.Truth(id, date.Year, date.Month, date.Day))
				if d := cmp.Diff(want, day); d != "" {
					t.Errorf("Day differs from the simulator (-want +got):\n%s", d)
				}
			} else {
				if day != nil {
					t.Errorf("a Day was returned with the error")
				}
				var he *Error
				if !errors.As(err, &he) {
					t.Fatalf("error %T %v is not *Error", err, err)
				}
				if he.Kind != tc.kind || KindOf(err) != tc.kind || he.Status != tc.status || he.RetryAfter != tc.retry {
					t.Errorf("got %v status %d retry %v (%v); want %v status %d retry %v", he.Kind, he.Status, he.RetryAfter, err, tc.kind, tc.status, tc.retry)
				}
				if tc.reason != "-" && he.Reason != tc.reason {
					t.Errorf("reason %q, want %q", he.Reason, tc.reason)
				}
			}
			path := tc.path
			if path == "" {
				path = hrRollUp
			}
			if n, _ := env.requests(access, path); tc.hits > 0 && n != tc.hits {
				t.Errorf("%s requests = %d, want %d", path, n, tc.hits)
			}
			// Only the faulted paths: another call may have fetched a second page before the
			// failure cancelled it.
			if _, most := env.requests(access, tc.fault.Path); tc.once && most != 1 {
				t.Errorf("a faulted path was requested %d times; the error must not be retried", most)
			}
		})
	}
	t.Run("client timeout is transient", func(t *testing.T) {
		t.Parallel()
		id := "FTIMEOUT"
		env.sim.AddParticipant(healthsim.Participant{LegacyUserID: id, TimeZone: "America/Los_Angeles"})
		access, _, _ := env.sim.Grant(id, nil)
		// The simulator holds the answer for a second; the client gives up after 50 ms.
		env.sim.SetFault(id, healthsim.Fault{Path: "identity", Latency: time.Second})
		hc := env.ts.Client()
		hc.Timeout = 50 * time.Millisecond
		c, err := New(Config{BaseURL: env.ts.URL, HTTPClient: hc, MaxAttempts: 2, BaseBackoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Session(access).Identity(context.Background())
		log.add(err)
		if KindOf(err) != KindTransient {
			t.Errorf("timeout: %v, want transient", err)
		}
		if n := env.sim.Requests(id, "identity"); n != 2 {
			t.Errorf("identity requests = %d, want 2 (retried once)", n)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := env.c.Session(baseAccess).Day(ctx, date, loc)
		log.add(err)
		if KindOf(err) != KindTransient || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v, want transient wrapping context.Canceled", err)
		}
	})
	t.Run("quota", func(t *testing.T) {
		t.Parallel()
		qenv := newSim(t, healthsim.Options{RateLimitPerMinute: 5}, now)
		s := qenv.participant(t, "QUOTA1", "America/Los_Angeles", true)
		day, err := s.Day(context.Background(), date, loc)
		log.add(err)
		var he *Error
		if day != nil || !errors.As(err, &he) || he.Kind != KindRateLimited || he.RetryAfter <= 0 || he.RetryAfter > time.Minute {
			t.Fatalf("quota: %v, %v; want rate limited with a retry time", day, err)
		}
		// The day's calls run at once: five pass, and every one refused is not retried.
		refused := qenv.sim.Stats().RateLimited
		if total, _ := qenv.requests(s.token, ""); refused < 1 || total != 5+refused {
			t.Errorf("%d requests with %d refused; want 5 allowed plus the refused ones, none retried", total, refused)
		}
		for _, sec := range qenv.sim.Secrets() {
			if strings.Contains(err.Error(), sec) {
				t.Errorf("secret in error %q", err)
			}
		}
	})
	t.Cleanup(func() {
		secrets := env.sim.Secrets()
		if len(secrets) < 10 || len(log.errs) < 10 {
			t.Errorf("only %d secrets and %d errors: the check would prove nothing", len(secrets), len(log.errs))
		}
		for _, e := range log.errs {
			for _, sec := range secrets {
				if strings.Contains(e, sec) {
					t.Errorf("secret %q… appears in error %q", sec[:min(6, len(sec))], e)
				}
			}
		}
	})
}

// TestBearerOnlyToAPIHost checks that the token is not sent to another host, e.g. after a
// redirect.
func TestBearerOnlyToAPIHost(t *testing.T) {
	t.Parallel()
	var got []string
	var mu sync.Mutex
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write([]byte(`{"healthUserId":"x"}`))
	}))
	t.Cleanup(other.Close)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(api.Close)
	c, err := New(Config{BaseURL: api.URL, HTTPClient: api.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Session(testToken).Identity(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "" {
		t.Errorf("redirected request carried Authorization %q", got)
	}
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "health.googleapis.com", "ftp://x/", "http://", "://x"} {
		if _, err := New(Config{BaseURL: u}); KindOf(err) != KindAPI || err == nil {
			t.Errorf("New(%q) = %v, want a KindAPI error", u, err)
		}
	}
	c, err := New(Config{BaseURL: "https://health.googleapis.com"})
	if err != nil || c.cfg.BaseURL != "https://health.googleapis.com/" || c.cfg.MaxAttempts != 4 || c.cfg.BaseBackoff != 250*time.Millisecond {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

// TestDayConcurrency checks that a Day's calls run at once by default and one after another with
// DayConcurrency 1, and that both give the simulator's day.
func TestDayConcurrency(t *testing.T) {
	t.Parallel()
	date := Date{2026, 3, 8}
	now := date.AddDays(2).In(time.UTC)
	loc := mustLoad(t, "Europe/Berlin")
	for _, tc := range []struct {
		limit     int
		atLeast   int // in flight at once, at some moment
		atMost    int
		wantCalls int
	}{
		{limit: 0, atLeast: 4, atMost: 13, wantCalls: 13},
		{limit: 1, atLeast: 1, atMost: 1, wantCalls: 13},
		{limit: 3, atLeast: 2, atMost: 3, wantCalls: 13},
	} {
		t.Run(fmt.Sprint("limit ", tc.limit), func(t *testing.T) {
			t.Parallel()
			sim := healthsim.New(healthsim.Options{Now: func() time.Time { return now }, RateLimitPerMinute: -1, PageSize: 5000})
			sim.AddParticipant(healthsim.Participant{LegacyUserID: "CONC01", TimeZone: "Europe/Berlin"})
			sim.SyncDevice("CONC01")
			access, _, _ := sim.Grant("CONC01", nil)
			var inFlight, most, calls atomic.Int64
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				calls.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(20 * time.Millisecond) // long enough for calls started together to overlap
				sim.ServeHTTP(w, r)
			}))
			t.Cleanup(ts.Close)
			c, err := New(Config{BaseURL: ts.URL, HTTPClient: ts.Client(), DayConcurrency: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			day, err := c.Session(access).Day(context.Background(), date, loc)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(truthDay(date, sim.Truth("CONC01", date.Year, date.Month, date.Day)), day); d != "" {
				t.Errorf("Day differs from the simulator (-want +got):\n%s", d)
			}
			if m := int(most.Load()); m < tc.atLeast || m > tc.atMost {
				t.Errorf("at most %d calls were in flight at once; want %d to %d", m, tc.atLeast, tc.atMost)
			}
			if n := int(calls.Load()); n != tc.wantCalls {
				t.Errorf("%d calls, want %d (one page each)", n, tc.wantCalls)
			}
		})
	}
}
