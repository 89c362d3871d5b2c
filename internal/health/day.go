package health

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	healthapi "google.golang.org/api/health/v4"
)

// Window sizes of the intraday series (doc §7): Fitbit's former 1min heart rate and 5min
// steps/calories datasets.
const (
	heartRateWindow = time.Minute
	stepsWindow     = 5 * time.Minute
	caloriesWindow  = 5 * time.Minute
)

// maxBPM bounds any heart rate we accept; above it the value cannot be a human heart and the
// response is treated as malformed rather than stored.
const maxBPM = 400

// Day fetches one local civil day of data for the participant: the daily summary (nine
// dailyRollUp calls and the resting heart rate list) and the 1-minute heart rate and 5-minute
// steps and calories roll-ups over [local midnight, next local midnight) in loc. The thirteen
// calls run at once (the day's latency is one call's, not thirteen's); each is followed through
// all its pages. The first failure cancels the others. It returns a complete Day or an error,
// never a partial Day.
func (s *Session) Day(ctx context.Context, date Date, loc *time.Location) (*Day, error) {
	if loc == nil {
		return nil, &Error{Kind: KindAPI, Op: "day " + date.String(), Err: errors.New("nil location")}
	}
	if date.IsZero() || date.AddDays(0) != date {
		return nil, &Error{Kind: KindAPI, Op: "day " + date.String(), Err: errors.New("invalid date")}
	}
	d := &Day{Date: date, Start: date.In(loc).UTC(), End: date.AddDays(1).In(loc).UTC()}
	if n := s.c.cfg.DayConcurrency; n > 0 {
		ctx = context.WithValue(ctx, daySlotsKey{}, make(chan struct{}, n))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { d.Summary, err = s.summary(gctx, date); return err })
	// A calendar day the zone skipped (Pacific/Apia 2011-12-30) has no instants to roll up.
	if d.End.After(d.Start) {
		g.Go(inSlot(gctx, func() (err error) { d.HeartRate, err = s.heartRate(gctx, d.Start, d.End); return err }))
		g.Go(inSlot(gctx, func() (err error) { d.Steps, err = s.steps(gctx, d.Start, d.End); return err }))
		g.Go(inSlot(gctx, func() (err error) { d.Calories, err = s.calories(gctx, d.Start, d.End); return err }))
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return d, nil
}

// daySlotsKey carries a Day's semaphore (Config.DayConcurrency) to its calls.
type daySlotsKey struct{}

// inSlot wraps one of a Day's calls so it runs only while it holds one of the Day's slots, when
// the Day has a bound.
func inSlot(ctx context.Context, fn func() error) func() error {
	slots, _ := ctx.Value(daySlotsKey{}).(chan struct{})
	if slots == nil {
		return fn
	}
	return func() error {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return &Error{Kind: KindTransient, Op: "day", Err: ctx.Err()}
		}
		defer func() { <-slots }()
		return fn()
	}
}

// summaryFields maps each dailyRollUp data type to the Summary fields it fills. A nil value
// object leaves the fields nil (not reported); an empty one ("{}") sets them to 0.
var summaryFields = []struct {
	dataType string
	apply    func(p *healthapi.DailyRollupDataPoint, s *Summary) error
}{
	{"steps", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		if v := p.Steps; v != nil {
			return setCount(&s.Steps, v.CountSum, "countSum")
		}
		return nil
	}},
	{"distance", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		if v := p.Distance; v != nil {
			return setMillis(&s.DistanceM, v.MillimetersSum, "millimetersSum")
		}
		return nil
	}},
	{"total-calories", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		if v := p.TotalCalories; v != nil {
			return setKcal(&s.CaloriesTotal, v.KcalSum)
		}
		return nil
	}},
	{"active-energy-burned", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		if v := p.ActiveEnergyBurned; v != nil {
			return setKcal(&s.CaloriesActive, v.KcalSum)
		}
		return nil
	}},
	{"floors", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		if v := p.Floors; v != nil {
			return setCount(&s.Floors, v.CountSum, "countSum")
		}
		return nil
	}},
	{"altitude", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		if v := p.Altitude; v != nil {
			return setMillis(&s.ElevationGainM, v.GainMillimetersSum, "gainMillimetersSum")
		}
		return nil
	}},
	{"active-minutes", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		if p.ActiveMinutes == nil {
			return nil
		}
		return activeMinutes(p.ActiveMinutes, s)
	}},
	{"active-zone-minutes", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		v := p.ActiveZoneMinutes
		if v == nil {
			return nil
		}
		// The API's sums already count cardio and peak minutes twice (doc §12 item 10): stored as given.
		return errors.Join(
			setCount(&s.AZMFatBurn, v.SumInFatBurnHeartZone, "sumInFatBurnHeartZone"),
			setCount(&s.AZMCardio, v.SumInCardioHeartZone, "sumInCardioHeartZone"),
			setCount(&s.AZMPeak, v.SumInPeakHeartZone, "sumInPeakHeartZone"))
	}},
	{"sedentary-period", func(p *healthapi.DailyRollupDataPoint, s *Summary) error {
		if p.SedentaryPeriod == nil {
			return nil
		}
		m, err := durationMinutes(p.SedentaryPeriod.DurationSum)
		if err != nil {
			return err
		}
		s.SedentaryMinutes = &m
		return nil
	}},
}

// summary runs the nine dailyRollUp calls and the resting heart rate list for date, at once,
// and then fills the Summary from their answers in a fixed order.
func (s *Session) summary(ctx context.Context, date Date) (Summary, error) {
	var (
		sum    Summary
		points = make([]*healthapi.DailyRollupDataPoint, len(summaryFields))
		ops    = make([]string, len(summaryFields))
	)
	g, gctx := errgroup.WithContext(ctx)
	for i, f := range summaryFields {
		ops[i] = "dailyRollUp " + f.dataType + " " + date.String()
		g.Go(inSlot(gctx, func() (err error) { points[i], err = s.dailyRollUp(gctx, ops[i], f.dataType, date); return err }))
	}
	g.Go(inSlot(gctx, func() (err error) { sum.RestingHeartRate, err = s.restingHeartRate(gctx, date); return err }))
	if err := g.Wait(); err != nil {
		return Summary{}, err
	}
	for i, f := range summaryFields {
		if points[i] == nil {
			continue
		}
		if err := f.apply(points[i], &sum); err != nil {
			return Summary{}, &Error{Kind: KindMalformed, Op: ops[i], Err: err}
		}
	}
	return sum, nil
}

// dailyRollUp returns the one window of dataType for date, or nil when the API returned none.
func (s *Session) dailyRollUp(ctx context.Context, op, dataType string, date Date) (*healthapi.DailyRollupDataPoint, error) {
	var found *healthapi.DailyRollupDataPoint
	next := date.AddDays(1)
	err := pages(ctx, s, op,
		func(ctx context.Context, token string) (*healthapi.DailyRollUpDataPointsResponse, error) {
			// A fresh request per page: the generated call keeps a pointer to it.
			req := &healthapi.DailyRollUpDataPointsRequest{
				Range:          &healthapi.CivilTimeInterval{Start: civilMidnight(date), End: civilMidnight(next)},
				WindowSizeDays: 1,
				PageToken:      token,
			}
			return s.c.svc.Users.DataTypes.DataPoints.DailyRollUp("users/me/dataTypes/"+dataType, req).Context(ctx).Do()
		},
		func(r *healthapi.DailyRollUpDataPointsResponse) (string, error) {
			for _, p := range r.RollupDataPoints {
				if p == nil {
					continue
				}
				start, err := civilDay(p.CivilStartTime)
				if err != nil {
					return "", fmt.Errorf("civilStartTime: %w", err)
				}
				if start != date {
					return "", fmt.Errorf("window %s outside the requested day %s", start, date)
				}
				if p.CivilEndTime != nil {
					end, err := civilDay(p.CivilEndTime)
					if err != nil {
						return "", fmt.Errorf("civilEndTime: %w", err)
					}
					if end != next {
						return "", fmt.Errorf("window %s ends %s, want %s", start, end, next)
					}
				}
				if found != nil {
					return "", fmt.Errorf("two windows for %s", date)
				}
				found = p
			}
			return r.NextPageToken, nil
		})
	return found, err
}

// restingHeartRate lists daily-resting-heart-rate for [date, date+1) and returns the value of the
// point dated date, nil when there is none.
func (s *Session) restingHeartRate(ctx context.Context, date Date) (*int64, error) {
	op := "list daily-resting-heart-rate " + date.String()
	// Daily types accept only {t}.date filters (doc §12 item 3); snake_case member names (§1).
	filter := fmt.Sprintf(`daily_resting_heart_rate.date >= %q AND daily_resting_heart_rate.date < %q`,
		date.String(), date.AddDays(1).String())
	var found *int64
	err := pages(ctx, s, op,
		func(ctx context.Context, token string) (*healthapi.ListDataPointsResponse, error) {
			c := s.c.svc.Users.DataTypes.DataPoints.List("users/me/dataTypes/daily-resting-heart-rate").Filter(filter).Context(ctx)
			if token != "" {
				c = c.PageToken(token)
			}
			return c.Do()
		},
		func(r *healthapi.ListDataPointsResponse) (string, error) {
			for _, dp := range r.DataPoints {
				if dp == nil || dp.DailyRestingHeartRate == nil {
					continue
				}
				v := dp.DailyRestingHeartRate
				d, err := apiDate(v.Date)
				if err != nil {
					return "", fmt.Errorf("date: %w", err)
				}
				if d != date {
					return "", fmt.Errorf("point dated %s outside the filter for %s", d, date)
				}
				if v.BeatsPerMinute < 0 || v.BeatsPerMinute > maxBPM {
					return "", fmt.Errorf("beatsPerMinute %d out of range", v.BeatsPerMinute)
				}
				// Points come newest first ([proto]); several sources may report the same date:
				// the first is kept.
				if found == nil {
					bpm := v.BeatsPerMinute
					found = &bpm
				}
			}
			return r.NextPageToken, nil
		})
	return found, err
}

// heartRate returns the 1-minute heart rate windows with data in [start, end).
func (s *Session) heartRate(ctx context.Context, start, end time.Time) ([]HeartRate, error) {
	var out []HeartRate
	err := s.rollUp(ctx, "heart-rate", start, end, heartRateWindow, func(t time.Time, p *healthapi.RollupDataPoint) error {
		v := p.HeartRate
		if v == nil {
			return nil
		}
		hr := HeartRate{Start: t, Avg: v.BeatsPerMinuteAvg, Min: v.BeatsPerMinuteMin, Max: v.BeatsPerMinuteMax}
		if err := checkHeartRate(hr); err != nil {
			return err
		}
		out = append(out, hr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// steps returns the 5-minute step windows with data in [start, end).
func (s *Session) steps(ctx context.Context, start, end time.Time) ([]Steps, error) {
	var out []Steps
	err := s.rollUp(ctx, "steps", start, end, stepsWindow, func(t time.Time, p *healthapi.RollupDataPoint) error {
		if p.Steps == nil {
			return nil
		}
		if p.Steps.CountSum < 0 {
			return fmt.Errorf("window %s: negative countSum", t.Format(time.RFC3339))
		}
		out = append(out, Steps{Start: t, Count: p.Steps.CountSum})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// calories returns the 5-minute total-calories windows with data in [start, end).
func (s *Session) calories(ctx context.Context, start, end time.Time) ([]Calories, error) {
	var out []Calories
	err := s.rollUp(ctx, "total-calories", start, end, caloriesWindow, func(t time.Time, p *healthapi.RollupDataPoint) error {
		if p.TotalCalories == nil {
			return nil
		}
		k := p.TotalCalories.KcalSum
		if !finiteNonNeg(k) {
			return fmt.Errorf("window %s: kcalSum %v", t.Format(time.RFC3339), k)
		}
		out = append(out, Calories{Start: t, Kcal: k})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// rollUp fetches all pages of dataType rolled up in windows of w over [start, end) and calls add
// for each window in ascending order of start, after checking that every window is well formed,
// inside the range, aligned to start and unique.
func (s *Session) rollUp(ctx context.Context, dataType string, start, end time.Time, w time.Duration,
	add func(t time.Time, p *healthapi.RollupDataPoint) error) error {
	op := fmt.Sprintf("rollUp %s %s..%s", dataType, start.Format(time.RFC3339), end.Format(time.RFC3339))
	type window struct {
		t time.Time
		p *healthapi.RollupDataPoint
	}
	var ws []window
	err := pages(ctx, s, op,
		func(ctx context.Context, token string) (*healthapi.RollUpDataPointsResponse, error) {
			req := &healthapi.RollUpDataPointsRequest{
				Range:      &healthapi.Interval{StartTime: start.UTC().Format(time.RFC3339), EndTime: end.UTC().Format(time.RFC3339)},
				WindowSize: fmt.Sprintf("%ds", int64(w/time.Second)),
				PageSize:   rollUpPageSize(start, end, w),
				PageToken:  token,
			}
			return s.c.svc.Users.DataTypes.DataPoints.RollUp("users/me/dataTypes/"+dataType, req).Context(ctx).Do()
		},
		func(r *healthapi.RollUpDataPointsResponse) (string, error) {
			for _, p := range r.RollupDataPoints {
				if p == nil {
					continue
				}
				t, err := windowStart(p, start, end, w)
				if err != nil {
					return "", err
				}
				ws = append(ws, window{t, p})
			}
			return r.NextPageToken, nil
		})
	if err != nil {
		return err
	}
	// The order of rollupDataPoints is not documented (doc §13 item 6): sort, then reject repeats.
	slices.SortFunc(ws, func(a, b window) int { return a.t.Compare(b.t) })
	for i, x := range ws {
		if i > 0 && x.t.Equal(ws[i-1].t) {
			return malformed(op, "window %s returned twice", x.t.Format(time.RFC3339))
		}
		if err := add(x.t, x.p); err != nil {
			return &Error{Kind: KindMalformed, Op: op, Err: err}
		}
	}
	return nil
}

// rollUpPageSize asks for every window of the range in one page (the API's default is 1440 and
// its maximum 10000, doc §5), so a 25-hour day's 1,500 heart-rate minutes are one call, not two.
// A server with a lower cap still pages, and pages are followed.
func rollUpPageSize(start, end time.Time, w time.Duration) int64 {
	n := int64((end.Sub(start) + w - 1) / w)
	return min(max(n, 1), 10000)
}

// windowStart parses and checks one rollUp window of size w requested over [start, end).
func windowStart(p *healthapi.RollupDataPoint, start, end time.Time, w time.Duration) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, p.StartTime)
	if err != nil {
		return time.Time{}, fmt.Errorf("unparseable window startTime %q", clip(p.StartTime))
	}
	if t.Before(start) || !t.Before(end) {
		return time.Time{}, fmt.Errorf("window %s outside the requested range", t.UTC().Format(time.RFC3339Nano))
	}
	if t.Sub(start)%w != 0 {
		return time.Time{}, fmt.Errorf("window %s not aligned to %s", t.UTC().Format(time.RFC3339Nano), w)
	}
	if p.EndTime != "" {
		e, err := time.Parse(time.RFC3339Nano, p.EndTime)
		if err != nil {
			return time.Time{}, fmt.Errorf("unparseable window endTime %q", clip(p.EndTime))
		}
		// The last window of a range that is not a multiple of w is cut at the range's end.
		if want := minTime(t.Add(w), end); !e.Equal(want) {
			return time.Time{}, fmt.Errorf("window %s ends %s, want %s", t.UTC().Format(time.RFC3339),
				e.UTC().Format(time.RFC3339Nano), want.UTC().Format(time.RFC3339))
		}
	}
	return t.UTC(), nil
}

// pages calls fetch with each page token until the server returns an empty one, passing every
// page to each, which returns the next token. Pages with no points but a token are followed
// (doc §5); a server that never stops is cut off after maxPages. An error from each is a
// malformed response.
func pages[R any](ctx context.Context, s *Session, op string,
	fetch func(ctx context.Context, token string) (*R, error), each func(*R) (string, error)) error {
	token := ""
	for n := 0; ; n++ {
		if n >= maxPages {
			return malformed(op, "more than %d pages", maxPages)
		}
		r, err := call(ctx, s, op, func(ctx context.Context) (*R, error) { return fetch(ctx, token) })
		if err != nil {
			return err
		}
		// Do never returns (nil, nil) for our bodies (normalise rejects "null"), but a nil page
		// must not panic the worker.
		if r == nil {
			return malformed(op, "empty response")
		}
		next, err := each(r)
		if err != nil {
			return &Error{Kind: KindMalformed, Op: op, Err: err}
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

// checkHeartRate rejects values no heart produces: non-finite, negative, above maxBPM, or an
// average outside [min, max] (allowing float rounding of the average).
func checkHeartRate(h HeartRate) error {
	for _, v := range []float64{h.Avg, h.Min, h.Max} {
		if !finiteNonNeg(v) || v > maxBPM {
			return fmt.Errorf("window %s: heart rate %v out of range", h.Start.Format(time.RFC3339), v)
		}
	}
	const eps = 1e-6
	if h.Min > h.Max || h.Avg < h.Min-eps || h.Avg > h.Max+eps {
		return fmt.Errorf("window %s: heart rate avg %v min %v max %v inconsistent", h.Start.Format(time.RFC3339), h.Avg, h.Min, h.Max)
	}
	return nil
}

// activeMinutes fills the three level fields; a present value sets all three (a level the API
// did not list had 0 minutes).
func activeMinutes(v *healthapi.ActiveMinutesRollupValue, s *Summary) error {
	var light, moderate, vigorous int64
	seen := map[string]bool{}
	for _, l := range v.ActiveMinutesRollupByActivityLevel {
		if l == nil {
			continue
		}
		if l.ActiveMinutesSum < 0 {
			return fmt.Errorf("activeMinutesSum %d for %s", l.ActiveMinutesSum, clip(l.ActivityLevel))
		}
		if seen[l.ActivityLevel] {
			return fmt.Errorf("activity level %s listed twice", clip(l.ActivityLevel))
		}
		seen[l.ActivityLevel] = true
		switch l.ActivityLevel {
		case "LIGHT":
			light = l.ActiveMinutesSum
		case "MODERATE":
			moderate = l.ActiveMinutesSum
		case "VIGOROUS":
			vigorous = l.ActiveMinutesSum
		}
		// Other levels (e.g. ACTIVITY_LEVEL_UNSPECIFIED) have no column.
	}
	s.LightMinutes, s.ModerateMinutes, s.VigorousMinutes = &light, &moderate, &vigorous
	return nil
}

// durationMinutes converts a proto3 JSON duration ("123s", "3.5s"; "" = 0) to whole minutes,
// rounded down.
func durationMinutes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if !strings.HasSuffix(s, "s") {
		return 0, fmt.Errorf("durationSum %q is not a duration", clip(s))
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("durationSum %q is not a non-negative duration", clip(s))
	}
	return int64(d / time.Minute), nil
}

func setCount(dst **int64, v int64, field string) error {
	if v < 0 {
		return fmt.Errorf("%s %d is negative", field, v)
	}
	*dst = &v
	return nil
}

func setMillis(dst **float64, mm int64, field string) error {
	if mm < 0 {
		return fmt.Errorf("%s %d is negative", field, mm)
	}
	m := float64(mm) / 1000
	*dst = &m
	return nil
}

func setKcal(dst **float64, kcal float64) error {
	if !finiteNonNeg(kcal) {
		return fmt.Errorf("kcalSum %v out of range", kcal)
	}
	*dst = &kcal
	return nil
}

func finiteNonNeg(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }

// civilMidnight is the request form of a civil date (time omitted = 00:00).
func civilMidnight(d Date) *healthapi.CivilDateTime {
	return &healthapi.CivilDateTime{Date: &healthapi.Date{Year: int64(d.Year), Month: int64(d.Month), Day: int64(d.Day)}}
}

// civilDay reads a dailyRollUp window bound, which must be a valid date at midnight.
func civilDay(c *healthapi.CivilDateTime) (Date, error) {
	if c == nil {
		return Date{}, errors.New("missing")
	}
	if t := c.Time; t != nil && (t.Hours != 0 || t.Minutes != 0 || t.Seconds != 0 || t.Nanos != 0) {
		return Date{}, errors.New("not at midnight")
	}
	return apiDate(c.Date)
}

// apiDate converts a google.type.Date, rejecting missing or impossible dates (2026-02-30).
func apiDate(d *healthapi.Date) (Date, error) {
	if d == nil {
		return Date{}, errors.New("missing date")
	}
	if d.Year < 1 || d.Year > 9999 || d.Month < 1 || d.Month > 12 || d.Day < 1 || d.Day > 31 {
		return Date{}, errors.New("impossible date")
	}
	out := Date{Year: int(d.Year), Month: time.Month(d.Month), Day: int(d.Day)}
	if out.AddDays(0) != out {
		return Date{}, errors.New("impossible date")
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// clip bounds server-provided text quoted in an error.
func clip(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}
