package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	healthapi "google.golang.org/api/health/v4"
)

func TestNormalise(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want       string
		truncated, notObject bool
	}{
		{name: "empty body means no data", in: "", want: "{}"},
		{name: "whitespace", in: " \n", want: "{}"},
		{name: "strings untouched", in: `{"rollupDataPoints":[{"steps":{"countSum":"5"}}]}`, want: `{"rollupDataPoints":[{"steps":{"countSum":"5"}}]}`},
		{name: "int64 numbers quoted", in: `{"rollupDataPoints":[{"steps":{"countSum":10500}},{"distance":{"millimetersSum":12}}]}`,
			want: `{"rollupDataPoints":[{"steps":{"countSum":"10500"}},{"distance":{"millimetersSum":"12"}}]}`},
		{name: "doubles and dates untouched", in: `{"a":{"kcalSum":5,"date":{"year":2026},"batteryLevel":85,"countSum":1.5}}`,
			want: `{"a":{"kcalSum":5,"date":{"year":2026},"batteryLevel":85,"countSum":1.5}}`},
		{name: "spaces, escapes and nesting", in: "{\"a\" : [ {\"count\":\t-7 , \"s\":\"x\\\"countSum\\\":1\"}, 3 ], \"count\\u0053um\": 9, \"beatsPerMinute\":99999999999999999999}",
			want: "{\"a\" : [ {\"count\":\t\"-7\" , \"s\":\"x\\\"countSum\\\":1\"}, 3 ], \"count\\u0053um\": \"9\", \"beatsPerMinute\":99999999999999999999}"},
		{name: "truncated", in: `{"rollupDataPoints":[{"steps":{"countSum":"5"`, truncated: true},
		{name: "not an object", in: `[1]`, notObject: true},
		{name: "null then garbage", in: `null x`, notObject: true},
		{name: "garbage passes through", in: `{"a":1}}garbage`, want: `{"a":1}}garbage`},
		{name: "not json passes through", in: `<html>`, want: `<html>`},
	} {
		got, err := normalise([]byte(tc.in))
		if tc.truncated {
			if !errors.Is(err, errTruncated) {
				t.Errorf("%s: err %v, want errTruncated", tc.name, err)
			}
			continue
		}
		if tc.notObject {
			if !errors.Is(err, errNotObject) {
				t.Errorf("%s: err %v, want errNotObject", tc.name, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: normalise = %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}

func TestWindowStart(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 7, 18, 15, 0, 0, time.UTC) // Kathmandu midnight
	end := start.Add(24 * time.Hour)
	w := 5 * time.Minute
	for _, tc := range []struct {
		name, s, e string
		ok         bool
	}{
		{"first", "2026-03-07T18:15:00Z", "2026-03-07T18:20:00Z", true},
		{"offset notation", "2026-03-08T00:00:00+05:45", "", true},
		{"last", "2026-03-08T18:10:00Z", "2026-03-08T18:15:00Z", true},
		{"before range", "2026-03-07T18:10:00Z", "", false},
		{"at end", "2026-03-08T18:15:00Z", "", false},
		{"not aligned", "2026-03-07T18:17:00Z", "", false},
		{"wrong end", "2026-03-07T18:15:00Z", "2026-03-07T18:16:00Z", false},
		{"bad start", "yesterday", "", false},
		{"missing start", "", "", false},
		{"bad end", "2026-03-07T18:15:00Z", "soon", false},
	} {
		got, err := windowStart(&healthapi.RollupDataPoint{StartTime: tc.s, EndTime: tc.e}, start, end, w)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err == nil && got.Location() != time.UTC {
			t.Errorf("%s: start not in UTC", tc.name)
		}
	}
	// A range that is not a multiple of the window ends with a cut window.
	got, err := windowStart(&healthapi.RollupDataPoint{StartTime: "2026-03-07T18:15:00Z", EndTime: "2026-03-07T18:17:00Z"}, start, start.Add(2*time.Minute), w)
	if err != nil || !got.Equal(start) {
		t.Errorf("cut last window: %v, %v", got, err)
	}
}

func TestCheckHeartRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		h  HeartRate
		ok bool
	}{
		{HeartRate{Avg: 71.4, Min: 66, Max: 79}, true},
		{HeartRate{}, true}, // "heartRate": {} is a worn zero
		{HeartRate{Avg: 70, Min: 70, Max: 70}, true},
		{HeartRate{Avg: 70, Min: 80, Max: 60}, false},
		{HeartRate{Avg: 90, Min: 60, Max: 80}, false},
		{HeartRate{Avg: math.NaN(), Min: 60, Max: 80}, false},
		{HeartRate{Avg: 70, Min: -1, Max: 80}, false},
		{HeartRate{Avg: 700, Min: 600, Max: 800}, false},
		{HeartRate{Avg: math.Inf(1), Min: 60, Max: math.Inf(1)}, false},
	} {
		if err := checkHeartRate(tc.h); (err == nil) != tc.ok {
			t.Errorf("checkHeartRate(%+v) = %v, want ok=%v", tc.h, err, tc.ok)
		}
	}
}

func TestDurationMinutes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true}, {"0s", 0, true}, {"59s", 0, true}, {"60s", 1, true}, {"123s", 2, true},
		{"3599.999s", 59, true}, {"43200s", 720, true}, {"-60s", 0, false}, {"60", 0, false}, {"1m", 0, false}, {"xs", 0, false},
	} {
		got, err := durationMinutes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("durationMinutes(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestSummaryConversions applies each data type's converter to the value shapes the API sends.
func TestSummaryConversions(t *testing.T) {
	t.Parallel()
	p := &healthapi.DailyRollupDataPoint{
		Steps:              &healthapi.StepsRollupValue{CountSum: 10500},
		Distance:           &healthapi.DistanceRollupValue{MillimetersSum: 7_512_345},
		TotalCalories:      &healthapi.TotalCaloriesRollupValue{KcalSum: 2310.5},
		ActiveEnergyBurned: &healthapi.ActiveEnergyBurnedRollupValue{},
		Floors:             &healthapi.FloorsRollupValue{CountSum: 12},
		Altitude:           &healthapi.AltitudeRollupValue{GainMillimetersSum: 36_576},
		ActiveMinutes: &healthapi.ActiveMinutesRollupValue{ActiveMinutesRollupByActivityLevel: []*healthapi.ActiveMinutesRollupByActivityLevel{
			{ActivityLevel: "LIGHT", ActiveMinutesSum: 180}, {ActivityLevel: "VIGOROUS", ActiveMinutesSum: 25}, {ActivityLevel: "ACTIVITY_LEVEL_UNSPECIFIED", ActiveMinutesSum: 3}}},
		ActiveZoneMinutes: &healthapi.ActiveZoneMinutesRollupValue{SumInFatBurnHeartZone: 20, SumInCardioHeartZone: 14},
		SedentaryPeriod:   &healthapi.SedentaryPeriodRollupValue{DurationSum: "30659.5s"},
	}
	var got Summary
	for _, f := range summaryFields {
		if err := f.apply(p, &got); err != nil {
			t.Fatalf("%s: %v", f.dataType, err)
		}
	}
	want := Summary{
		Steps: ptr[int64](10500), DistanceM: ptr(7512.345), CaloriesTotal: ptr(2310.5), CaloriesActive: ptr(0.0),
		Floors: ptr[int64](12), ElevationGainM: ptr(36.576), SedentaryMinutes: ptr[int64](510),
		LightMinutes: ptr[int64](180), ModerateMinutes: ptr[int64](0), VigorousMinutes: ptr[int64](25),
		AZMFatBurn: ptr[int64](20), AZMCardio: ptr[int64](14), AZMPeak: ptr[int64](0),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}
	// Nothing reported: every field stays nil (NULL), none becomes 0.
	var none Summary
	for _, f := range summaryFields {
		if err := f.apply(&healthapi.DailyRollupDataPoint{}, &none); err != nil {
			t.Fatal(err)
		}
	}
	if d := cmp.Diff(Summary{}, none); d != "" {
		t.Errorf("absent values (-want +got):\n%s", d)
	}
	for _, bad := range []*healthapi.DailyRollupDataPoint{
		{Steps: &healthapi.StepsRollupValue{CountSum: -1}},
		{TotalCalories: &healthapi.TotalCaloriesRollupValue{KcalSum: math.NaN()}},
		{SedentaryPeriod: &healthapi.SedentaryPeriodRollupValue{DurationSum: "-5s"}},
		{ActiveMinutes: &healthapi.ActiveMinutesRollupValue{ActiveMinutesRollupByActivityLevel: []*healthapi.ActiveMinutesRollupByActivityLevel{
			{ActivityLevel: "LIGHT", ActiveMinutesSum: 1}, {ActivityLevel: "LIGHT", ActiveMinutesSum: 2}}}},
	} {
		var s Summary
		var errs []error
		for _, f := range summaryFields {
			errs = append(errs, f.apply(bad, &s))
		}
		if errors.Join(errs...) == nil {
			t.Errorf("impossible value accepted: %+v", bad)
		}
	}
}

func TestAPIDate(t *testing.T) {
	t.Parallel()
	if d, err := apiDate(&healthapi.Date{Year: 2026, Month: 12, Day: 3}); err != nil || d != (Date{2026, 12, 3}) {
		t.Errorf("apiDate = %v, %v", d, err)
	}
	for _, bad := range []*healthapi.Date{nil, {}, {Year: 2026, Month: 2, Day: 30}, {Year: 2026, Month: 13, Day: 1}, {Year: -1, Month: 1, Day: 1}} {
		if _, err := apiDate(bad); err == nil {
			t.Errorf("apiDate(%+v) accepted", bad)
		}
	}
	if _, err := civilDay(&healthapi.CivilDateTime{Date: &healthapi.Date{Year: 2026, Month: 1, Day: 1}, Time: &healthapi.TimeOfDay{Hours: 5}}); err == nil || !strings.Contains(err.Error(), "midnight") {
		t.Errorf("civilDay accepted a window not at midnight: %v", err)
	}
	if _, err := civilDay(&healthapi.CivilDateTime{Date: &healthapi.Date{Year: 2026, Month: 1, Day: 1}, Time: &healthapi.TimeOfDay{}}); err != nil {
		t.Errorf(`civilDay rejected "time": {}: %v`, err)
	}
}

// FuzzNormalise checks the one-pass rewrite against the obvious one (decode, quote integral
// int64 fields, compare as values) on every input that is a valid JSON object.
func FuzzNormalise(f *testing.F) {
	for _, s := range []string{`{"steps":{"countSum":10500}}`, `{"a":[{"count":-7,"x":"\"countSum\":1"}],"count\u0053um":9}`,
		`{"kcalSum":5,"countSum":1.5,"beatsPerMinute":1e3}`, `{"rollupDataPoints":[{"heartRate":{"beatsPerMinuteAvg":61.5}}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var want any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if !json.Valid(body) || dec.Decode(&want) != nil {
			return
		}
		if _, ok := want.(map[string]any); !ok {
			if _, err := normalise(body); !errors.Is(err, errNotObject) {
				t.Fatalf("non-object %q: err %v", body, err)
			}
			return
		}
		referenceQuote(want)
		got, err := normalise(body)
		if err != nil {
			t.Fatalf("normalise(%q): %v", body, err)
		}
		var have any
		dec = json.NewDecoder(bytes.NewReader(got))
		dec.UseNumber()
		if err := dec.Decode(&have); err != nil {
			t.Fatalf("normalise(%q) = %q, not JSON: %v", body, got, err)
		}
		if !reflect.DeepEqual(want, have) {
			t.Fatalf("normalise(%q) = %q (-reference +got):\n%s", body, got, cmp.Diff(want, have))
		}
	})
}

// referenceQuote is the decode-and-rewrite normalise used to do.
func referenceQuote(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if n, ok := e.(json.Number); ok && int64Keys[k] {
				if _, err := strconv.ParseInt(string(n), 10, 64); err == nil {
					x[k] = string(n)
				}
				continue
			}
			referenceQuote(e)
		}
	case []any:
		for _, e := range x {
			referenceQuote(e)
		}
	}
}
