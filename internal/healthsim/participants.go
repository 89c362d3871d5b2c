package healthsim

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // the simulator's zones must load on hosts without /usr/share/zoneinfo
)

// Participant is one synthetic study participant as the simulator knows them.
type Participant struct {
	LegacyUserID string // Fitbit user id, e.g. "CRBM3W"
	HealthUserID string // Google Health user id: 1-63 chars of [A-Za-z0-9-]
	TimeZone     string // IANA zone of settings.timeZone
	Email        string // accepted as login_hint
}

// zones covers several continents, DST in both hemispheres and the :30/:45 offsets. Generated
// participant i gets zones[i%len(zones)], so the default 20 participants hold each zone twice.
var zones = [...]string{
	"America/Los_Angeles", // participant 0 (CRBM3W): DST, 23 h and 25 h days
	"Europe/Berlin",
	"Asia/Kathmandu", // +05:45
	"Australia/Adelaide",
	"Asia/Seoul",
	"Asia/Kolkata", // +05:30
	"America/Sao_Paulo",
	"Africa/Nairobi",
	"UTC",
	"America/New_York",
}

var zoneLocale = map[string]string{
	"America/Los_Angeles": "en_US", "Europe/Berlin": "de_DE", "Asia/Kathmandu": "ne_NP",
	"Australia/Adelaide": "en_AU", "Asia/Seoul": "ko_KR", "Asia/Kolkata": "en_IN",
	"America/Sao_Paulo": "pt_BR", "Africa/Nairobi": "sw_KE", "UTC": "en_GB", "America/New_York": "en_US",
}

// deviceModels are tracker names as pairedDevices[].deviceVersion reports them.
var deviceModels = [...]string{"Charge 6", "Inspire 3", "Pixel Watch 3", "Sense 2", "Versa 4", "Charge 5"}

// pdata is the immutable description of a participant; AddParticipant swaps in a new one.
type pdata struct {
	Participant
	loc           *time.Location
	prm           profile
	model         string
	deviceID      int64
	oldDevices    int  // retired trackers still listed, so pairedDevices paginates
	scale         bool // also owns a SCALE
	locale        string
	distanceMiles bool
}

// participant is the mutable per-participant state, guarded by Server.mu.
type participant struct {
	data         *pdata
	grantable    []string // SetGrantedScopes; nil = everything requested
	faults       []*faultState
	offlineSince time.Time
	forcedSyncs  []time.Time
	quotaStart   time.Time // fixed window
	quotaCount   int
	quotaRecent  []time.Time // rolling window
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// legacyID makes the 6-char Fitbit-style id of generated participant i (i > 0).
func legacyID(seed int64, i int, salt int) string {
	h := hash64(seed, "legacy-id", fmt.Sprint(salt), int64(i))
	var b [6]byte
	for k := range b {
		b[k] = idAlphabet[h%uint64(len(idAlphabet))]
		h /= uint64(len(idAlphabet))
	}
	return string(b[:])
}

// healthUserID is deterministic per legacy id. Most look like Google's numeric ids; some use
// letters and hyphens so clients cannot assume digits.
func healthUserID(seed int64, legacy string) string {
	h := hash64(seed, "health-id", legacy, 0)
	if h%4 == 0 {
		const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		var b strings.Builder
		b.WriteString("hu-")
		x := hash64(seed, "health-id-2", legacy, 0)
		for k := range 16 {
			if k == 8 {
				b.WriteByte('-')
			}
			b.WriteByte(alnum[x%uint64(len(alnum))])
			x /= uint64(len(alnum))
			if x == 0 {
				x = hash64(seed, "health-id-3", legacy, int64(k))
			}
		}
		return b.String()
	}
	return fmt.Sprintf("1%010d%010d", h%1e10, (h/1e10)%1e10)
}

// newPdata completes p (filling empty fields deterministically from the legacy id) and derives the
// participant's fixed properties.
func newPdata(seed int64, p Participant, zoneHint int) *pdata {
	id := p.LegacyUserID
	h := hash64(seed, "participant", id, 0)
	if p.HealthUserID == "" {
		p.HealthUserID = healthUserID(seed, id)
	}
	loc, err := time.LoadLocation(p.TimeZone)
	if p.TimeZone == "" || err != nil {
		if zoneHint < 0 {
			zoneHint = int(h % uint64(len(zones)))
		}
		p.TimeZone = zones[zoneHint%len(zones)]
		loc, _ = time.LoadLocation(p.TimeZone)
	}
	if p.Email == "" {
		p.Email = strings.ToLower(id) + "@participants.study.example"
	}
	pd := &pdata{
		Participant: p,
		loc:         loc,
		prm:         newProfile(seed, id),
		model:       deviceModels[(h>>8)%uint64(len(deviceModels))],
		deviceID:    int64(100000000 + (h>>16)%900000000),
		scale:       (h>>40)%5 == 0,
		locale:      zoneLocale[p.TimeZone],
	}
	if (h>>44)%3 == 0 {
		pd.oldDevices = 6
	}
	if pd.locale == "" {
		pd.locale = "en_US"
	}
	pd.distanceMiles = pd.locale == "en_US"
	return pd
}
