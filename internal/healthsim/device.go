package healthsim

import (
	"time"
)

// syncSlot partitions time so that the natural sync schedule can be generated for any instant
// without replaying history: each 6-hour slot draws its own syncs from (seed, id, slot).
const syncSlot = 6 * time.Hour

// naturalSyncs are the phone-app syncs in slot k: mostly every 10-40 min, sometimes an hour or two
// apart, and in about one slot in eight the phone is away for 1-5 hours.
func naturalSyncs(seed int64, id string, k int64) []time.Time {
	r := newRand(seed, "sync", id, k)
	slotSecs := int(syncSlot / time.Second)
	base := time.Unix(k*int64(slotSecs), 0).UTC()
	offFrom, offTo := -1, -1
	if r.Float64() < 0.12 {
		offFrom = r.IntN(slotSecs)
		offTo = offFrom + 3600 + r.IntN(4*3600)
	}
	var out []time.Time
	for t := r.IntN(20 * 60); t < slotSecs; {
		if t < offFrom || t >= offTo {
			out = append(out, base.Add(time.Duration(t)*time.Second))
		}
		step := 600 + r.IntN(1800)
		if x := r.Float64(); x < 0.03 {
			step = 7200 + r.IntN(7200)
		} else if x < 0.15 {
			step = 2400 + r.IntN(4800)
		}
		t += step
	}
	return out
}

// lastNatural is the newest natural sync at or before limit (zero if none in the last 4 days).
func lastNatural(seed int64, id string, limit time.Time) time.Time {
	secs := int64(syncSlot / time.Second)
	u := limit.Unix()
	k := u / secs
	if u < 0 && u%secs != 0 {
		k--
	}
	for j := k; j > k-16; j-- {
		syncs := naturalSyncs(seed, id, j)
		for i := len(syncs) - 1; i >= 0; i-- {
			if !syncs[i].After(limit) {
				return syncs[i]
			}
		}
	}
	return time.Time{}
}

// lastSyncLocked is the device's lastSyncTime at now. Caller holds s.mu.
func (s *Server) lastSyncLocked(p *participant, now time.Time) time.Time {
	limit := now
	if !p.offlineSince.IsZero() && p.offlineSince.Before(limit) {
		limit = p.offlineSince
	}
	last := lastNatural(s.opts.Seed, p.data.LegacyUserID, limit)
	for _, f := range p.forcedSyncs {
		if !f.After(now) && f.After(last) {
			last = f
		}
	}
	return last
}

// SetDeviceOffline stops the participant's natural syncs after since (the phone is lost, Bluetooth is
// off): lastSyncTime stays at the last sync at or before since, except for syncs forced with
// SyncDevice. A zero since puts the device back on its natural schedule.
func (s *Server) SetDeviceOffline(legacyID string, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.byLegacy[legacyID]; p != nil {
		p.offlineSince = since
	}
}

// SyncDevice forces a device sync at Now(): everything recorded until now becomes visible, the last
// 15 minutes provisionally. It does not end SetDeviceOffline; natural syncs stay suspended.
func (s *Server) SyncDevice(legacyID string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.byLegacy[legacyID]; p != nil {
		p.forcedSyncs = append(p.forcedSyncs, now.UTC())
	}
}

// LastSync is the device's lastSyncTime now, as pairedDevices reports it (zero for an unknown id).
func (s *Server) LastSync(legacyID string) time.Time {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byLegacy[legacyID]
	if p == nil {
		return time.Time{}
	}
	return s.lastSyncLocked(p, now)
}
