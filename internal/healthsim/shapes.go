package healthsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Response shapes, proto3 JSON as health-gen.go decodes it: camelCase names, int64 as strings,
// zero and default fields omitted (so a worn window with zero steps is "steps": {}).

type jDate struct {
	Year  int `json:"year,omitempty"`
	Month int `json:"month,omitempty"`
	Day   int `json:"day,omitempty"`
}

func dateJSON(c civil) *jDate { return &jDate{Year: c.y, Month: int(c.m), Day: c.d} }

type jCivilDateTime struct {
	Date *jDate `json:"date,omitempty"`
}

type jHeartRate struct {
	Avg float64 `json:"beatsPerMinuteAvg,omitempty"`
	Min float64 `json:"beatsPerMinuteMin,omitempty"`
	Max float64 `json:"beatsPerMinuteMax,omitempty"`
}

type jCountSum struct {
	CountSum int64 `json:"countSum,omitempty,string"`
}

type jDistance struct {
	MillimetersSum int64 `json:"millimetersSum,omitempty,string"`
}

type jAltitude struct {
	GainMillimetersSum int64 `json:"gainMillimetersSum,omitempty,string"`
}

type jKcal struct {
	KcalSum float64 `json:"kcalSum,omitempty"`
}

type jActiveMinutes struct {
	ByLevel []jLevelSum `json:"activeMinutesRollupByActivityLevel,omitempty"`
}

type jLevelSum struct {
	ActivityLevel    string `json:"activityLevel,omitempty"`
	ActiveMinutesSum int64  `json:"activeMinutesSum,omitempty,string"`
}

type jAZM struct {
	FatBurn int64 `json:"sumInFatBurnHeartZone,omitempty,string"`
	Cardio  int64 `json:"sumInCardioHeartZone,omitempty,string"`
	Peak    int64 `json:"sumInPeakHeartZone,omitempty,string"`
}

type jSedentary struct {
	DurationSum string `json:"durationSum,omitempty"`
}

type jRHRRange struct {
	Min float64 `json:"beatsPerMinuteMin,omitempty"`
	Max float64 `json:"beatsPerMinuteMax,omitempty"`
}

// jPoint is both RollupDataPoint (startTime/endTime) and DailyRollupDataPoint (civil times).
type jPoint struct {
	StartTime                     string          `json:"startTime,omitempty"`
	EndTime                       string          `json:"endTime,omitempty"`
	CivilStartTime                *jCivilDateTime `json:"civilStartTime,omitempty"`
	CivilEndTime                  *jCivilDateTime `json:"civilEndTime,omitempty"`
	HeartRate                     *jHeartRate     `json:"heartRate,omitempty"`
	Steps                         *jCountSum      `json:"steps,omitempty"`
	Floors                        *jCountSum      `json:"floors,omitempty"`
	Distance                      *jDistance      `json:"distance,omitempty"`
	Altitude                      *jAltitude      `json:"altitude,omitempty"`
	TotalCalories                 *jKcal          `json:"totalCalories,omitempty"`
	ActiveEnergyBurned            *jKcal          `json:"activeEnergyBurned,omitempty"`
	ActiveMinutes                 *jActiveMinutes `json:"activeMinutes,omitempty"`
	ActiveZoneMinutes             *jAZM           `json:"activeZoneMinutes,omitempty"`
	SedentaryPeriod               *jSedentary     `json:"sedentaryPeriod,omitempty"`
	RestingHeartRatePersonalRange *jRHRRange      `json:"restingHeartRatePersonalRange,omitempty"`
}

type jRollupResponse struct {
	Points []jPoint `json:"rollupDataPoints,omitempty"`
	Next   string   `json:"nextPageToken,omitempty"`
}

type jIdentity struct {
	Name         string `json:"name"`
	LegacyUserID string `json:"legacyUserId,omitempty"`
	HealthUserID string `json:"healthUserId,omitempty"`
}

type jSettings struct {
	Name                    string `json:"name"`
	AutoStrideEnabled       bool   `json:"autoStrideEnabled,omitempty"`
	DistanceUnit            string `json:"distanceUnit,omitempty"`
	FoodLanguageCode        string `json:"foodLanguageCode,omitempty"`
	GlucoseUnit             string `json:"glucoseUnit,omitempty"`
	HeightUnit              string `json:"heightUnit,omitempty"`
	LanguageLocale          string `json:"languageLocale,omitempty"`
	StrideLengthRunningType string `json:"strideLengthRunningType,omitempty"`
	StrideLengthWalkingType string `json:"strideLengthWalkingType,omitempty"`
	SwimUnit                string `json:"swimUnit,omitempty"`
	TemperatureUnit         string `json:"temperatureUnit,omitempty"`
	TimeZone                string `json:"timeZone,omitempty"`
	UtcOffset               string `json:"utcOffset,omitempty"`
	WaterUnit               string `json:"waterUnit,omitempty"`
	WeightUnit              string `json:"weightUnit,omitempty"`
}

type jDevice struct {
	Name          string   `json:"name"`
	BatteryLevel  int      `json:"batteryLevel,omitempty"` // int32 in the proto: a JSON number
	BatteryStatus string   `json:"batteryStatus,omitempty"`
	DeviceType    string   `json:"deviceType,omitempty"`
	DeviceVersion string   `json:"deviceVersion,omitempty"`
	Features      []string `json:"features,omitempty"`
	LastSyncTime  string   `json:"lastSyncTime,omitempty"`
	MacAddress    string   `json:"macAddress,omitempty"`
}

type jDevices struct {
	PairedDevices []jDevice `json:"pairedDevices,omitempty"`
	Next          string    `json:"nextPageToken,omitempty"`
}

type jDataSource struct {
	RecordingMethod string   `json:"recordingMethod,omitempty"`
	Platform        string   `json:"platform,omitempty"`
	Device          *jSource `json:"device,omitempty"`
}

type jSource struct {
	FormFactor   string `json:"formFactor,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	DisplayName  string `json:"displayName,omitempty"`
}

type jRHR struct {
	Date           *jDate    `json:"date,omitempty"`
	BeatsPerMinute int64     `json:"beatsPerMinute,omitempty,string"`
	Metadata       *jRHRMeta `json:"dailyRestingHeartRateMetadata,omitempty"`
}

type jRHRMeta struct {
	CalculationMethod string `json:"calculationMethod,omitempty"`
}

type jDataPoint struct {
	DataSource            *jDataSource `json:"dataSource,omitempty"`
	DailyRestingHeartRate *jRHR        `json:"dailyRestingHeartRate,omitempty"`
}

type jListResponse struct {
	DataPoints []jDataPoint `json:"dataPoints,omitempty"`
	Next       string       `json:"nextPageToken,omitempty"`
}

// Request shapes.

// flexInt accepts an integer as a JSON number or a string, as proto3 JSON parsers do.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(s)
	}
	n, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil {
		return fmt.Errorf("invalid int32 %s", b)
	}
	*f = flexInt(n)
	return nil
}

type jInterval struct {
	StartTime string `json:"startTime"`
	EndTime   string `json:"endTime"`
}

type rollUpRequest struct {
	Range            *jInterval `json:"range"`
	WindowSize       string     `json:"windowSize"`
	PageSize         flexInt    `json:"pageSize"`
	PageToken        string     `json:"pageToken"`
	DataSourceFamily string     `json:"dataSourceFamily"`
}

// civilIn is a CivilDateTime in a request. Date fields are plain ints: the API rejects "03" (reference §6).
type civilIn struct {
	Date *struct {
		Year  int `json:"year"`
		Month int `json:"month"`
		Day   int `json:"day"`
	} `json:"date"`
	Time *struct {
		Hours   int `json:"hours"`
		Minutes int `json:"minutes"`
		Seconds int `json:"seconds"`
		Nanos   int `json:"nanos"`
	} `json:"time"`
}

type dailyRollUpRequest struct {
	Range *struct {
		Start *civilIn `json:"start"`
		End   *civilIn `json:"end"`
	} `json:"range"`
	WindowSizeDays   flexInt `json:"windowSizeDays"`
	PageSize         flexInt `json:"pageSize"`
	PageToken        string  `json:"pageToken"`
	DataSourceFamily string  `json:"dataSourceFamily"`
}

// protoDuration formats whole seconds as proto3 JSON does ("300s").
func protoDuration(secs int64) string { return strconv.FormatInt(secs, 10) + "s" }

// parseProtoDuration parses "300s", "1.5s", "-25200s".
func parseProtoDuration(s string) (time.Duration, bool) {
	if len(s) < 2 || s[len(s)-1] != 's' {
		return 0, false
	}
	f, err := strconv.ParseFloat(s[:len(s)-1], 64)
	if err != nil || f > 315576000000 || f < -315576000000 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}
