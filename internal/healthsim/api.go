package healthsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// typeInfo describes a data type the simulator knows.
type typeInfo struct {
	scope    string
	maxDays  int  // roll-up range cap
	data     bool // the world records it (others answer "no data")
	dailyMax int  // dailyRollUp page cap (90, or 14 for the 14-day types)
}

// dataTypes are the path names of health-api.json. Caps per its RollUpDataPointsRequest.range.
var dataTypes = func() map[string]typeInfo {
	m := map[string]typeInfo{}
	for _, t := range []string{"steps", "distance", "floors", "altitude", "active-energy-burned", "active-zone-minutes", "sedentary-period"} {
		m[t] = typeInfo{scope: ScopeActivity, maxDays: 90, data: true, dailyMax: 90}
	}
	for _, t := range []string{"total-calories", "active-minutes"} {
		m[t] = typeInfo{scope: ScopeActivity, maxDays: 14, data: true, dailyMax: 14}
	}
	m["heart-rate"] = typeInfo{scope: ScopeHealthMetrics, maxDays: 14, data: true, dailyMax: 14}
	m["daily-resting-heart-rate"] = typeInfo{scope: ScopeHealthMetrics, maxDays: 90, data: true, dailyMax: 90}
	m["calories-in-heart-rate-zone"] = typeInfo{scope: ScopeActivity, maxDays: 14, dailyMax: 14}
	for _, t := range []string{"activity-level", "basal-energy-burned", "exercise", "swim-lengths-data", "time-in-heart-rate-zone", "run-vo2-max", "vo2-max", "daily-vo2-max"} {
		m[t] = typeInfo{scope: ScopeActivity, maxDays: 90, dailyMax: 90}
	}
	for _, t := range []string{"weight", "height", "body-fat", "heart-rate-variability", "daily-heart-rate-variability", "daily-heart-rate-zones",
		"oxygen-saturation", "daily-oxygen-saturation", "daily-respiratory-rate", "respiratory-rate-sleep-summary", "blood-glucose",
		"core-body-temperature", "daily-sleep-temperature-derivations"} {
		m[t] = typeInfo{scope: ScopeHealthMetrics, maxDays: 90, dailyMax: 90}
	}
	m["sleep"] = typeInfo{scope: scopePrefix + "sleep.readonly", maxDays: 90, dailyMax: 90}
	for _, t := range []string{"hydration-log", "nutrition-log", "food"} {
		m[t] = typeInfo{scope: scopePrefix + "nutrition.readonly", maxDays: 90, dailyMax: 90}
	}
	return m
}()

func hasScope(granted []string, need string) bool {
	for _, g := range granted {
		if g == need || g == strings.TrimSuffix(need, ".readonly") {
			return true
		}
	}
	return false
}

func anyHealthScope(granted []string) bool {
	return slices.ContainsFunc(granted, func(g string) bool { return strings.HasPrefix(g, scopePrefix) })
}

// route is a parsed /v4 path.
type route struct {
	endpoint string // counter name
	user     string
	kind     string // identity, settings, devices, device, list, rollUp, dailyRollUp, reconcile, point
	dataType string
	id       string
}

func parseRoute(method, rest string) route {
	seg := strings.Split(rest, "/")
	if len(seg) < 3 || seg[0] != "users" || seg[1] == "" {
		return route{endpoint: "other"}
	}
	rt := route{user: seg[1], endpoint: "other"}
	get, post := method == http.MethodGet, method == http.MethodPost
	switch {
	case len(seg) == 3 && seg[2] == "identity" && get:
		rt.kind, rt.endpoint = "identity", "identity"
	case len(seg) == 3 && seg[2] == "settings" && get:
		rt.kind, rt.endpoint = "settings", "settings"
	case len(seg) == 3 && seg[2] == "pairedDevices" && get:
		rt.kind, rt.endpoint = "devices", "pairedDevices"
	case len(seg) == 4 && seg[2] == "pairedDevices" && get && seg[3] != "":
		rt.kind, rt.endpoint, rt.id = "device", "pairedDevices", seg[3]
	case len(seg) >= 5 && seg[2] == "dataTypes" && seg[3] != "":
		rt.dataType = seg[3]
		switch {
		case len(seg) == 5 && seg[4] == "dataPoints" && get:
			rt.kind, rt.endpoint = "list", "list"
		case len(seg) == 5 && seg[4] == "dataPoints:rollUp" && post:
			rt.kind, rt.endpoint = "rollUp", "rollUp"
		case len(seg) == 5 && seg[4] == "dataPoints:dailyRollUp" && post:
			rt.kind, rt.endpoint = "dailyRollUp", "dailyRollUp"
		case len(seg) == 5 && seg[4] == "dataPoints:reconcile" && get:
			rt.kind, rt.endpoint = "reconcile", "list"
		case len(seg) == 6 && seg[4] == "dataPoints" && get && seg[5] != "":
			rt.kind, rt.endpoint, rt.id = "point", "list", seg[5]
		}
	}
	return rt
}

// reqCtx is what a data handler needs, snapshotted under the lock.
type reqCtx struct {
	pd       *pdata
	scopes   []string
	lastSync time.Time
	now      time.Time
}

func (s *Server) authLocked(r *http.Request, now time.Time) (*accessToken, *participant, *reply) {
	// The scheme is case-insensitive (RFC 7235).
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		rp := rpcError(http.StatusUnauthorized, "UNAUTHENTICATED",
			"Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
			"CREDENTIALS_MISSING")
		rp.header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
		return nil, nil, &rp
	}
	at := s.access[tok]
	if at == nil {
		rp := errUnauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED")
		return nil, nil, &rp
	}
	if at.g.revoked || !now.Before(at.expiry) {
		rp := errUnauthenticated("ACCESS_TOKEN_EXPIRED")
		return nil, at.g.p, &rp
	}
	return at, at.g.p, nil
}

// serveData answers /v4/...: authenticate, count, quota, fault, then the endpoint.
func (s *Server) serveData(w http.ResponseWriter, r *http.Request) {
	rt := parseRoute(r.Method, strings.TrimPrefix(r.URL.Path, "/v4/"))
	now := s.now()
	s.mu.Lock()
	at, p, authErr := s.authLocked(r, now)
	s.countLocked(p, rt.endpoint)
	if authErr != nil {
		s.mu.Unlock()
		writeReply(w, *authErr)
		return
	}
	at.pair.used()
	if ok, wait := s.takeQuotaLocked(p, now); !ok {
		s.stats.RateLimited++
		s.mu.Unlock()
		writeReply(w, errRateLimited(wait))
		return
	}
	fault := s.pickFaultLocked(p, r.URL.Path, true)
	c := reqCtx{pd: p.data, scopes: at.g.scopes, lastSync: s.lastSyncLocked(p, now), now: now}
	s.mu.Unlock()
	if applyFault(r.Context(), w, fault) {
		return
	}
	sendWithFault(w, s.answer(r, rt, c), fault)
}

func (s *Server) answer(r *http.Request, rt route, c reqCtx) reply {
	if rt.kind == "" {
		return errNotFound()
	}
	if rt.user != "me" && rt.user != c.pd.HealthUserID {
		return rpcError(http.StatusForbidden, "PERMISSION_DENIED", "Permission denied on resource users/"+rt.user+" (or it may not exist).", "")
	}
	switch rt.kind {
	case "identity":
		if !anyHealthScope(c.scopes) {
			return errScope()
		}
		return jsonReply(http.StatusOK, jIdentity{Name: "users/me/identity", LegacyUserID: c.pd.LegacyUserID, HealthUserID: c.pd.HealthUserID})
	case "settings":
		if !hasScope(c.scopes, ScopeSettings) {
			return errScope()
		}
		return jsonReply(http.StatusOK, settingsOf(c.pd, c.now))
	case "devices", "device":
		if !hasScope(c.scopes, ScopeSettings) {
			return errScope()
		}
		return s.devices(r, rt, c)
	}
	ti, ok := dataTypes[rt.dataType]
	if !ok {
		return rpcError(http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("Invalid data type %q in parent users/%s/dataTypes/%s", rt.dataType, rt.user, rt.dataType), "INVALID_PARENT_DATA_TYPE_COLLECTION")
	}
	if !hasScope(c.scopes, ti.scope) {
		return errScope()
	}
	switch rt.kind {
	case "rollUp":
		return s.rollUp(r, rt.dataType, ti, c)
	case "dailyRollUp":
		return s.dailyRollUp(r, rt.dataType, ti, c)
	case "list":
		return s.list(r, rt.dataType, c)
	}
	return rpcError(http.StatusNotImplemented, "UNIMPLEMENTED", "healthsim does not implement this method", "")
}

func settingsOf(pd *pdata, now time.Time) jSettings {
	_, off := now.In(pd.loc).Zone()
	st := jSettings{
		Name:                    "users/me/settings",
		AutoStrideEnabled:       true,
		DistanceUnit:            "DISTANCE_UNIT_KILOMETERS",
		GlucoseUnit:             "GLUCOSE_UNIT_MMOL_L",
		HeightUnit:              "HEIGHT_UNIT_CENTIMETERS",
		LanguageLocale:          pd.locale,
		FoodLanguageCode:        strings.ReplaceAll(pd.locale, "_", "-"),
		StrideLengthRunningType: "STRIDE_LENGTH_TYPE_DEFAULT",
		StrideLengthWalkingType: "STRIDE_LENGTH_TYPE_DEFAULT",
		SwimUnit:                "SWIM_UNIT_METERS",
		TemperatureUnit:         "TEMPERATURE_UNIT_CELSIUS",
		TimeZone:                pd.TimeZone,
		UtcOffset:               protoDuration(int64(off)),
		WaterUnit:               "WATER_UNIT_ML",
		WeightUnit:              "WEIGHT_UNIT_KILOGRAMS",
	}
	if pd.distanceMiles {
		st.DistanceUnit, st.HeightUnit, st.TemperatureUnit = "DISTANCE_UNIT_MILES", "HEIGHT_UNIT_INCHES", "TEMPERATURE_UNIT_FAHRENHEIT"
		st.WaterUnit, st.WeightUnit, st.GlucoseUnit = "WATER_UNIT_FL_OZ", "WEIGHT_UNIT_POUNDS", "GLUCOSE_UNIT_MG_DL"
	}
	return st
}

var trackerFeatures = []string{"STEPS", "HEART_RATE", "CALORIES", "DISTANCE", "ELEVATION", "ACTIVE_ZONE_MINUTES", "SEDENTARY_TIME", "SLEEP", "ALARMS"}

func batteryStatus(level int) string {
	switch {
	case level >= 60:
		return "High"
	case level >= 25:
		return "Medium"
	case level >= 10:
		return "Low"
	}
	return "Empty"
}

func mac(id int64) string {
	h := hash64(0, "mac", strconv.FormatInt(id, 10), 0)
	return fmt.Sprintf("%02X:%02X:%02X:%02X:%02X:%02X", byte(h), byte(h>>8), byte(h>>16), byte(h>>24), byte(h>>32), byte(h>>40))
}

// deviceList is the participant's paired devices: retired trackers first, then a scale if any, the
// current tracker last (so a client that reads only the first page misses it).
func deviceList(seed int64, pd *pdata, lastSync time.Time) []jDevice {
	var out []jDevice
	for k := 1; k <= pd.oldDevices; k++ {
		id := pd.deviceID - int64(k)*7919
		out = append(out, jDevice{
			Name: fmt.Sprintf("users/me/pairedDevices/%d", id), DeviceType: "TRACKER", BatteryStatus: "Empty",
			DeviceVersion: deviceModels[(k+3)%len(deviceModels)], Features: trackerFeatures, MacAddress: mac(id),
			LastSyncTime: ts(lastSync.Add(-time.Duration(30+45*k) * 24 * time.Hour).Truncate(time.Second)),
		})
	}
	if pd.scale {
		id := pd.deviceID + 17
		h := hash64(seed, "scale", pd.LegacyUserID, lastSync.Unix()/86400)
		out = append(out, jDevice{
			Name: fmt.Sprintf("users/me/pairedDevices/%d", id), DeviceType: "SCALE", BatteryStatus: "High", BatteryLevel: 90,
			DeviceVersion: "Aria Air", MacAddress: mac(id),
			LastSyncTime: ts(lastSync.Add(-time.Duration(1+h%48) * time.Hour).Truncate(time.Second)),
		})
	}
	level := 15 + int(hash64(seed, "battery", pd.LegacyUserID, lastSync.Unix()/3600)%86)
	cur := jDevice{
		Name: fmt.Sprintf("users/me/pairedDevices/%d", pd.deviceID), DeviceType: "TRACKER",
		BatteryLevel: level, BatteryStatus: batteryStatus(level), DeviceVersion: pd.model,
		Features: trackerFeatures, MacAddress: mac(pd.deviceID),
	}
	if !lastSync.IsZero() {
		cur.LastSyncTime = ts(lastSync)
	}
	return append(out, cur)
}

func (s *Server) devices(r *http.Request, rt route, c reqCtx) reply {
	list := deviceList(s.opts.Seed, c.pd, c.lastSync)
	if rt.kind == "device" {
		for _, d := range list {
			if d.Name == "users/me/pairedDevices/"+rt.id {
				return jsonReply(http.StatusOK, d)
			}
		}
		return errNotFound()
	}
	q := r.URL.Query()
	ps, bad := queryPageSize(q.Get("pageSize"), 5, 100)
	if bad != nil {
		return *bad
	}
	from, to, next, ok := paginate(q.Get("pageToken"), reqHash("pairedDevices"), len(list), ps, false)
	if !ok {
		return invalidArgument("page_token", "Invalid page token.")
	}
	return jsonReply(http.StatusOK, jDevices{PairedDevices: list[from:to], Next: next})
}

// queryPageSize reads pageSize (or page_size, which the API also accepts).
func queryPageSize(v string, def, maxSize int) (int, *reply) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		rp := invalidArgument("page_size", "page_size must be a non-negative integer")
		return 0, &rp
	}
	if n == 0 {
		return def, nil
	}
	return min(n, maxSize), nil
}

func reqHash(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// Page tokens are opaque to clients. They bind the request (every other parameter must stay the
// same while paging) and carry an offset; with EmptyPages a token may ask for an empty page first.
func encodeToken(h uint64, off int, empty bool) string {
	e := 0
	if empty {
		e = 1
	}
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "hs1|%x|%d|%d", h, off, e))
}

func decodeToken(tok string, h uint64) (off int, empty bool, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, false, false
	}
	var hh uint64
	var e int
	if _, err := fmt.Sscanf(string(b), "hs1|%x|%d|%d", &hh, &off, &e); err != nil || hh != h || off < 0 {
		return 0, false, false
	}
	return off, e == 1, true
}

// paginate picks the slice [from, to) of n items this request serves. With empties every data page
// is preceded by an empty page carrying a token, as peers observed (reference §5).
func paginate(tok string, h uint64, n, size int, empties bool) (from, to int, next string, ok bool) {
	off, empty := 0, empties
	if tok != "" {
		var good bool
		if off, empty, good = decodeToken(tok, h); !good || off > n {
			return 0, 0, "", false
		}
	}
	if empty {
		return off, off, encodeToken(h, off, false), true
	}
	to = min(off+size, n)
	if to < n {
		next = encodeToken(h, to, empties)
	}
	return off, to, next, true
}

// effectivePage applies the API's default/maximum and the simulator's cap (Options.PageSize).
func (s *Server) effectivePage(req flexInt, def, maxSize int) (int, *reply) {
	if req < 0 {
		rp := invalidArgument("page_size", "page_size must not be negative")
		return 0, &rp
	}
	n := int(req)
	if n == 0 {
		n = def
	}
	return min(n, maxSize, s.opts.PageSize), nil
}

func decodeStrict(r *http.Request, v any) *reply {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		rp := invalidArgument("", "Invalid JSON payload received. "+err.Error())
		return &rp
	}
	return nil
}

func validFamily(f string) bool {
	if f == "" {
		return true
	}
	rest, ok := strings.CutPrefix(f, "users/")
	if !ok {
		return false
	}
	_, fam, ok := strings.Cut(rest, "/dataSourceFamilies/")
	switch fam {
	case "all-sources", "google-wearables", "google-sources", "self-sources":
		return ok
	}
	return false
}

// setValue puts the aggregate into the type's value key. A window without worn minutes gets no key
// ("no data"); zero sums are omitted, leaving an empty object ("worn, recorded zero").
func setValue(typ string, pt *jPoint, a *agg) {
	if a.worn == 0 {
		return
	}
	switch typ {
	case "heart-rate":
		pt.HeartRate = &jHeartRate{Avg: a.hrAvg(), Min: float64(a.hrMin), Max: float64(a.hrMax)}
	case "steps":
		pt.Steps = &jCountSum{CountSum: a.steps}
	case "floors":
		pt.Floors = &jCountSum{CountSum: a.floors}
	case "distance":
		pt.Distance = &jDistance{MillimetersSum: a.distMM}
	case "altitude":
		pt.Altitude = &jAltitude{GainMillimetersSum: a.altMM}
	case "total-calories":
		pt.TotalCalories = &jKcal{KcalSum: kcal(a.kcalMilli)}
	case "active-energy-burned":
		pt.ActiveEnergyBurned = &jKcal{KcalSum: kcal(a.activeMilli)}
	case "active-minutes":
		pt.ActiveMinutes = &jActiveMinutes{ByLevel: []jLevelSum{
			{ActivityLevel: "LIGHT", ActiveMinutesSum: a.levels[lvlLight]},
			{ActivityLevel: "MODERATE", ActiveMinutesSum: a.levels[lvlModerate]},
			{ActivityLevel: "VIGOROUS", ActiveMinutesSum: a.levels[lvlVigorous]},
		}}
	case "active-zone-minutes":
		pt.ActiveZoneMinutes = &jAZM{FatBurn: a.azmFat, Cardio: a.azmCardio, Peak: a.azmPeak}
	case "sedentary-period":
		sd := &jSedentary{}
		if n := a.levels[lvlSedentary]; n > 0 {
			sd.DurationSum = protoDuration(n * 60)
		}
		pt.SedentaryPeriod = sd
	}
}

func kcal(milli int64) float64 { return float64(milli) / 1000 }

// rollUp serves :rollUp. Windows are aligned to the range start, the last one truncated at the
// range end (health-api.json); windows starting after the device's last sync are omitted (not yet
// uploaded: the reference's §13 item 6 leaves this open).
func (s *Server) rollUp(r *http.Request, typ string, ti typeInfo, c reqCtx) reply {
	var req rollUpRequest
	if bad := decodeStrict(r, &req); bad != nil {
		return *bad
	}
	if req.Range == nil {
		return invalidArgument("range", "range is required")
	}
	start, err1 := time.Parse(time.RFC3339Nano, req.Range.StartTime)
	end, err2 := time.Parse(time.RFC3339Nano, req.Range.EndTime)
	if err1 != nil || err2 != nil {
		return invalidArgument("range", "range.start_time and range.end_time must be RFC 3339 timestamps")
	}
	start, end = start.UTC(), end.UTC()
	if !end.After(start) {
		return invalidArgument("range", "range.end_time must be after range.start_time")
	}
	if end.Sub(start) > time.Duration(ti.maxDays)*24*time.Hour {
		return invalidArgument("range", fmt.Sprintf("The maximum range for %s is %d days.", typ, ti.maxDays))
	}
	ws, ok := parseProtoDuration(req.WindowSize)
	if !ok {
		return invalidArgument("window_size", "window_size is required, as a duration such as \"300s\"")
	}
	if ws < time.Second {
		return invalidArgument("window_size", "window_size must be at least 1 second")
	}
	if !validFamily(req.DataSourceFamily) {
		return invalidFilter("INVALID_DATA_POINT_DATA_SOURCE_FAMILY", "Invalid data source family "+strconv.Quote(req.DataSourceFamily))
	}
	if typ == "daily-resting-heart-rate" {
		return invalidArgument("parent", "daily-resting-heart-rate does not support rollUp; use list or dailyRollUp")
	}
	size, bad := s.effectivePage(req.PageSize, 1440, 10000)
	if bad != nil {
		return *bad
	}
	total := int((end.Sub(start) + ws - 1) / ws)
	visible := 0
	if cut := c.lastSync.Truncate(time.Minute); ti.data && cut.After(start) {
		visible = min(total, int((cut.Sub(start)+ws-1)/ws))
	}
	h := reqHash("rollUp", typ, ts(start), ts(end), req.WindowSize, req.DataSourceFamily)
	from, to, next, ok := paginate(req.PageToken, h, visible, size, s.opts.EmptyPages)
	if !ok {
		return invalidArgument("page_token", "Invalid page token: every other request field must match the first request.")
	}
	v := newView(s.opts.Seed, c.pd, &s.days, c.lastSync)
	resp := jRollupResponse{Next: next}
	if to > from {
		resp.Points = make([]jPoint, 0, to-from)
	}
	for k := from; k < to; k++ {
		wStart := start.Add(time.Duration(k) * ws)
		wEnd := wStart.Add(ws)
		if wEnd.After(end) {
			wEnd = end
		}
		pt := jPoint{StartTime: ts(wStart), EndTime: ts(wEnd)}
		a := v.window(wStart, wEnd)
		setValue(typ, &pt, &a)
		resp.Points = append(resp.Points, pt)
	}
	return jsonReply(http.StatusOK, resp)
}

func (ci *civilIn) date() (civil, string) {
	if ci == nil || ci.Date == nil {
		return civil{}, "a date is required"
	}
	d := ci.Date
	t := time.Date(d.Year, time.Month(d.Month), d.Day, 0, 0, 0, 0, time.UTC)
	if d.Year < 1 || d.Year > 9999 || t.Year() != d.Year || int(t.Month()) != d.Month || t.Day() != d.Day {
		return civil{}, fmt.Sprintf("invalid date %04d-%02d-%02d", d.Year, d.Month, d.Day)
	}
	if tm := ci.Time; tm != nil && (tm.Hours != 0 || tm.Minutes != 0 || tm.Seconds != 0 || tm.Nanos != 0) {
		return civil{}, "the range must be aligned with the aggregation window (whole days)"
	}
	return civil{d.Year, time.Month(d.Month), d.Day}, ""
}

// dailyRollUp serves :dailyRollUp over civil days in the participant's zone. Windows without any
// worn minute are omitted, so a day without data answers 200 with an empty body {} (observed).
func (s *Server) dailyRollUp(r *http.Request, typ string, ti typeInfo, c reqCtx) reply {
	var req dailyRollUpRequest
	if bad := decodeStrict(r, &req); bad != nil {
		return *bad
	}
	if req.Range == nil {
		return invalidArgument("range", "range is required")
	}
	from, msg1 := req.Range.Start.date()
	until, msg2 := req.Range.End.date()
	if msg1 != "" {
		return invalidArgument("range.start", msg1)
	}
	if msg2 != "" {
		return invalidArgument("range.end", msg2)
	}
	days := int(until.ord() - from.ord())
	if days <= 0 {
		return invalidArgument("range", "range.end must be after range.start")
	}
	if days > ti.maxDays {
		return invalidArgument("range", fmt.Sprintf("The maximum range for %s is %d days.", typ, ti.maxDays))
	}
	if req.WindowSizeDays < 0 {
		return invalidArgument("window_size_days", "window_size_days must be positive")
	}
	wsd := max(int(req.WindowSizeDays), 1)
	if !validFamily(req.DataSourceFamily) {
		return invalidFilter("INVALID_DATA_POINT_DATA_SOURCE_FAMILY", "Invalid data source family "+strconv.Quote(req.DataSourceFamily))
	}
	size, bad := s.effectivePage(req.PageSize, ti.dailyMax, ti.dailyMax)
	if bad != nil {
		return *bad
	}
	total := (days + wsd - 1) / wsd
	h := reqHash("dailyRollUp", typ, from.String(), until.String(), strconv.Itoa(wsd), req.DataSourceFamily)
	// No empty pages here: the proto's DailyRollUpDataPointsResponse has no token (reference §5).
	lo, hi, next, ok := paginate(req.PageToken, h, total, size, false)
	if !ok {
		return invalidArgument("page_token", "Invalid page token: every other request field must match the first request.")
	}
	v := newView(s.opts.Seed, c.pd, &s.days, c.lastSync)
	resp := jRollupResponse{Next: next}
	for k := lo; k < hi; k++ {
		wFrom := from.add(k * wsd)
		wTo := from.add(min((k+1)*wsd, days))
		pt := jPoint{CivilStartTime: &jCivilDateTime{Date: dateJSON(wFrom)}, CivilEndTime: &jCivilDateTime{Date: dateJSON(wTo)}}
		if !ti.data {
			continue
		}
		if typ == "daily-resting-heart-rate" {
			var rmin, rmax int64
			for d := wFrom; d.before(wTo); d = d.add(1) {
				if x := v.restingHR(d); x > 0 {
					if rmin == 0 || x < rmin {
						rmin = x
					}
					rmax = max(rmax, x)
				}
			}
			if rmax == 0 {
				continue
			}
			pt.RestingHeartRatePersonalRange = &jRHRRange{Min: float64(rmin), Max: float64(rmax)}
			resp.Points = append(resp.Points, pt)
			continue
		}
		var a agg
		for d := wFrom; d.before(wTo); d = d.add(1) {
			da := v.dayAgg(d)
			a.merge(&da)
		}
		if a.worn == 0 {
			continue
		}
		setValue(typ, &pt, &a)
		resp.Points = append(resp.Points, pt)
	}
	return jsonReply(http.StatusOK, resp)
}

// rhrListDays bounds the days the resting-heart-rate list scans: a list without a lower bound
// would otherwise walk back forever.
const rhrListDays = 120

// list serves GET dataPoints, which the simulator implements for daily-resting-heart-rate (newest
// first, as the proto says list results are ordered).
func (s *Server) list(r *http.Request, typ string, c reqCtx) reply {
	q := r.URL.Query()
	filter := q.Get("filter")
	if typ == "total-calories" {
		return invalidArgument("parent", "total-calories supports only rollUp and dailyRollUp")
	}
	if typ != "daily-resting-heart-rate" {
		return rpcError(http.StatusNotImplemented, "UNIMPLEMENTED", "healthsim lists only daily-resting-heart-rate", "")
	}
	lo, hi, bad := dateFilter(filter, "daily_resting_heart_rate")
	if bad != nil {
		return *bad
	}
	if !validFamily(q.Get("dataSourceFamily")) {
		return invalidFilter("INVALID_DATA_POINT_DATA_SOURCE_FAMILY", "Invalid data source family "+strconv.Quote(q.Get("dataSourceFamily")))
	}
	pageParam := q.Get("pageSize")
	if pageParam == "" {
		pageParam = q.Get("page_size")
	}
	size, badp := queryPageSize(pageParam, 1440, 10000)
	if badp != nil {
		return *badp
	}
	size = min(size, s.opts.PageSize)
	token := q.Get("pageToken")
	if token == "" {
		token = q.Get("page_token")
	}
	today := civilOf(c.now, c.pd.loc)
	upper := today.add(1)
	if hi != nil && hi.before(upper) {
		upper = *hi
	}
	lower := upper.add(-rhrListDays)
	if lo != nil && lower.before(*lo) {
		lower = *lo
	}
	v := newView(s.opts.Seed, c.pd, &s.days, c.lastSync)
	var pts []jDataPoint
	for d := upper.add(-1); !d.before(lower); d = d.add(-1) {
		bpm := v.restingHR(d)
		if bpm == 0 {
			continue
		}
		pts = append(pts, jDataPoint{
			DataSource: &jDataSource{RecordingMethod: "DERIVED", Platform: "FITBIT",
				Device: &jSource{FormFactor: "FITNESS_BAND", Manufacturer: "Google", DisplayName: c.pd.model}},
			DailyRestingHeartRate: &jRHR{Date: dateJSON(d), BeatsPerMinute: bpm, Metadata: &jRHRMeta{CalculationMethod: "WITH_SLEEP"}},
		})
	}
	h := reqHash("list", typ, filter, q.Get("dataSourceFamily"))
	from, to, next, ok := paginate(token, h, len(pts), size, s.opts.EmptyPages)
	if !ok {
		return invalidArgument("page_token", "Invalid page token: every other request field must match the first request.")
	}
	return jsonReply(http.StatusOK, jListResponse{DataPoints: pts[from:to], Next: next})
}
