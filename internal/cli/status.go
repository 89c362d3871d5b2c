package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/store"
)

// StatusOptions are the `status` command's flags.
type StatusOptions struct {
	Config Config
	JSON   bool
}

// Thresholds for "needs action". A participant failing three runs in a row (15 minutes) is
// no longer a blip; a tracker that has not synced for a day means the participant stopped
// wearing it, lost it, or its app lost the pairing.
const (
	failingRuns   = 3
	staleDevice   = 24 * time.Hour
	statusRunRows = 10
)

// NewCmdStatus builds `sync-all status`.
func NewCmdStatus(e *Env, runF func(*StatusOptions) error) *cobra.Command {
	o := &StatusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the last runs, participants needing action, and how fresh each participant's data is",
		Long: `status prints three tables: the last 10 runs (from sync_runs); the participants who need
action (consent gone or never given, failing for 3 runs or more, no device sync for over 24 h);
and for every active participant the newest stored heart-rate minute, today's wear coverage
(minutes with heart rate / minutes elapsed today, in the participant's time zone) and the last
successful sync. --json prints the same as one object for scripts and dashboards.`,
		Example: `  sync-all status
  sync-all status --json | jq '.needs_action[] | .participant'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(o)
			}
			return o.run(cmd.Context(), e)
		},
	}
	o.Config.configFlags(cmd.Flags(), false)
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print one JSON object instead of tables")
	return cmd
}

// statusReport is what `status` shows; it is also the --json shape.
type statusReport struct {
	Now          time.Time           `json:"now"`
	Runs         []runStatus         `json:"runs"`
	NeedsAction  []actionStatus      `json:"needs_action"`
	Participants []participantStatus `json:"participants"`
}

type runStatus struct {
	ID               int64      `json:"id"`
	StartedAt        time.Time  `json:"started_at"`
	FinishedAt       *time.Time `json:"finished_at"`
	DurationSeconds  *float64   `json:"duration_seconds"`
	Status           string     `json:"status"`
	Hostname         string     `json:"hostname"`
	UsersTotal       int        `json:"users_total"`
	UsersOK          int        `json:"users_ok"`
	UsersFailed      int        `json:"users_failed"`
	UsersSkipped     int        `json:"users_skipped"`
	RecordsInserted  int64      `json:"records_inserted"`
	RecordsUpdated   int64      `json:"records_updated"`
	RecordsUnchanged int64      `json:"records_unchanged"`
	Error            string     `json:"error,omitempty"`
}

type actionStatus struct {
	ID          int64  `json:"id"`
	Participant string `json:"participant"`
	Status      string `json:"status"`
	Reason      string `json:"reason"`
	Action      string `json:"action"`
}

type participantStatus struct {
	ID               int64      `json:"id"`
	Participant      string     `json:"participant"`
	Timezone         *string    `json:"timezone"`
	NewestData       *time.Time `json:"newest_data"`
	LocalDate        *string    `json:"local_date"`
	HeartRateMinutes int        `json:"heart_rate_minutes_today"`
	MinutesElapsed   int        `json:"minutes_elapsed_today"`
	WearCoverage     *float64   `json:"wear_coverage_today"` // 0..1; null when the time zone is unknown
	LastSuccessAt    *time.Time `json:"last_success_at"`
	DeviceLastSyncAt *time.Time `json:"device_last_sync_at"`
}

func (o *StatusOptions) run(ctx context.Context, e *Env) error {
	st, err := openChecked(ctx, e, &o.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := buildStatus(ctx, st, e.Now())
	if err != nil {
		return abortErr(err)
	}
	if o.JSON {
		return writeJSON(e.Stdout, rep)
	}
	return rep.print(e.Stdout)
}

func buildStatus(ctx context.Context, st *store.Store, now time.Time) (statusReport, error) {
	rep := statusReport{Now: now.UTC(), Runs: []runStatus{}, NeedsAction: []actionStatus{}, Participants: []participantStatus{}}
	runs, err := st.RecentRuns(ctx, statusRunRows)
	if err != nil {
		return rep, err
	}
	for _, r := range runs {
		rs := runStatus{ID: r.ID, StartedAt: r.StartedAt.UTC(), FinishedAt: nullableTime(r.FinishedAt), Status: r.Status,
			Hostname: r.Hostname, UsersTotal: r.UsersTotal, UsersOK: r.UsersOK, UsersFailed: r.UsersFailed, UsersSkipped: r.UsersSkipped,
			RecordsInserted: r.Counts.Inserted, RecordsUpdated: r.Counts.Updated, RecordsUnchanged: r.Counts.Unchanged, Error: r.Error}
		if !r.FinishedAt.IsZero() {
			d := r.FinishedAt.Sub(r.StartedAt).Seconds()
			rs.DurationSeconds = &d
		}
		rep.Runs = append(rep.Runs, rs)
	}

	users, err := st.ListUsers(ctx, "")
	if err != nil {
		return rep, err
	}
	today := map[int64]health.Date{}
	locs := map[int64]*time.Location{}
	for _, u := range users {
		if a, ok := needsAction(u, now); ok {
			rep.NeedsAction = append(rep.NeedsAction, a)
		}
		if u.Status != store.StatusActive {
			continue
		}
		if loc, err := time.LoadLocation(u.Timezone); err == nil && u.Timezone != "" {
			locs[u.ID] = loc
			today[u.ID] = health.DateOf(now.In(loc))
		} else {
			today[u.ID] = health.DateOf(now.UTC()) // newest data is still worth showing
		}
	}
	stats, err := st.DataStats(ctx, today, now)
	if err != nil {
		return rep, err
	}
	for _, u := range users {
		if u.Status != store.StatusActive {
			continue
		}
		s := stats[u.ID]
		ps := participantStatus{ID: u.ID, Participant: u.Handle(), Timezone: nullable(u.Timezone),
			NewestData: nullableTime(s.NewestHeartRate), LastSuccessAt: nullableTime(u.LastSuccessAt),
			DeviceLastSyncAt: nullableTime(u.DeviceLastSyncAt)}
		if loc := locs[u.ID]; loc != nil {
			d := today[u.ID]
			ds := d.String()
			ps.LocalDate = &ds
			ps.HeartRateMinutes = s.HeartRateMinutes
			ps.MinutesElapsed = int(now.Sub(d.In(loc)) / time.Minute)
			if ps.MinutesElapsed > 0 {
				c := min(1, float64(s.HeartRateMinutes)/float64(ps.MinutesElapsed))
				ps.WearCoverage = &c
			}
		}
		rep.Participants = append(rep.Participants, ps)
	}
	return rep, nil
}

// needsAction says whether the team must do something about u, and what.
func needsAction(u store.User, now time.Time) (actionStatus, bool) {
	a := actionStatus{ID: u.ID, Participant: u.Handle(), Status: u.Status}
	switch u.Status {
	case store.StatusNeedsReconsent:
		a.Reason = "consent revoked or expired"
		if u.LastError != "" {
			a.Reason += ": " + clip(u.LastError, 120)
		}
		a.Action = "sync-all users authorize " + u.Handle()
		return a, true
	case store.StatusPendingConsent:
		a.Reason, a.Action = "has not consented yet", "sync-all users authorize "+u.Handle()
		return a, true
	case store.StatusActive:
	default:
		return a, false
	}
	switch {
	case u.ConsecutiveFailures >= failingRuns:
		a.Reason = fmt.Sprintf("failed the last %d runs: %s", u.ConsecutiveFailures, clip(u.LastError, 120))
		a.Action = "check the log: grep " + u.Handle() + " logs/sync.log"
		return a, true
	case u.LastSuccessAt.IsZero():
		return a, false // not synced yet: the next run says more
	case u.DeviceLastSyncAt.IsZero():
		a.Reason, a.Action = "no device sync recorded", "ask the participant to open the Fitbit app and sync their tracker"
		return a, true
	case now.Sub(u.DeviceLastSyncAt) > staleDevice:
		a.Reason = fmt.Sprintf("no device sync for %s (since %s)", roughDuration(now.Sub(u.DeviceLastSyncAt)), stamp(u.DeviceLastSyncAt))
		a.Action = "ask the participant to open the Fitbit app and sync their tracker"
		return a, true
	}
	return a, false
}

// roughDuration is a duration as a person says it: "3d 4h", "26h", "5h 10m".
func roughDuration(d time.Duration) string {
	d = d.Round(time.Minute)
	days, hours, mins := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	}
	return fmt.Sprintf("%dm", mins)
}

func (r statusReport) print(w io.Writer) error {
	fmt.Fprintf(w, "Last runs (now %s)\n", stamp(r.Now))
	tw := newTable(w)
	fmt.Fprintln(tw, "STARTED\tDURATION\tSTATUS\tOK\tFAILED\tSKIPPED\tINSERTED\tUPDATED\tUNCHANGED")
	for _, run := range r.Runs {
		dur := "running"
		if run.DurationSeconds != nil {
			dur = (time.Duration(*run.DurationSeconds * float64(time.Second))).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", stamp(run.StartedAt), dur, run.Status,
			run.UsersOK, run.UsersFailed, run.UsersSkipped, run.RecordsInserted, run.RecordsUpdated, run.RecordsUnchanged)
	}
	if len(r.Runs) == 0 {
		fmt.Fprintln(tw, "(no runs yet)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nNeeding action (%d)\n", len(r.NeedsAction))
	tw = newTable(w)
	fmt.Fprintln(tw, "PARTICIPANT\tSTATUS\tREASON\tWHAT TO DO")
	for _, a := range r.NeedsAction {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Participant, a.Status, cell(a.Reason, 100), a.Action)
	}
	if len(r.NeedsAction) == 0 {
		fmt.Fprintln(tw, "(nobody)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nActive participants (%d)\n", len(r.Participants))
	tw = newTable(w)
	fmt.Fprintln(tw, "PARTICIPANT\tTIME ZONE\tNEWEST DATA\tWEAR TODAY\tLAST SUCCESS")
	for _, p := range r.Participants {
		wear := "-"
		if p.WearCoverage != nil {
			wear = fmt.Sprintf("%.0f%% (%d/%d min)", *p.WearCoverage*100, p.HeartRateMinutes, p.MinutesElapsed)
		}
		tz := "-"
		if p.Timezone != nil {
			tz = *p.Timezone
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Participant, tz, stampPtr(p.NewestData), wear, stampPtr(p.LastSuccessAt))
	}
	return tw.Flush()
}

func stampPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return stamp(*t)
}
