package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/healthsim"
	"github.com/studylab/sync-all/internal/pgtest"
	"github.com/studylab/sync-all/internal/store"
	"github.com/studylab/sync-all/internal/tokencrypt"
)

// tap is a command's stdout that the test reads while the command runs: it keeps everything
// written and hands each consent URL (a line of its own) to the "browser" as soon as it is printed.
type tap struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	line []byte
	urls chan string
}

func newTap() *tap { return &tap{urls: make(chan string, 4)} }

func (t *tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	for _, b := range p {
		if b != '\n' {
			t.line = append(t.line, b)
			continue
		}
		if l := string(t.line); strings.HasPrefix(l, "http") && strings.Contains(l, "redirect_uri=") {
			select {
			case t.urls <- l:
			default:
			}
		}
		t.line = t.line[:0]
	}
	return len(p), nil
}

func (t *tap) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// runIO drives the CLI in process with the given stdin and stdout.
func (w *world) runIO(stdin io.Reader, stdout io.Writer, stderrTerminal bool, args ...string) result {
	w.t.Helper()
	env := w.env()
	var errb bytes.Buffer
	e := &Env{Stdin: stdin, Stdout: stdout, Stderr: &errb, Getenv: func(k string) string { return env[k] },
		Now: w.clock.Now, StderrIsTerminal: stderrTerminal}
	code := e.Main(context.Background(), args)
	out := ""
	if s, ok := stdout.(fmt.Stringer); ok {
		out = s.String()
	}
	return result{code: code, stdout: out, stderr: errb.String()}
}

// authorize runs `users authorize args...` with a browser: a goroutine that waits for the consent
// URL on the command's stdout and opens it. In the loopback flow the browser follows the
// simulator's redirect to the command's callback; with --no-browser it stops at the redirect and
// the address it was sent to is pasted on stdin, as a person would.
func (w *world) authorize(args ...string) result {
	w.t.Helper()
	noBrowser := slices.Contains(args, "--no-browser")
	out := newTap()
	stdinR, stdinW := io.Pipe()
	finished := make(chan struct{})
	browsed := make(chan error, 1)
	go func() {
		var u string
		select {
		case u = <-out.urls:
		case <-finished:
			browsed <- nil
			return
		}
		client := &http.Client{Timeout: 30 * time.Second}
		if noBrowser {
			client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		}
		resp, err := client.Get(u)
		if err != nil {
			browsed <- err
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !noBrowser {
			browsed <- nil
			return
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || loc == "" {
			browsed <- fmt.Errorf("consent page answered %d without a redirect", resp.StatusCode)
			stdinW.Close()
			return
		}
		_, err = io.WriteString(stdinW, loc+"\n")
		browsed <- err
	}()
	r := w.runIO(stdinR, out, false, append([]string{"users", "authorize"}, args...)...)
	close(finished)
	stdinR.Close() // a command that stopped before reading must not leave the browser blocked
	if err := <-browsed; err != nil {
		w.t.Errorf("browser: %v", err)
	}
	return r
}

func (w *world) find(id string) store.User {
	w.t.Helper()
	us, err := w.st.FindUsers(context.Background(), []string{id})
	if err != nil {
		w.t.Fatalf("find %s: %v", id, err)
	}
	return us[0]
}

func (w *world) simParticipant(legacy string) healthsim.Participant {
	w.t.Helper()
	for _, p := range w.sim.Participants() {
		if p.LegacyUserID == legacy {
			return p
		}
	}
	w.t.Fatalf("simulator has no %s", legacy)
	return healthsim.Participant{}
}

// checkEnrolled asserts that legacy is stored as active with the simulator's identity and zone,
// and that the next run syncs it.
func (w *world) checkEnrolledAndSyncs(legacy, label string, r result) {
	w.t.Helper()
	if r.code != 0 {
		w.t.Fatalf("authorize %s: exit %d\nstdout: %s\nstderr: %s", legacy, r.code, r.stdout, r.stderr)
	}
	p := w.simParticipant(legacy)
	u := w.find(legacy)
	if u.Status != store.StatusActive || u.HealthUserID != p.HealthUserID || u.Timezone != p.TimeZone || u.Label != label ||
		u.Token.RefreshToken == "" || len(auth.MissingScopes(u.Token.Scopes)) > 0 {
		w.t.Fatalf("stored participant %+v (simulator %+v)", u, p)
	}
	want := fmt.Sprintf("participant %d is active: legacy id %s, health id %s, time zone %s (new participant)\n", u.ID, legacy, p.HealthUserID, p.TimeZone)
	if !strings.HasSuffix(r.stdout, want) {
		w.t.Errorf("stdout ends %q, want %q", r.stdout[max(0, len(r.stdout)-200):], want)
	}
	w.users[legacy] = u
	w.clock.Add(time.Minute)
	w.mustRun("run", "--user", legacy)
	if run := w.lastRun(); run.UsersOK != 1 || run.UsersFailed != 0 || run.Counts.Inserted == 0 {
		w.t.Fatalf("run after authorize: %+v", run)
	}
	y, m, d := w.localDate(legacy)
	w.assertMatchesSim(legacy, y, m, d)
	w.assertNoSecrets(r.stdout, r.stderr)
}

func TestAuthorizeLoopbackEnrollsAParticipantWhoseNextRunSyncs(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	w.sim.AddParticipant(healthsim.Participant{LegacyUserID: "NEWP01"})
	r := w.authorize("NEWP01", "--label", "clinic visit 1")
	w.checkEnrolledAndSyncs("NEWP01", "clinic visit 1", r)
	if !strings.Contains(r.stdout, "redirect_uri=http%3A%2F%2F127.0.0.1%3A") {
		t.Errorf("consent URL has no loopback redirect:\n%s", r.stdout)
	}
}

func TestAuthorizeNoBrowserReadsThePastedRedirect(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	w.sim.AddParticipant(healthsim.Participant{LegacyUserID: "NEWP02"})
	r := w.authorize("NEWP02", "--no-browser")
	w.checkEnrolledAndSyncs("NEWP02", "", r)
	// The redirect is a free loopback port where nothing listens.
	i := strings.Index(r.stdout, "browser goes to http://127.0.0.1:")
	if i < 0 || strings.HasPrefix(r.stdout[i+len("browser goes to http://127.0.0.1:"):], "1/") {
		t.Errorf("no usable loopback redirect in:\n%s", r.stdout)
	}
}

func TestAuthorizeRefusesAConsentOfAnotherParticipant(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	ctx := context.Background()
	other := w.sim.Participants()[1].LegacyUserID
	crbm := w.users["CRBM3W"]
	// CRBM3W, migrated, must consent again; someone else signs in on the consent screen.
	if err := w.st.SetStatus(ctx, crbm.ID, store.StatusNeedsReconsent, "invalid_grant"); err != nil {
		t.Fatal(err)
	}
	before, err := w.st.ListUsers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	r := w.authorize("CRBM3W", "--login-hint", other)
	want := fmt.Sprintf("this consent belongs to Fitbit user %s, not CRBM3W", other)
	if r.code != ExitPartial || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "nothing was stored") {
		t.Fatalf("exit %d, stderr %q; want exit 1 with %q", r.code, r.stderr, want)
	}
	after, _ := w.st.ListUsers(ctx, "")
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("a refused consent changed participants (-before +after):\n%s", diff)
	}

	// The right person consents: the participant keeps its row and id, with a new grant.
	r = w.authorize("CRBM3W")
	if r.code != 0 {
		t.Fatalf("re-consent: exit %d: %s", r.code, r.stderr)
	}
	u := w.find("CRBM3W")
	if u.ID != crbm.ID || u.Status != store.StatusActive || u.Token.RefreshToken == crbm.Token.RefreshToken || u.LastError != "" {
		t.Errorf("after re-consent: %+v (was id %d)", u, crbm.ID)
	}
	if !strings.Contains(r.stdout, "(consent renewed; id and data kept)") {
		t.Errorf("stdout: %s", r.stdout)
	}
	w.assertNoSecrets(r.stdout, r.stderr)
}

func TestAuthorizeRefusesMissingScopes(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 1})
	w.sim.AddParticipant(healthsim.Participant{LegacyUserID: "NEWP03"})
	w.sim.SetGrantedScopes("NEWP03", []string{healthsim.ScopeActivity})
	r := w.authorize("NEWP03", "--no-browser")
	if r.code != ExitPartial || !strings.Contains(r.stderr, "googlehealth.health_metrics_and_measurements.readonly, googlehealth.settings.readonly") ||
		strings.Contains(r.stderr, "activity_and_fitness") {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming the two missing scopes", r.code, r.stderr)
	}
	if _, err := w.st.FindUsers(context.Background(), []string{"NEWP03"}); err == nil {
		t.Errorf("a consent without every scope was stored")
	}

	// An id that is neither enrolled nor a legacy id is a usage error; no browser is involved.
	r = w.authorize("no-such-one")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "unknown participant no-such-one") {
		t.Errorf("unknown id: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestImportStoresGoodLinesNamesBadOnesAndIsIdempotent(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 2})
	ctx := context.Background()
	existing := w.sim.Participants()[1].LegacyUserID
	w.sim.AddParticipant(healthsim.Participant{LegacyUserID: "IMPRT1"})
	_, rt1, _ := w.sim.Grant("IMPRT1", nil)
	_, rtOther, _ := w.sim.Grant("IMPRT1", nil) // IMPRT1's token, claimed for IMPRT2 below
	file := filepath.Join(w.dir, "participants.csv")
	csv := "legacy_user_id,label,refresh_token\n" +
		"PEND01,waiting for consent,\n" +
		"IMPRT1,consented before,\"" + rt1 + "\"\n" +
		strings.ToLower(existing) + ",relabelled,\n" +
		"IMPRT2,wrong token," + rtOther + "\n"
	if err := os.WriteFile(file, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := w.st.ListUsers(ctx, "")

	r := w.run(w.env(), "users", "import", file)
	if r.code != ExitPartial || r.stdout != "3 imported (2 new, 1 updated, 0 unchanged), 1 failed\n" ||
		r.stderr != "line 5: the token belongs to Fitbit user IMPRT1, not IMPRT2\n" {
		t.Fatalf("import: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	after, _ := w.st.ListUsers(ctx, "")
	if len(after) != len(before)+2 {
		t.Fatalf("%d participants after import, want %d", len(after), len(before)+2)
	}
	if u := w.find("PEND01"); u.Status != store.StatusPendingConsent || u.Label != "waiting for consent" || u.Token.RefreshToken != "" {
		t.Errorf("PEND01: %+v", u)
	}
	sim := w.simParticipant("IMPRT1")
	if u := w.find("IMPRT1"); u.Status != store.StatusActive || u.HealthUserID != sim.HealthUserID || u.Timezone != sim.TimeZone ||
		u.Token.RefreshToken != rt1 || u.Token.AccessToken == "" {
		t.Errorf("IMPRT1: %+v", u)
	}
	if u, was := w.find(existing), w.users[existing]; u.Label != "relabelled" || u.Status != store.StatusActive || u.Token.RefreshToken != was.Token.RefreshToken {
		t.Errorf("%s: %+v", existing, u)
	}
	if _, err := w.st.FindUsers(ctx, []string{"IMPRT2"}); err == nil {
		t.Errorf("the bad line was stored")
	}

	// Again, from stdin: nothing changes.
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	r = w.runIO(f, &out, false, "users", "import", "-")
	if r.code != ExitPartial || out.String() != "3 imported (0 new, 0 updated, 3 unchanged), 1 failed\n" || !strings.HasPrefix(r.stderr, "line 5: ") {
		t.Fatalf("re-import: exit %d\nstdout %q\nstderr %q", r.code, out.String(), r.stderr)
	}
	again, _ := w.st.ListUsers(ctx, "")
	if diff := cmp.Diff(after, again); diff != "" {
		t.Errorf("re-import changed participants (-before +after):\n%s", diff)
	}

	// A dry run of JSON lines reports and stores nothing.
	jl := `{"legacy_user_id": "JSON01", "label": "j"}` + "\n" + `{"legacy_user_id": "PEND01", "label": "new label"}` + "\n" + `{"legacy_user_id": "bad"}` + "\n"
	out.Reset()
	r = w.runIO(strings.NewReader(jl), &out, false, "users", "import", "--dry-run", "-")
	if r.code != ExitPartial || out.String() != "dry run, nothing stored and no token checked: 2 imported (1 new, 1 updated, 0 unchanged), 1 failed\n" ||
		!strings.HasPrefix(r.stderr, "line 3: legacy_user_id \"BAD\"") {
		t.Fatalf("dry run: exit %d\nstdout %q\nstderr %q", r.code, out.String(), r.stderr)
	}
	dry, _ := w.st.ListUsers(ctx, "")
	if diff := cmp.Diff(after, dry); diff != "" {
		t.Errorf("dry run changed participants:\n%s", diff)
	}

	// The imported participant syncs.
	w.users["IMPRT1"] = w.find("IMPRT1")
	w.clock.Add(time.Minute)
	w.mustRun("run", "--user", "IMPRT1")
	if run := w.lastRun(); run.UsersOK != 1 || run.Counts.Inserted == 0 {
		t.Errorf("run of the imported participant: %+v", run)
	}
	w.assertNoSecrets(r.stdout, r.stderr)
}

// rowsOf counts a participant's rows in every table.
func (w *world) rowsOf(id int64) map[string]int {
	w.t.Helper()
	out := map[string]int{}
	for _, table := range []string{"fitbit_users", "daily_summaries", "intraday_heart_rate", "intraday_steps", "intraday_calories"} {
		col := "user_id"
		if table == "fitbit_users" {
			col = "id"
		}
		var n int
		if err := w.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM `+table+` WHERE `+col+` = $1`, id).Scan(&n); err != nil {
			w.t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

func TestUsersListDisableEnableRevokeRemove(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 3})
	w.mustRun("run")
	ps := w.sim.Participants()
	p1, p2 := ps[1].LegacyUserID, ps[2].LegacyUserID

	r := w.mustRun("users", "list", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	if len(list) != 3 || list[0]["legacy_user_id"] != "CRBM3W" || list[0]["status"] != "active" || list[0]["has_token"] != true ||
		list[0]["timezone"] != ps[0].TimeZone || list[0]["last_success_at"] == nil {
		t.Errorf("list --json: %v", list)
	}
	for _, u := range list {
		for k := range u {
			if strings.Contains(k, "token") && k != "has_token" && k != "token_expires_at" {
				t.Errorf("list --json has key %q", k)
			}
		}
	}
	w.assertNoSecrets(r.stdout)
	r = w.mustRun("users", "list")
	if !strings.HasPrefix(r.stdout, "ID  LEGACY ID  HEALTH ID") || !strings.Contains(r.stdout, p2) || strings.Count(r.stdout, "\n") != 4 {
		t.Errorf("list:\n%s", r.stdout)
	}
	w.assertNoSecrets(r.stdout)
	if r := w.run(w.env(), "users", "list", "--status", "asleep"); r.code != ExitUsage || !strings.Contains(r.stderr, `--status "asleep"`) {
		t.Errorf("bad --status: exit %d %s", r.code, r.stderr)
	}

	// disable / enable
	w.mustRun("users", "disable", p1)
	if u := w.find(p1); u.Status != store.StatusDisabled || u.Token.RefreshToken == "" {
		t.Errorf("disabled: %+v", u)
	}
	r = w.mustRun("users", "list", "--status", "disabled", "--json")
	if !strings.Contains(r.stdout, p1) || strings.Contains(r.stdout, p2) {
		t.Errorf("list --status disabled: %s", r.stdout)
	}
	w.mustRun("users", "enable", p1)
	if u := w.find(p1); u.Status != store.StatusActive {
		t.Errorf("enabled: %+v", u)
	}
	if r := w.mustRun("users", "enable", p1); r.stdout != p1+" is already active\n" {
		t.Errorf("enable an active participant: %q", r.stdout)
	}

	// revoke: Google is told, the tokens go, the participant must consent again.
	revoked := w.sim.Stats().Revocations
	w.mustRun("users", "revoke", p1)
	if u := w.find(p1); u.Status != store.StatusNeedsReconsent || u.Token.RefreshToken != "" || u.Token.AccessToken != "" {
		t.Errorf("revoked: %+v", u)
	}
	if got := w.sim.Stats().Revocations; got != revoked+1 {
		t.Errorf("revocations at Google: %d, want %d", got, revoked+1)
	}
	if r := w.run(w.env(), "users", "enable", p1); r.code != ExitPartial || !strings.Contains(r.stderr, "sync-all users authorize "+p1) {
		t.Errorf("enable a participant needing consent: exit %d %s", r.code, r.stderr)
	}

	// remove keeps the row (disabled, no tokens) and the data; --purge-data deletes everything.
	id2 := w.users[p2].ID
	w.mustRun("users", "remove", p2)
	if u := w.find(p2); u.Status != store.StatusDisabled || u.Token.RefreshToken != "" {
		t.Errorf("removed: %+v", u)
	}
	if rows := w.rowsOf(id2); rows["fitbit_users"] != 1 || rows["intraday_heart_rate"] == 0 {
		t.Errorf("remove without --purge-data: %v", rows)
	}
	crbm := w.users["CRBM3W"].ID
	if rows := w.rowsOf(crbm); rows["intraday_heart_rate"] == 0 || rows["daily_summaries"] == 0 {
		t.Fatalf("CRBM3W has no data to purge: %v", rows)
	}
	revoked = w.sim.Stats().Revocations
	r = w.mustRun("users", "remove", "CRBM3W", "--purge-data")
	for table, n := range w.rowsOf(crbm) {
		if n != 0 {
			t.Errorf("after remove --purge-data, %s has %d rows of CRBM3W", table, n)
		}
	}
	if w.sim.Stats().Revocations != revoked+1 {
		t.Errorf("remove did not revoke the grant at Google")
	}
	if rows := w.rowsOf(id2); rows["intraday_heart_rate"] == 0 {
		t.Errorf("purging CRBM3W removed another participant's data")
	}
	w.assertNoSecrets(r.stdout, r.stderr)

	for _, args := range [][]string{
		{"users", "disable", "NOPE00"}, {"users", "enable", "NOPE00"}, {"users", "revoke", "NOPE00"},
		{"users", "remove", "NOPE00", "--purge-data"}, {"backfill", "NOPE00", "--from", "2026-11-01"},
	} {
		if r := w.run(w.env(), args...); r.code != ExitUsage || !strings.Contains(r.stderr, "unknown participant NOPE00") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

func TestCommandsNeedAMigratedReachableDatabase(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 1})
	empty := pgtest.EmptyDSN(t)
	down := (&url.URL{Scheme: "postgres", User: url.UserPassword("u", "hunter2"), Host: "127.0.0.1:1", Path: "x"}).String()
	for _, args := range [][]string{
		{"users", "list"}, {"users", "import", "-"}, {"users", "disable", "CRBM3W"}, {"users", "authorize", "CRBM3W"},
		{"status"}, {"backfill", "CRBM3W", "--from", "2026-11-01"},
	} {
		r := w.run(w.env(EnvDatabaseURL, empty), args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, "run `sync-all migrate`") {
			t.Errorf("%v on an unmigrated database: exit %d, stderr %q", args, r.code, r.stderr)
		}
		r = w.run(w.env(EnvDatabaseURL, down), args...)
		if r.code != ExitAborted || strings.Contains(r.stderr, "hunter2") {
			t.Errorf("%v with the database down: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	// Commands that store tokens refuse to store them in the clear unless told to.
	for _, args := range [][]string{{"users", "authorize", "CRBM3W"}, {"backfill", "CRBM3W", "--from", "2026-11-01"}} {
		r := w.run(w.env(tokencrypt.EnvKey, ""), args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tokencrypt.EnvKey) {
			t.Errorf("%v without a token key: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}
