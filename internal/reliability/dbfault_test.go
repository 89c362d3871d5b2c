package reliability

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/healthsim"
	"github.com/studylab/sync-all/internal/pglocal"
	"github.com/studylab/sync-all/internal/store"
)

// cluster is a PostgreSQL server of the test's own, on a data directory the test keeps, so it
// can be stopped and started again on the same port, as a restart or an outage would.
type cluster struct {
	t    *testing.T
	dir  string
	port int
	c    *pglocal.Cluster
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "reliability-pg-")
	if err != nil {
		t.Fatal(err)
	}
	// The server runs as the postgres user when we are root: it must reach its data dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	k := &cluster{t: t, dir: dir}
	t.Cleanup(func() {
		if k.c != nil {
			_ = k.c.Stop()
		}
		os.RemoveAll(dir)
	})
	k.start()
	k.port = k.c.Port()
	return k
}

func (k *cluster) start() {
	k.t.Helper()
	c, err := pglocal.Start(context.Background(), pglocal.Options{Dir: filepath.Join(k.dir, "data"), Port: k.port})
	if err != nil {
		k.t.Fatal(err)
	}
	k.c = c
}

// stop shuts the server down ("fast": sessions are terminated, as in a restart).
func (k *cluster) stop() {
	k.t.Helper()
	if err := k.c.Stop(); err != nil {
		k.t.Fatal(err)
	}
	k.c = nil
}

// dbPassword is in the job's DATABASE_URL (the cluster trusts local logins and ignores it), so
// that the test can look for it in everything the job prints.
const dbPassword = "Pw-must-not-leak-7301"

// dsn is the job's URL for database db as user.
func (k *cluster) dsn(user, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, dbPassword, k.port, db)
}

// TestDatabaseFaults takes PostgreSQL away from the job: down before a run, stopped under a run
// (and left down), restarted under a run, and a run whose token saves fail (the job's role loses
// UPDATE on the token columns). Each such run must end with exit 3 and an error on stderr naming
// host:port/db and never the password; no grant may be lost (every token the simulator issued
// but the job could not save is never used, so the stored refresh token still works); the next
// run after the database is back exits 0 and converges to the simulator's data.
func TestDatabaseFaults(t *testing.T) {
	k := newCluster(t)
	ctx := context.Background()
	admin, err := store.Open(ctx, k.c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Pool().Exec(ctx, `CREATE DATABASE reliability`); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	mig, err := store.Open(ctx, k.dsn("postgres", "reliability"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := mig.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	mig.Close()

	n := pick(24, 40)
	w := newWorld(t, worldOpts{participants: n, dsn: k.dsn("postgres", "reliability"), sim: healthsim.Options{RotateRefreshTokens: true, Seed: 21}})
	target := fmt.Sprintf("127.0.0.1:%d/reliability", k.port)
	argv := append(slices.Clone(runArgs), "--user-timeout", "20s")
	figures := map[string]string{}

	// aborted checks a run that lost its database: exit 3, a clear error, no password anywhere.
	aborted := func(what string, r result, log string) {
		t.Helper()
		if r.code != 3 {
			t.Fatalf("%s: exit %d, want 3\nstderr:\n%s", what, r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, target) {
			t.Errorf("%s: stderr does not name %s:\n%s", what, target, r.stderr)
		}
		for i, out := range []string{r.stderr, r.stdout, log} {
			if strings.Contains(out, dbPassword) || strings.Contains(out, url.QueryEscape(dbPassword)) {
				t.Errorf("%s: output %d contains the database password", what, i)
			}
		}
		figures[what] = fmt.Sprintf("exit%d", r.code)
		t.Logf("%s: stderr: %s", what, firstLine(r.stderr, "sync-all:"))
	}
	// up starts the server again; the test's own connections died with it.
	up := func() {
		k.start()
		w.st.Pool().Reset()
	}
	// recovers runs once after the database is back: exit 0, converged, no grant lost.
	recovers := func(what string) {
		t.Helper()
		w.expireLeases()
		log := filepath.Join(w.dir, "host", what+"-next.log")
		w.mustRun(log, argv...)
		w.checkConverged("the run after " + what)
		w.checkStats("the run after " + what)
	}

	// 1. Down before the run starts.
	k.stop()
	log := filepath.Join(w.dir, "host", "down.log")
	aborted("down", w.run(log, argv...), readFile(t, log))
	up()
	w.nearExpiry()
	recovers("down")

	// 2. Stopped under a run, and left down until the run has ended. Heart rate is slowed so the
	// run is still busy when the server goes.
	for _, l := range w.legacy {
		w.sim.SetFault(l, healthsim.Fault{Path: "heart-rate", Latency: 100 * time.Millisecond})
	}
	for _, mode := range []string{"stopped", "restarted"} {
		w.nearExpiry()
		w.exec(`UPDATE fitbit_users SET device_last_sync_at = NULL`)
		for _, l := range w.legacy[:n/2] {
			w.deleteData(l)
		}
		log := filepath.Join(w.dir, "host", mode+".log")
		answers := make(chan struct{}, 1000)
		w.tap.set(nil, func(tokenAnswer) { answers <- struct{}{} })
		p := w.start(log, argv...)
		for range 10 {
			<-answers
		}
		k.stop()
		if mode == "restarted" {
			up()
		}
		r := p.wait(t, 2*time.Minute)
		w.tap.set(nil, nil)
		if mode == "stopped" {
			up()
		}
		aborted(mode, r, readFile(t, log))
		synced := 0
		for _, l := range userLines(readFile(t, log)) {
			if l.msg == "user synced" {
				synced++
			}
		}
		figures[mode+"_synced_before"] = fmt.Sprint(synced)
		recovers(mode)
	}
	for _, l := range w.legacy {
		w.sim.ClearFaults(l)
	}

	// 3. Token saves fail: the job's role may update everything but the token columns. Every
	// refresh then succeeds at the token endpoint and fails to save; the new tokens must never be
	// used, so nothing of the participant's data is fetched, and the stored (old) refresh token
	// must still work afterwards.
	w.exec(`CREATE ROLE reliability_job LOGIN`)
	w.exec(`GRANT USAGE ON SCHEMA public TO reliability_job`)
	w.exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO reliability_job`)
	w.exec(`REVOKE UPDATE ON fitbit_users FROM reliability_job`)
	w.exec(`GRANT UPDATE (status, timezone, device_last_sync_at, last_success_at, last_error, last_error_at, updated_at,
		lease_holder, lease_expires_at, last_claimed_at, claim_xid, timezone_checked_at, consecutive_failures) ON fitbit_users TO reliability_job`)
	w.nearExpiry()
	w.exec(`UPDATE fitbit_users SET device_last_sync_at = NULL`)
	before := w.sim.Stats()
	calls := func(l string) int {
		n := 0
		for _, e := range []string{"identity", "settings", "pairedDevices", "rollUp", "dailyRollUp", "list"} {
			n += w.sim.Requests(l, e)
		}
		return n
	}
	dataBefore := map[string]int{}
	for _, l := range w.legacy {
		dataBefore[l] = calls(l)
	}
	log = filepath.Join(w.dir, "host", "save-fails.log")
	p := w.startDSN(k.dsn("reliability_job", "reliability"), log, argv...)
	r := p.wait(t, 2*time.Minute)
	aborted("save_fails", r, readFile(t, log))
	issued := w.sim.Stats().Refreshes - before.Refreshes
	if issued == 0 {
		t.Fatal("no refresh reached the token endpoint: the test proves nothing")
	}
	for _, l := range w.legacy {
		if d := calls(l) - dataBefore[l]; d != 0 {
			t.Errorf("%s: %d data calls although its refreshed token could not be saved", l, d)
		}
	}
	figures["unsaved_refreshes"] = fmt.Sprint(issued)
	w.expireLeases()
	grace := w.sim.Stats().GraceReplays
	recovers("save_fails")
	figures["grace_replays"] = fmt.Sprint(w.sim.Stats().GraceReplays - grace)

	grants := w.checkGrants()
	st := w.checkStats("the end")
	var logs []string
	for _, f := range []string{"down", "stopped", "restarted", "save-fails"} {
		logs = append(logs, readFile(t, filepath.Join(w.dir, "host", f+".log")))
	}
	w.checkNoSecrets(logs...)
	// A run that lost its database cannot record its end; the next run on the host sees its
	// process is gone and marks it aborted.
	abandoned := w.checkRunsEnded("the runs that lost their database")
	t.Logf("RELIABILITY dbfaults participants=%d runs_marked_aborted=%d down=%s stopped=%s restarted=%s save_fails=%s synced_before_stop=%s synced_before_restart=%s unsaved_refreshes=%s grace_replays_after=%s next_run=exit0 converged=%d/%d grants_ok=%d/%d invalid_grants=%d",
		n, abandoned, figures["down"], figures["stopped"], figures["restarted"], figures["save_fails"], figures["stopped_synced_before"],
		figures["restarted_synced_before"], figures["unsaved_refreshes"], figures["grace_replays"],
		n-w.unconverged(), n, grants, n, st.InvalidGrants)
}

// firstLine returns the first line of s that starts with prefix (or "").
func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
