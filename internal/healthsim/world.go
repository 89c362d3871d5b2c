package healthsim

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// civil is a calendar date without a zone.
type civil struct {
	y int
	m time.Month
	d int
}

func civilOf(t time.Time, loc *time.Location) civil {
	y, m, d := t.In(loc).Date()
	return civil{y, m, d}
}

// ord is the number of days since 1970-01-01; it keys seeds and caches.
func (c civil) ord() int64 { return time.Date(c.y, c.m, c.d, 0, 0, 0, 0, time.UTC).Unix() / 86400 }

func (c civil) add(n int) civil {
	t := time.Date(c.y, c.m, c.d+n, 0, 0, 0, 0, time.UTC)
	return civil{t.Year(), t.Month(), t.Day()}
}

// start is local midnight as an instant. time.Date normalises a midnight that a DST jump skips.
func (c civil) start(loc *time.Location) time.Time {
	return time.Date(c.y, c.m, c.d, 0, 0, 0, 0, loc).UTC()
}

func (c civil) before(o civil) bool { return c.ord() < o.ord() }

func (c civil) String() string {
	return time.Date(c.y, c.m, c.d, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

// hash64 derives a stable 64-bit value from the seed and a few labels. FNV (not maphash) because
// the world must be identical across processes and runs.
func hash64(seed int64, tag, id string, n int64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(tag))
	h.Write([]byte{0})
	h.Write([]byte(id))
	h.Write([]byte{0})
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
	// splitmix64 finaliser: FNV's low bits are weak for nearby inputs.
	z := h.Sum64() + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// newRand is a PCG stream for one (tag, id, n); PCG's output is specified, so streams are stable
// across Go releases.
func newRand(seed int64, tag, id string, n int64) *rand.Rand {
	return rand.New(rand.NewPCG(hash64(seed, tag, id, n), hash64(seed, tag+"/2", id, n)))
}

// profile is a participant's physiology, fixed for life.
type profile struct {
	restHR, maxHR float64
	basalMilli    int64 // basal energy in millikcal per minute (~1.1 kcal/min)
	strideMM      int64 // walking stride
	runStrideMM   int64
	walkProb      float64 // chance per idle awake minute that a walking burst starts
	exerciseProb  float64 // chance per day of at least one exercise bout
}

func newProfile(seed int64, id string) profile {
	r := newRand(seed, "profile", id, 0)
	rest := 52 + r.Float64()*18
	return profile{
		restHR:       rest,
		maxHR:        178 + r.Float64()*17,
		basalMilli:   950 + r.Int64N(300),
		strideMM:     620 + r.Int64N(180),
		runStrideMM:  1000 + r.Int64N(300),
		walkProb:     0.008 + r.Float64()*0.012,
		exerciseProb: 0.35 + r.Float64()*0.45,
	}
}

// Minute flags and classifications.
const (
	flagWorn uint8 = 1 << iota
	flagAsleep
)

const (
	lvlNone = iota // off-wrist or asleep: neither sedentary nor active
	lvlSedentary
	lvlLight
	lvlModerate
	lvlVigorous
)

const (
	zoneNone = iota
	zoneFatBurn
	zoneCardio
	zonePeak
)

// minute is one recorded minute. Energy is in millikcal and heart rate in tenths so that sums over
// any grouping are exact and Truth and the API agree to the last digit.
type minute struct {
	hrTenths    uint16
	hrMin       uint8
	hrMax       uint8
	steps       uint16
	floors      uint8
	flags       uint8
	level       uint8
	zone        uint8
	distMM      int32
	altMM       int32
	kcalMilli   int32
	activeMilli int32
}

func (m *minute) worn() bool { return m.flags&flagWorn != 0 }

// dayData is one local day of a participant: final values, the provisional values served while a
// minute is still within provisionalWindow of the latest sync, and the day's resting heart rate.
type dayData struct {
	start, end time.Time
	n          int
	final      []minute
	prov       []minute
	rhr        int64     // 0 = not derivable (too little worn sleep)
	rhrReady   time.Time // the device must have synced past this before the value is derived
}

type boutKind int

const (
	boutRun boutKind = iota
	boutCycle
	boutBrisk
	boutStrength
)

type bout struct {
	start, end int
	kind       boutKind
	met        float64
	cadence    float64
}

func levelOf(kcal, basal int64, asleep bool) uint8 {
	if asleep {
		return lvlNone
	}
	met := float64(kcal) / float64(basal)
	switch {
	case met >= 6:
		return lvlVigorous
	case met >= 3:
		return lvlModerate
	case met >= 1.5:
		return lvlLight
	}
	return lvlSedentary
}

// zoneOf follows Fitbit's Karvonen zones: fat burn from 40% of heart-rate reserve, cardio 60%,
// peak 85%.
func zoneOf(tenths uint16, p profile) uint8 {
	pct := (float64(tenths)/10 - p.restHR) / (p.maxHR - p.restHR)
	switch {
	case pct >= 0.85:
		return zonePeak
	case pct >= 0.6:
		return zoneCardio
	case pct >= 0.4:
		return zoneFatBurn
	}
	return zoneNone
}

// generateDay builds one local day. The day's events (sleep, charging, gaps, bouts) are drawn from a
// stream seeded by (seed, id, date) and never cross local midnight, so a minute's value depends only
// on the day it belongs to: the whole world is a pure function of (seed, participant, instant).
func generateDay(seed int64, id string, loc *time.Location, prm profile, c civil) *dayData {
	start, end := c.start(loc), c.add(1).start(loc)
	n := int(end.Sub(start) / time.Minute)
	r := newRand(seed, "day", id, c.ord())

	// Indices are minutes elapsed since local midnight; on a DST day the wall clock is an hour off
	// after the jump, which no circadian rhythm notices.
	wake := 330 + r.IntN(150) // 05:30-08:00
	bed := 1320 + r.IntN(100) // 22:00-23:40
	bed = min(bed, n-10)

	off := make([]bool, n)
	markOff := func(from, dur int) {
		for i := max(from, 0); i < min(from+dur, n); i++ {
			off[i] = true
		}
	}
	markOff(1110+r.IntN(180), 30+r.IntN(31)) // nightly charging, 30-60 min from 18:30-21:30
	gaps := 0
	if x := r.Float64(); x < 0.10 {
		gaps = 2
	} else if x < 0.40 {
		gaps = 1
	}
	for range gaps {
		from := wake + r.IntN(bed-wake)
		dur := 3 + r.IntN(40)
		if r.Float64() < 0.1 {
			dur = 90 + r.IntN(150) // left on the nightstand
		}
		markOff(from, dur)
	}

	var bouts []bout
	if x := r.Float64(); x < prm.exerciseProb {
		nb := 1
		if x < prm.exerciseProb/4 {
			nb = 2
		}
		for range nb {
			dur := 20 + r.IntN(46)
			from := wake + 30 + r.IntN(max(1, bed-wake-dur-60))
			b := bout{start: from, end: from + dur, kind: boutKind(r.IntN(4))}
			switch b.kind {
			case boutRun:
				b.met, b.cadence = 8+r.Float64()*3, 150+r.Float64()*25
			case boutCycle:
				b.met = 6 + r.Float64()*3
			case boutBrisk:
				b.met, b.cadence = 4+r.Float64()*1.2, 110+r.Float64()*15
			case boutStrength:
				b.met = 3.5 + r.Float64()*1.5
			}
			bouts = append(bouts, b)
		}
	}

	d := &dayData{start: start, end: end, n: n, final: make([]minute, n), prov: make([]minute, n)}
	basal := prm.basalMilli
	hrr := prm.maxHR - prm.restHR
	hr := prm.restHR - 2
	walkLeft, walkCad := 0, 0.0
	for i := range n {
		asleep := i < wake || i >= bed
		met, cad := 1.0, 0.0
		run := false
		var circ float64
		if asleep {
			frac := float64(i) / float64(wake)
			if i >= bed {
				frac = 0
			}
			circ = -3 - 3*math.Sin(math.Pi*frac)
		} else {
			circ = 6 + 4*math.Sin(2*math.Pi*float64(i-540)/1440)
			var b *bout
			for k := range bouts {
				if i >= bouts[k].start && i < bouts[k].end {
					b = &bouts[k]
					break
				}
			}
			switch {
			case b != nil:
				ramp := math.Min(1, float64(i-b.start+1)/5) // five-minute warm-up
				met = 1 + (b.met-1)*ramp*(0.95+r.Float64()*0.1)
				if b.cadence > 0 {
					cad = b.cadence*ramp + r.NormFloat64()*4
				} else if b.kind == boutStrength && r.Float64() < 0.3 {
					cad = r.Float64() * 15
				}
				run = b.kind == boutRun
			case walkLeft > 0:
				walkLeft--
				cad = walkCad + r.NormFloat64()*6
				met = 1 + math.Max(cad, 0)/40
			case r.Float64() < prm.walkProb:
				walkLeft = 1 + r.IntN(14)
				walkCad = 75 + r.Float64()*45
				cad = walkCad + r.NormFloat64()*6
				met = 1 + math.Max(cad, 0)/40
			case r.Float64() < 0.12:
				cad = 2 + r.Float64()*35
				met = 1.3 + cad/40
			default:
				met = 1.1 + r.Float64()*0.2
			}
		}
		target := prm.restHR + circ + hrr*math.Min(0.95, (met-1)/10)
		hr += 0.35*(target-hr) + r.NormFloat64()*0.8
		avg := math.Min(math.Max(hr, 38), 205)
		tenths := uint16(math.Round(avg * 10))
		spread := 1 + int(met/2)
		lo := int(tenths)/10 - r.IntN(spread+2)
		hi := (int(tenths)+9)/10 + r.IntN(spread+3)
		kcal := int64(math.Round(float64(basal) * met * (0.98 + r.Float64()*0.04)))
		floors := 0
		if cad > 60 {
			if x := r.Float64(); x < 0.01 {
				floors = 2
			} else if x < 0.06 {
				floors = 1
			}
		}
		if off[i] {
			continue // the stream above still advanced, so later minutes do not depend on gaps
		}
		steps := max(int(math.Round(cad)), 0)
		stride := prm.strideMM
		if run {
			stride = prm.runStrideMM
		}
		f := minute{
			hrTenths:  tenths,
			hrMin:     uint8(lo),
			hrMax:     uint8(hi),
			steps:     uint16(steps),
			floors:    uint8(floors),
			flags:     flagWorn,
			distMM:    int32(int64(steps) * stride),
			altMM:     int32(floors * 3048), // a floor is 10 ft of climb
			kcalMilli: int32(kcal),
			zone:      zoneOf(tenths, prm),
		}
		if asleep {
			f.flags |= flagAsleep
		}
		f.level = levelOf(kcal, basal, asleep)
		if f.level >= lvlLight {
			f.activeMilli = int32(kcal - basal)
		}
		d.final[i] = f
		d.prov[i] = provisional(f, basal, asleep)
	}
	d.rhr = restingHR(d.final[:wake])
	d.rhrReady = start.Add(time.Duration(wake+30) * time.Minute)
	return d
}

// provisional is what the device uploads first for a minute near the end of a sync: step and
// energy counts still being settled (lower), no floors yet, heart-rate extremes from fewer samples.
// A later sync replaces it with the final value.
func provisional(f minute, basal int64, asleep bool) minute {
	p := f
	p.steps = f.steps * 3 / 4
	if f.steps > 0 {
		p.distMM = int32(int64(f.distMM) * int64(p.steps) / int64(f.steps))
	}
	p.floors, p.altMM = 0, 0
	if int64(f.kcalMilli) > basal {
		p.kcalMilli = int32(basal + (int64(f.kcalMilli)-basal)*3/4)
	}
	p.level = levelOf(int64(p.kcalMilli), basal, asleep)
	p.activeMilli = 0
	if p.level >= lvlLight {
		p.activeMilli = int32(int64(p.kcalMilli) - basal)
	}
	floor, ceil := f.hrTenths/10, (f.hrTenths+9)/10
	p.hrMin = uint8(floor) - (uint8(floor)-f.hrMin)/2
	p.hrMax = uint8(ceil) + (f.hrMax-uint8(ceil))/2
	return p
}

// restingHR is the mean of the lowest hour of worn sleeping minutes, as "WITH_SLEEP" implies.
func restingHR(night []minute) int64 {
	var v []int
	for i := range night {
		if night[i].worn() {
			v = append(v, int(night[i].hrTenths))
		}
	}
	if len(v) < 60 {
		return 0
	}
	slices.Sort(v)
	sum := 0
	for _, x := range v[:60] {
		sum += x
	}
	return int64(math.Round(float64(sum) / 600))
}

type dayKey struct {
	id, zone string
	ord      int64
}

// dayCache keeps generated days. A day costs ~85 KB, so the cache is bounded and simply emptied
// when full: regeneration is cheap (well under a millisecond) and deterministic.
type dayCache struct {
	mu sync.Mutex
	m  map[dayKey]*dayData
}

const dayCacheMax = 512

func (c *dayCache) get(seed int64, pd *pdata, day civil) *dayData {
	k := dayKey{pd.LegacyUserID, pd.TimeZone, day.ord()}
	c.mu.Lock()
	d, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return d
	}
	d = generateDay(seed, pd.LegacyUserID, pd.loc, pd.prm, day)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= dayCacheMax {
		c.m = make(map[dayKey]*dayData)
	}
	c.m[k] = d
	c.mu.Unlock()
	return d
}

// provisionalWindow: minutes that ended less than this before the latest sync are provisional.
const provisionalWindow = 15 * time.Minute

// view reads minutes as the API sees them for one participant at one lastSyncTime.
type view struct {
	seed  int64
	pd    *pdata
	cache *dayCache
	sync  time.Time // lastSyncTime
	cut   time.Time // minutes starting before cut are visible
	day   *dayData
}

func newView(seed int64, pd *pdata, cache *dayCache, lastSync time.Time) *view {
	return &view{seed: seed, pd: pd, cache: cache, sync: lastSync, cut: lastSync.Truncate(time.Minute)}
}

// at returns the visible minute starting at t (minute aligned), or nil if not yet synced.
func (v *view) at(t time.Time) *minute {
	if !t.Before(v.cut) {
		return nil
	}
	if v.day == nil || t.Before(v.day.start) || !t.Before(v.day.end) {
		v.day = v.cache.get(v.seed, v.pd, civilOf(t, v.pd.loc))
	}
	i := int(t.Sub(v.day.start) / time.Minute)
	if t.Add(time.Minute).After(v.sync.Add(-provisionalWindow)) {
		return &v.day.prov[i]
	}
	return &v.day.final[i]
}

// agg sums minutes of one window.
type agg struct {
	worn                         int64
	steps, distMM, floors, altMM int64
	kcalMilli, activeMilli       int64
	levels                       [5]int64
	azmFat, azmCardio, azmPeak   int64
	hrSum, hrN                   int64
	hrMin, hrMax                 int
}

func (a *agg) add(m *minute) {
	if m == nil || !m.worn() {
		return
	}
	a.worn++
	a.steps += int64(m.steps)
	a.distMM += int64(m.distMM)
	a.floors += int64(m.floors)
	a.altMM += int64(m.altMM)
	a.kcalMilli += int64(m.kcalMilli)
	a.activeMilli += int64(m.activeMilli)
	a.levels[m.level]++
	switch m.zone {
	case zoneFatBurn:
		a.azmFat++
	case zoneCardio:
		a.azmCardio += 2 // cardio and peak minutes count double
	case zonePeak:
		a.azmPeak += 2
	}
	if a.hrN == 0 || int(m.hrMin) < a.hrMin {
		a.hrMin = int(m.hrMin)
	}
	if a.hrN == 0 || int(m.hrMax) > a.hrMax {
		a.hrMax = int(m.hrMax)
	}
	a.hrSum += int64(m.hrTenths)
	a.hrN++
}

func (a *agg) merge(b *agg) {
	if b.worn == 0 {
		return
	}
	if a.hrN == 0 || b.hrMin < a.hrMin {
		a.hrMin = b.hrMin
	}
	if a.hrN == 0 || b.hrMax > a.hrMax {
		a.hrMax = b.hrMax
	}
	a.worn += b.worn
	a.steps += b.steps
	a.distMM += b.distMM
	a.floors += b.floors
	a.altMM += b.altMM
	a.kcalMilli += b.kcalMilli
	a.activeMilli += b.activeMilli
	for i := range a.levels {
		a.levels[i] += b.levels[i]
	}
	a.azmFat += b.azmFat
	a.azmCardio += b.azmCardio
	a.azmPeak += b.azmPeak
	a.hrSum += b.hrSum
	a.hrN += b.hrN
}

// hrAvg is the mean rounded to a tenth of a beat.
func (a *agg) hrAvg() float64 {
	return float64((a.hrSum+a.hrN/2)/a.hrN) / 10
}

// window aggregates the visible minutes starting in [from, to).
func (v *view) window(from, to time.Time) agg {
	var a agg
	t := from.Truncate(time.Minute)
	if t.Before(from) {
		t = t.Add(time.Minute)
	}
	for ; t.Before(to) && t.Before(v.cut); t = t.Add(time.Minute) {
		a.add(v.at(t))
	}
	return a
}

// dayAgg aggregates one whole local day.
func (v *view) dayAgg(c civil) agg {
	return v.window(c.start(v.pd.loc), c.add(1).start(v.pd.loc))
}

// restingHR is the day's resting heart rate once derived (0 = not reported).
func (v *view) restingHR(c civil) int64 {
	start := c.start(v.pd.loc)
	if !start.Before(v.cut) {
		return 0
	}
	d := v.cache.get(v.seed, v.pd, c)
	if d.rhr == 0 || v.sync.Before(d.rhrReady) {
		return 0
	}
	return d.rhr
}
