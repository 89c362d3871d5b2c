package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/healthsim"
	"github.com/studylab/sync-all/internal/store"
)

func TestStatusShowsRunsParticipantsNeedingActionAndWearCoverage(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 4})
	ctx := context.Background()
	ps := w.sim.Participants()
	reconsent, failing, stale := ps[1].LegacyUserID, ps[2].LegacyUserID, ps[3].LegacyUserID
	// stale's tracker last synced 30 hours ago.
	w.sim.SetDeviceOffline(stale, w.clock.Now().Add(-30*time.Hour))
	runStart := w.clock.Now()
	w.mustRun("run")
	run := w.lastRun()
	// What the devices had synced when the run read them, which is what is stored.
	synced := map[string]healthsim.TruthDay{}
	for _, p := range ps {
		loc, _ := time.LoadLocation(p.TimeZone)
		d := health.DateOf(runStart.In(loc))
		synced[p.LegacyUserID] = w.sim.Truth(p.LegacyUserID, d.Year, d.Month, d.Day)
	}

	if err := w.st.SetStatus(ctx, w.users[reconsent].ID, store.StatusNeedsReconsent, "invalid_grant"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := w.st.Release(ctx, w.users[failing].ID, "test", store.Outcome{Error: "fetch 2026-12-03: HTTP 500"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.st.ImportPending(ctx, "PEND01", "not consented"); err != nil {
		t.Fatal(err)
	}
	w.clock.Add(10 * time.Minute)
	now := w.clock.Now()

	r := w.mustRun("status", "--json")
	var got statusReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if len(got.Runs) != 1 {
		t.Fatalf("runs: %+v", got.Runs)
	}
	gr := got.Runs[0]
	if gr.ID != run.ID || !gr.StartedAt.Equal(runStart) || gr.Status != store.RunOK || gr.UsersOK != 4 || gr.UsersFailed != 0 || gr.UsersSkipped != 0 ||
		gr.RecordsInserted != run.Counts.Inserted || gr.RecordsUpdated != 0 || gr.DurationSeconds == nil {
		t.Errorf("run %+v, want %+v", gr, run)
	}

	var actions []string
	for _, a := range got.NeedsAction {
		actions = append(actions, a.Participant+" "+a.Status+": "+a.Reason+" => "+a.Action)
	}
	wantActions := []string{
		reconsent + " needs_reconsent: consent revoked or expired: invalid_grant => sync-all users authorize " + reconsent,
		failing + " active: failed the last 3 runs: fetch 2026-12-03: HTTP 500 => check the log: grep " + failing + " logs/sync.log",
		stale + " active: no device sync for 1d 6h (since " + stamp(w.sim.LastSync(stale)) + ") => ask the participant to open the Fitbit app and sync their tracker",
		"PEND01 pending_consent: has not consented yet => sync-all users authorize PEND01",
	}
	if diff := cmp.Diff(wantActions, actions); diff != "" {
		t.Errorf("needs action (-want +got):\n%s", diff)
	}

	// Per active participant: the newest stored minute and today's coverage, from the
	// simulator's own account of what its devices synced.
	if len(got.Participants) != 3 {
		t.Fatalf("participants: %+v", got.Participants)
	}
	for _, p := range got.Participants {
		sp := w.simParticipant(p.Participant)
		loc, _ := time.LoadLocation(sp.TimeZone)
		today := health.DateOf(now.In(loc))
		truth := synced[sp.LegacyUserID] // the run and the status are on the same local day
		minutes := 0
		for _, h := range truth.HeartRate {
			if h.Start.Before(now) {
				minutes++
			}
		}
		elapsed := int(now.Sub(today.In(loc)) / time.Minute)
		if p.LocalDate == nil || *p.LocalDate != today.String() || p.HeartRateMinutes != minutes || p.MinutesElapsed != elapsed ||
			p.WearCoverage == nil || math.Abs(*p.WearCoverage-float64(minutes)/float64(elapsed)) > 1e-9 {
			t.Errorf("%s: %+v, want %d/%d minutes on %s", p.Participant, p, minutes, elapsed, today)
		}
		// A first run stores today only, so the newest stored minute is today's last.
		switch n := len(truth.HeartRate); {
		case n == 0 && p.NewestData != nil:
			t.Errorf("%s newest data %v, want none", p.Participant, p.NewestData)
		case n > 0 && (p.NewestData == nil || !p.NewestData.Equal(truth.HeartRate[n-1].Start)):
			t.Errorf("%s newest data %v, want %v", p.Participant, p.NewestData, truth.HeartRate[n-1].Start)
		}
		if p.LastSuccessAt == nil {
			t.Errorf("%s: no last success", p.Participant)
		}
	}

	// The tables say the same.
	r = w.mustRun("status")
	for _, re := range []string{
		`(?m)^Last runs \(now ` + stamp(now) + `\)$`,
		fmt.Sprintf(`(?m)^%s +\S+ +ok +4 +0 +0 +%d +0 +0$`, stamp(runStart), run.Counts.Inserted),
		`(?m)^Needing action \(4\)$`, `(?m)^` + reconsent + ` +needs_reconsent +consent revoked`, `(?m)^PEND01 +pending_consent +has not consented yet`,
		`(?m)^Active participants \(3\)$`, `(?m)^PARTICIPANT +TIME ZONE +NEWEST DATA +WEAR TODAY +LAST SUCCESS$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("status output does not match %s:\n%s", re, r.stdout)
		}
	}
	c := got.Participants[0]
	if want := fmt.Sprintf("%.0f%% (%d/%d min)", *c.WearCoverage*100, c.HeartRateMinutes, c.MinutesElapsed); !strings.Contains(r.stdout, want) {
		t.Errorf("status output lacks %q:\n%s", want, r.stdout)
	}
	w.assertNoSecrets(r.stdout, r.stderr)
}
