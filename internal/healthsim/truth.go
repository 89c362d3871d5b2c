package healthsim

import (
	"time"
)

// HRWindow is one 1-minute heart-rate window with data.
type HRWindow struct {
	Start         time.Time
	Avg, Min, Max float64
}

// StepsWindow is one 5-minute steps window with data (a worn zero is present with Count 0).
type StepsWindow struct {
	Start time.Time
	Count int64
}

// CaloriesWindow is one 5-minute total-calories window with data.
type CaloriesWindow struct {
	Start time.Time
	Kcal  float64
}

// TruthDay is what the API serves now for one local day of a participant.
type TruthDay struct {
	Start, End time.Time // UTC instants of local midnight and the next local midnight (23/24/25 h)
	HeartRate  []HRWindow
	Steps      []StepsWindow
	Calories   []CaloriesWindow
	// Summary has every daily_summaries column as a key: steps, distance_m, calories_total,
	// calories_active, floors, elevation_gain_m, resting_heart_rate, sedentary_minutes,
	// light_minutes, moderate_minutes, vigorous_minutes, azm_fat_burn, azm_cardio, azm_peak.
	// nil = the API does not report it (no data that day, or resting HR not derived yet).
	Summary map[string]*float64
}

// SummaryKeys are the keys of TruthDay.Summary, in daily_summaries column order.
func SummaryKeys() []string {
	return []string{"steps", "distance_m", "calories_total", "calories_active", "floors", "elevation_gain_m",
		"resting_heart_rate", "sedentary_minutes", "light_minutes", "moderate_minutes", "vigorous_minutes",
		"azm_fat_burn", "azm_cardio", "azm_peak"}
}

// Truth is exactly what the API answers now for the participant's local day: rollUp heart-rate at
// 60s and steps/total-calories at 300s over [Start, End) (windows with data only), the nine
// dailyRollUps and the resting-heart-rate list. Same code path as the handlers, at the same clock.
// An unknown participant gives the zero TruthDay.
func (s *Server) Truth(legacyID string, year int, month time.Month, day int) TruthDay {
	now := s.now()
	s.mu.Lock()
	p := s.byLegacy[legacyID]
	if p == nil {
		s.mu.Unlock()
		return TruthDay{}
	}
	pd, lastSync := p.data, s.lastSyncLocked(p, now)
	s.mu.Unlock()

	c := civilOf(time.Date(year, month, day, 12, 0, 0, 0, time.UTC), time.UTC) // normalises e.g. Jan 32
	v := newView(s.opts.Seed, pd, &s.days, lastSync)
	td := TruthDay{Start: c.start(pd.loc), End: c.add(1).start(pd.loc), Summary: make(map[string]*float64)}
	for t := td.Start; t.Before(td.End); t = t.Add(time.Minute) {
		if m := v.at(t); m != nil && m.worn() {
			var a agg
			a.add(m)
			td.HeartRate = append(td.HeartRate, HRWindow{Start: t, Avg: a.hrAvg(), Min: float64(a.hrMin), Max: float64(a.hrMax)})
		}
	}
	for t := td.Start; t.Before(td.End); t = t.Add(5 * time.Minute) {
		end := t.Add(5 * time.Minute)
		if end.After(td.End) {
			end = td.End
		}
		if a := v.window(t, end); a.worn > 0 {
			td.Steps = append(td.Steps, StepsWindow{Start: t, Count: a.steps})
			td.Calories = append(td.Calories, CaloriesWindow{Start: t, Kcal: kcal(a.kcalMilli)})
		}
	}
	for _, k := range SummaryKeys() {
		td.Summary[k] = nil
	}
	a := v.dayAgg(c)
	if a.worn > 0 {
		f := func(x float64) *float64 { return &x }
		td.Summary["steps"] = f(float64(a.steps))
		td.Summary["distance_m"] = f(float64(a.distMM) / 1000)
		td.Summary["calories_total"] = f(kcal(a.kcalMilli))
		td.Summary["calories_active"] = f(kcal(a.activeMilli))
		td.Summary["floors"] = f(float64(a.floors))
		td.Summary["elevation_gain_m"] = f(float64(a.altMM) / 1000)
		td.Summary["sedentary_minutes"] = f(float64(a.levels[lvlSedentary]))
		td.Summary["light_minutes"] = f(float64(a.levels[lvlLight]))
		td.Summary["moderate_minutes"] = f(float64(a.levels[lvlModerate]))
		td.Summary["vigorous_minutes"] = f(float64(a.levels[lvlVigorous]))
		td.Summary["azm_fat_burn"] = f(float64(a.azmFat))
		td.Summary["azm_cardio"] = f(float64(a.azmCardio))
		td.Summary["azm_peak"] = f(float64(a.azmPeak))
	}
	if rhr := v.restingHR(c); rhr > 0 {
		x := float64(rhr)
		td.Summary["resting_heart_rate"] = &x
	}
	return td
}
