package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
	"github.com/studylab/sync-all/internal/store"
)

// NewCmdUsers builds `sync-all users` and its subcommands.
func NewCmdUsers(e *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Enroll, import, list and manage study participants",
		Long: `users manages the participants whose data sync-all reads: Google consent (authorize), bulk
import from the old script, listing, and disabling, re-enabling, revoking or removing one.

A participant ID is a legacy Fitbit id such as CRBM3W, a Google Health user id, or the numeric id
that "sync-all users list" shows.`,
		Example: `  sync-all users authorize CRBM3W
  sync-all users import participants.csv
  sync-all users list --status needs_reconsent
  sync-all users disable CRBM3W`,
		// Runnable, so that a mistyped subcommand is an error (exit 2) rather than the help text.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("unknown command %q for \"sync-all users\" (see sync-all users --help)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(NewCmdUsersAuthorize(e, nil), NewCmdUsersImport(e, nil), NewCmdUsersList(e, nil),
		NewCmdUsersDisable(e, nil), NewCmdUsersEnable(e, nil), NewCmdUsersRevoke(e, nil), NewCmdUsersRemove(e, nil), NewCmdUsersRekey(e, nil))
	return cmd
}

// failErr ends a command with exit 1: what was asked was refused or failed for the participant
// (their consent, their token), not because of flags or configuration.
func failErr(format string, a ...any) error {
	return &exitError{code: ExitPartial, err: fmt.Errorf(format, a...)}
}

// openChecked resolves the database settings, connects (exit 3 when unreachable) and checks the
// schema: a schema behind the binary is the operator's next step, not an outage (exit 2).
func openChecked(ctx context.Context, e *Env, c *Config) (*store.Store, error) {
	if err := c.resolveDatabase(e.Getenv); err != nil {
		return nil, err
	}
	return openResolved(ctx, e, c)
}

// openForTokens is openChecked for the commands that write tokens and call Google: every
// configuration check (database, token key, Google settings) comes before the connection, so a
// mistake is reported as such (exit 2) even when the database is also down.
func openForTokens(ctx context.Context, e *Env, c *Config) (*store.Store, error) {
	if err := c.resolveDatabase(e.Getenv); err != nil {
		return nil, err
	}
	// A refreshed token is saved before it is used.
	if err := c.requireTokenKey(); err != nil {
		return nil, err
	}
	if err := c.resolveGoogle(e.Getenv); err != nil {
		return nil, err
	}
	return openResolved(ctx, e, c)
}

// openResolved connects with settings already resolved and checks the schema.
func openResolved(ctx context.Context, e *Env, c *Config) (*store.Store, error) {
	st, err := openStore(ctx, *c)
	if err != nil {
		return nil, err
	}
	st.Now = e.Now
	if err := st.CheckSchema(ctx); err != nil {
		st.Close()
		return nil, schemaErr(err, ExitUsage)
	}
	return st, nil
}

// findParticipant resolves one ID (legacy, health or numeric id); unknown is a usage error.
func findParticipant(ctx context.Context, st *store.Store, id string) (store.User, error) {
	users, err := st.FindUsers(ctx, []string{id})
	var unknown *store.UnknownUsersError
	switch {
	case errors.As(err, &unknown):
		return store.User{}, usageErr("unknown participant %s: check `sync-all users list` (an id is a legacy Fitbit id such as CRBM3W, a health user id or a numeric id)", id)
	case err != nil:
		return store.User{}, abortErr(fmt.Errorf("look up participant %s: %w", id, err))
	}
	return users[0], nil
}

// google is what talking to Google needs: OAuth and the Health API.
type google struct {
	auth   *auth.Manager
	health *health.Client
}

// newGoogle builds the OAuth manager and a Health API client over transport (nil: the default).
func newGoogle(c Config, e *Env, transport http.RoundTripper) (*google, error) {
	am, err := newAuth(c, e.Now)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	// A minute per call: a heart-rate page is ~150 kB; a hung server must not hold a command forever.
	hc, err := health.New(health.Config{BaseURL: c.HealthAPIURL, HTTPClient: &http.Client{Timeout: time.Minute, Transport: transport}})
	if err != nil {
		return nil, usageErr("%s: %v", EnvHealthAPIURL, err)
	}
	return &google{auth: am, health: hc}, nil
}

// legacyIDPattern is a Fitbit user id as the old script stored it.
var legacyIDPattern = regexp.MustCompile(`^[A-Z0-9]{6}$`)

// maxLabel bounds a label: it is a note for the research team, shown in tables.
const maxLabel = 200

func checkLabel(s string) error {
	switch {
	case !utf8.ValidString(s):
		return errors.New("label is not valid UTF-8")
	case utf8.RuneCountInString(s) > maxLabel:
		return fmt.Errorf("label is longer than %d characters", maxLabel)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("label contains a control character (tab, newline, ...)")
	}
	return nil
}

// scopeNames shortens scope URLs to the names Google's consent screen and docs use.
func scopeNames(scopes []string) string {
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = strings.TrimPrefix(s, "https://www.googleapis.com/auth/")
	}
	return strings.Join(names, ", ")
}

// ---- users authorize ----

// AuthorizeOptions are the `users authorize` command's flags.
type AuthorizeOptions struct {
	Config    Config
	ID        string
	Label     string
	NoBrowser bool
	LoginHint string
}

// consentTimeout is how long authorize waits for the participant: Google's authorization codes
// live ten minutes, and reading the screen and signing in takes a few more.
const consentTimeout = 15 * time.Minute

// NewCmdUsersAuthorize builds `sync-all users authorize`.
func NewCmdUsersAuthorize(e *Env, runF func(*AuthorizeOptions) error) *cobra.Command {
	o := &AuthorizeOptions{}
	cmd := &cobra.Command{
		Use:   "authorize [ID]",
		Short: "Run the Google consent flow for a participant and store them as active",
		Long: `authorize prints a Google consent URL (and opens it in a browser when one is available on this
machine), waits for the participant to allow access, checks that every scope sync-all needs was
granted, reads who the participant is (legacy Fitbit id, Google Health id) and their time zone,
and stores them as active.

With ID (e.g. a migrated participant such as CRBM3W) the consent must belong to that participant,
otherwise it is refused and nothing is stored; the participant keeps its id and its data. Without
ID, or with a legacy id not enrolled yet, the participant is created (or matched by its ids).

--no-browser is for a server without a browser: open the URL anywhere, then paste the address the
browser ends up on (an error page on 127.0.0.1 is expected) or just its code.`,
		Example: `  sync-all users authorize CRBM3W
  sync-all users authorize CRBM3W --no-browser
  sync-all users authorize --label "site B, cohort 2" --login-hint participant@example.com`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.ID = args[0]
			}
			if runF != nil {
				return runF(o)
			}
			return o.run(cmd.Context(), e)
		},
	}
	fs := cmd.Flags()
	o.Config.configFlags(fs, true)
	fs.StringVar(&o.Label, "label", "", "a note for the research team (default: keep the current label)")
	fs.BoolVar(&o.NoBrowser, "no-browser", false, "print the URL and read the pasted redirect address (or code) from stdin")
	fs.StringVar(&o.LoginHint, "login-hint", "", "preselect this Google account on the consent screen (default: ID)")
	return cmd
}

func (o *AuthorizeOptions) run(ctx context.Context, e *Env) error {
	if o.ID != "" && strings.TrimSpace(o.ID) == "" {
		return usageErr("ID must not be blank")
	}
	if err := checkLabel(o.Label); err != nil {
		return usageErr("--label: %v", err)
	}
	st, err := openForTokens(ctx, e, &o.Config)
	if err != nil {
		return err
	}
	defer st.Close()

	var target *store.User
	expect := "" // the legacy id a participant not enrolled yet must consent with
	if o.ID != "" {
		users, err := st.FindUsers(ctx, []string{o.ID})
		var unknown *store.UnknownUsersError
		switch {
		case errors.As(err, &unknown):
			expect = strings.ToUpper(strings.TrimSpace(o.ID))
			if !legacyIDPattern.MatchString(expect) {
				return usageErr("unknown participant %s: check `sync-all users list`, or give the new participant's legacy Fitbit id (6 letters or digits such as CRBM3W)", o.ID)
			}
		case err != nil:
			return abortErr(fmt.Errorf("look up participant %s: %w", o.ID, err))
		default:
			target = &users[0]
		}
	}
	g, err := newGoogle(o.Config, e, nil)
	if err != nil {
		return err
	}
	hint := o.LoginHint
	if hint == "" {
		switch {
		case target != nil && target.LegacyUserID != "":
			hint = target.LegacyUserID
		case o.ID != "":
			hint = strings.TrimSpace(o.ID)
		}
	}

	cctx, cancel := context.WithTimeout(ctx, consentTimeout)
	defer cancel()
	var tok auth.Token
	if o.NoBrowser {
		tok, err = pasteConsent(cctx, e, g.auth, hint)
	} else {
		tok, err = g.auth.AuthorizeLoopback(cctx, hint, func(u string) { showConsentURL(e, u) })
	}
	if err != nil {
		return failErr("consent not completed: %v (nothing was stored)", err)
	}
	if missing := auth.MissingScopes(tok.Scopes); len(missing) > 0 {
		return failErr("consent refused: the participant did not grant %s; ask them to authorize again and leave every permission ticked (nothing was stored)", scopeNames(missing))
	}
	sess := g.health.Session(tok.AccessToken)
	ident, err := sess.Identity(ctx)
	if err != nil {
		return failErr("read the participant's identity: %v (nothing was stored)", err)
	}
	settings, err := sess.Settings(ctx)
	if err != nil {
		return failErr("read the participant's settings: %v (nothing was stored)", err)
	}
	checked := e.Now()

	row, err := consentRow(ctx, st, target, expect, ident)
	if err != nil {
		return err
	}
	act := store.Activation{LegacyUserID: ident.LegacyUserID, HealthUserID: ident.HealthUserID, Label: o.Label,
		Token: tok, Timezone: settings.TimeZone, CheckedAt: checked}
	if row != nil {
		act.UserID = row.ID
	}
	u, err := st.ActivateUser(ctx, act)
	switch {
	case errors.Is(err, store.ErrDuplicate):
		return failErr("Google account %s is already enrolled as another participant (a concurrent enrollment?); nothing was stored", describeIdentity(ident))
	case err != nil:
		return abortErr(fmt.Errorf("store the participant: %w", err))
	}
	how := "new participant"
	if row != nil {
		how = "consent renewed; id and data kept"
	}
	fmt.Fprintf(e.Stdout, "participant %d is active: legacy id %s, health id %s, time zone %s (%s)\n",
		u.ID, orDash(u.LegacyUserID), u.HealthUserID, orDash(u.Timezone), how)
	return nil
}

// consentRow decides which participant a consent belongs to: the named one (whose legacy or
// health id must be the consent's), else the one already holding the consent's ids, else none
// (a new participant). Any conflict refuses the consent before anything is stored.
func consentRow(ctx context.Context, st *store.Store, target *store.User, expect string, id health.Identity) (*store.User, error) {
	if target != nil && !consentBelongs(*target, id) {
		return nil, failErr("consent refused: this consent belongs to Fitbit user %s, not %s (nothing was stored); ask %s to sign in with their own Google account",
			describeIdentity(id), target.Handle(), target.Handle())
	}
	if expect != "" && !strings.EqualFold(id.LegacyUserID, expect) {
		return nil, failErr("consent refused: this consent belongs to Fitbit user %s, not %s (nothing was stored)", describeIdentity(id), expect)
	}
	keys := []string{id.HealthUserID}
	if id.LegacyUserID != "" {
		keys = append([]string{id.LegacyUserID}, keys...)
	}
	for _, k := range keys {
		found, err := st.FindUsers(ctx, []string{k})
		var unknown *store.UnknownUsersError
		if errors.As(err, &unknown) {
			continue
		}
		if err != nil {
			return nil, abortErr(fmt.Errorf("look up %s: %w", k, err))
		}
		f := found[0]
		// FindUsers also matches numeric ids; only a row that holds this id counts.
		if !strings.EqualFold(f.LegacyUserID, k) && f.HealthUserID != k {
			continue
		}
		if target == nil {
			target = &f // already enrolled (e.g. imported as pending): that row is the participant
			continue
		}
		if f.ID != target.ID {
			return nil, failErr("consent refused: Google account %s is already enrolled as participant %s (id %d), not %s (nothing was stored)",
				describeIdentity(id), f.Handle(), f.ID, target.Handle())
		}
	}
	return target, nil
}

// consentBelongs reports whether identity id is participant u's: same legacy Fitbit id, or
// same Google Health id. A row with neither has nothing to contradict.
func consentBelongs(u store.User, id health.Identity) bool {
	switch {
	case u.LegacyUserID != "" && strings.EqualFold(u.LegacyUserID, id.LegacyUserID):
		return true
	case u.HealthUserID != "" && u.HealthUserID == id.HealthUserID:
		return true
	}
	return u.LegacyUserID == "" && u.HealthUserID == ""
}

func describeIdentity(id health.Identity) string {
	if id.LegacyUserID != "" {
		return id.LegacyUserID
	}
	return "(none; Google Health user " + id.HealthUserID + ")"
}

// showConsentURL prints the consent URL on its own line (so it can be copied, or read by a
// script) and opens a browser when this is someone's desktop session.
func showConsentURL(e *Env, u string) {
	fmt.Fprintf(e.Stdout, "Open this URL in the participant's browser to give sync-all access:\n\n%s\n\n", u)
	if browserAvailable(e) {
		if err := openBrowser(u); err == nil {
			fmt.Fprintln(e.Stdout, "(opened in your browser)")
		}
	}
	fmt.Fprintf(e.Stdout, "Waiting for the consent (at most %s)...\n", consentTimeout)
}

// browserAvailable: a person at a graphical session on this machine, never cron, a pipe or a test.
func browserAvailable(e *Env) bool {
	if !isTerminal(e.Stdout) {
		return false
	}
	if runtime.GOOS == "darwin" {
		return true
	}
	return e.Getenv("DISPLAY") != "" || e.Getenv("WAYLAND_DISPLAY") != ""
}

func openBrowser(u string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	c := exec.Command(name, u)
	if err := c.Start(); err != nil {
		return err
	}
	go c.Wait() //nolint:errcheck // reap the opener; whether it worked shows in the browser
	return nil
}

// pasteConsent is the headless flow: the redirect goes to a loopback port where nothing listens
// (a free one, so no other local program receives the code), and the participant or operator
// pastes the address the browser shows.
func pasteConsent(ctx context.Context, e *Env, am *auth.Manager, hint string) (auth.Token, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return auth.Token{}, err
	}
	redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", port)
	c, err := am.NewConsent(redirect, hint)
	if err != nil {
		return auth.Token{}, err
	}
	fmt.Fprintf(e.Stdout, "Open this URL in any browser where the participant can sign in to Google:\n\n%s\n\n", c.URL())
	fmt.Fprintf(e.Stdout, "After access is allowed the browser goes to %s and shows an error page\n"+
		"(nothing listens there). Copy the whole address from the address bar, or just its code, and paste it here:\n", redirect)
	line, err := readLine(ctx, e.Stdin)
	if err != nil {
		return auth.Token{}, err
	}
	code, state, err := auth.ParseRedirect(line)
	if err != nil {
		return auth.Token{}, err
	}
	return am.Exchange(ctx, c, code, state)
}

func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// readLine reads one line (at most 16 KiB) from r, or gives up when ctx ends. The read itself
// cannot be interrupted; the process is about to exit in that case.
func readLine(ctx context.Context, r io.Reader) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := bufio.NewReaderSize(io.LimitReader(r, 16<<10), 4096).ReadString('\n')
		if err == io.EOF && strings.TrimSpace(s) != "" {
			err = nil
		}
		ch <- result{s, err}
	}()
	select {
	case res := <-ch:
		if res.err == io.EOF {
			return "", errors.New("no redirect address or code was pasted (end of input)")
		}
		if res.err != nil {
			return "", fmt.Errorf("read the pasted address: %w", res.err)
		}
		return strings.TrimSpace(res.s), nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the pasted address: %w", ctx.Err())
	}
}

// ---- users import ----

// ImportOptions are the `users import` command's flags.
type ImportOptions struct {
	Config Config
	File   string
	DryRun bool
}

// NewCmdUsersImport builds `sync-all users import`.
func NewCmdUsersImport(e *Env, runF func(*ImportOptions) error) *cobra.Command {
	o := &ImportOptions{}
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import participants from CSV or JSON lines (e.g. the old script's FitbitUser table)",
		Long: `import reads participants from FILE ("-" for stdin): CSV with a header row, or JSON lines (one
object per line; detected by a leading "{"). Fields: legacy_user_id (required, 6 letters or
digits), label, and optionally refresh_token with access_token and token_expiry (RFC 3339) for
participants who already consented to this Google OAuth client.

A row without refresh_token creates a pending_consent participant (or updates its label). A row
with one becomes active after a successful token refresh and a check that the token belongs to
that legacy id. Active and disabled participants keep their status and tokens; only their label
is updated. Importing the same file again changes nothing.

A bad line is reported with its line number and nothing of it is stored; the exit code is then 1.
--dry-run validates the file and reports what would change, without contacting Google.`,
		Example: `  sync-all users import participants.csv
  sync-all users import --dry-run participants.jsonl
  psql -c "\copy (SELECT user_id AS legacy_user_id, name AS label FROM \"FitbitUser\") TO STDOUT CSV HEADER" | sync-all users import -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.File = args[0]
			if runF != nil {
				return runF(o)
			}
			return o.run(cmd.Context(), e)
		},
	}
	fs := cmd.Flags()
	o.Config.configFlags(fs, true)
	fs.BoolVar(&o.DryRun, "dry-run", false, "validate and report what would change; store nothing and contact no one")
	return cmd
}

// importRow is one valid line of an import file.
type importRow struct {
	Line         int
	LegacyUserID string // uppercased
	Label        string // "" = keep the current label
	RefreshToken string
	AccessToken  string
	TokenExpiry  time.Time // zero = unknown
}

// lineError is a rejected line; Line 0 is the input as a whole.
type lineError struct {
	Line int
	Msg  string
}

func (l lineError) String() string {
	if l.Line == 0 {
		return "input: " + l.Msg
	}
	return fmt.Sprintf("line %d: %s", l.Line, l.Msg)
}

var importFields = []string{"legacy_user_id", "label", "refresh_token", "access_token", "token_expiry"}

// maxImportBytes bounds what import reads into memory; a study has hundreds of participants.
const maxImportBytes = 32 << 20

// maxTokenLen is well above Google's documented token sizes (2048 bytes for access tokens).
const maxTokenLen = 4096

// parseImport reads an import file (CSV with a header, or JSON lines) into valid rows and the
// lines it rejected. It is pure: no I/O beyond r. A legacy id that repeats is rejected on every
// line after its first. Messages never quote token values.
func parseImport(r io.Reader) ([]importRow, []lineError) {
	data, err := io.ReadAll(io.LimitReader(r, maxImportBytes+1))
	if err != nil {
		return nil, []lineError{{0, "cannot read: " + errorsWithoutContent(err).Error()}}
	}
	if len(data) > maxImportBytes {
		return nil, []lineError{{0, fmt.Sprintf("larger than %d MiB: split it", maxImportBytes>>20)}}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a spreadsheet's byte order mark
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, nil
	}
	var rows []importRow
	var errs []lineError
	if trimmed[0] == '{' {
		rows, errs = parseJSONLines(data)
	} else {
		rows, errs = parseCSV(data)
	}
	first := map[string]int{}
	kept := rows[:0]
	for _, row := range rows {
		if l, ok := first[row.LegacyUserID]; ok {
			errs = append(errs, lineError{row.Line, fmt.Sprintf("legacy_user_id %s repeats line %d", row.LegacyUserID, l)})
			continue
		}
		first[row.LegacyUserID] = row.Line
		kept = append(kept, row)
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return kept, errs
}

func parseCSV(data []byte) ([]importRow, []lineError) {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1 // counted here, for a message that says what is wrong
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, []lineError{{csvLine(err, 1), "header: " + csvProblem(err)}}
	}
	hline, _ := cr.FieldPos(0)
	cols := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		n := strings.ToLower(strings.TrimSpace(h))
		switch {
		case !slices.Contains(importFields, n):
			return nil, []lineError{{hline, fmt.Sprintf("header: unknown column %q (the columns are %s)", clip(n, 40), strings.Join(importFields, ", "))}}
		case seen[n]:
			return nil, []lineError{{hline, fmt.Sprintf("header: column %s appears twice", n)}}
		}
		seen[n], cols[i] = true, n
	}
	if !seen["legacy_user_id"] {
		return nil, []lineError{{hline, "header: no legacy_user_id column (the first line must name the columns)"}}
	}
	var rows []importRow
	var errs []lineError
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				errs = append(errs, lineError{csvLine(err, 0), csvProblem(err)})
				continue
			}
			errs = append(errs, lineError{0, "cannot read: " + err.Error()})
			break
		}
		line, _ := cr.FieldPos(0)
		if blank(rec) {
			continue
		}
		if len(rec) != len(cols) {
			errs = append(errs, lineError{line, fmt.Sprintf("%d fields, the header has %d", len(rec), len(cols))})
			continue
		}
		f := make(map[string]string, len(cols))
		for i, c := range cols {
			f[c] = rec[i]
		}
		row, err := validateImport(line, f)
		if err != nil {
			errs = append(errs, lineError{line, err.Error()})
			continue
		}
		rows = append(rows, row)
	}
	return rows, errs
}

func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// csvLine is where a CSV error starts; def when the error carries no position.
func csvLine(err error, def int) int {
	var pe *csv.ParseError
	if errors.As(err, &pe) && pe.StartLine > 0 {
		return pe.StartLine
	}
	return def
}

// csvProblem describes a CSV error without its position (the line is reported separately).
func csvProblem(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "not valid CSV: " + pe.Err.Error()
	}
	if err == io.EOF {
		return "empty"
	}
	return "not valid CSV"
}

// jsonImport is one JSON line; pointers tell a missing field from an empty one.
type jsonImport struct {
	LegacyUserID *string `json:"legacy_user_id"`
	Label        *string `json:"label"`
	RefreshToken *string `json:"refresh_token"`
	AccessToken  *string `json:"access_token"`
	TokenExpiry  *string `json:"token_expiry"`
}

func parseJSONLines(data []byte) ([]importRow, []lineError) {
	var rows []importRow
	var errs []lineError
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := i + 1
		s := bytes.TrimSpace(raw)
		if len(s) == 0 {
			continue
		}
		if s[0] != '{' {
			errs = append(errs, lineError{line, "not a JSON object (every line of a JSON lines file is one {...})"})
			continue
		}
		var v jsonImport
		dec := json.NewDecoder(bytes.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			errs = append(errs, lineError{line, jsonProblem(err)})
			continue
		}
		if _, err := dec.Token(); err != io.EOF {
			errs = append(errs, lineError{line, "more than one JSON value on the line"})
			continue
		}
		f := map[string]string{}
		for name, p := range map[string]*string{"legacy_user_id": v.LegacyUserID, "label": v.Label,
			"refresh_token": v.RefreshToken, "access_token": v.AccessToken, "token_expiry": v.TokenExpiry} {
			if p != nil {
				f[name] = *p
			}
		}
		row, err := validateImport(line, f)
		if err != nil {
			errs = append(errs, lineError{line, err.Error()})
			continue
		}
		rows = append(rows, row)
	}
	return rows, errs
}

// jsonProblem describes a JSON error without quoting values.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON (at character %d)", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("%s must be a string", clip(te.Field, 40))
		}
		return "not a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "not valid JSON (the object is cut short)"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// The key is a column name, not a value: say which (the columns are fixed).
		return fmt.Sprintf("unknown field %s (the fields are %s)", clip(strings.TrimPrefix(err.Error(), "json: unknown field "), 40), strings.Join(importFields, ", "))
	}
	return "not valid JSON"
}

// validateImport checks one line's fields and returns the row as stored.
func validateImport(line int, f map[string]string) (importRow, error) {
	row := importRow{
		Line:         line,
		LegacyUserID: strings.ToUpper(strings.TrimSpace(f["legacy_user_id"])),
		Label:        strings.TrimSpace(f["label"]),
		RefreshToken: strings.TrimSpace(f["refresh_token"]),
		AccessToken:  strings.TrimSpace(f["access_token"]),
	}
	if row.LegacyUserID == "" {
		return importRow{}, errors.New("legacy_user_id is missing")
	}
	if exp := strings.TrimSpace(f["token_expiry"]); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil {
			return importRow{}, fmt.Errorf("token_expiry %q is not an RFC 3339 time such as 2026-12-03T14:00:00Z", clip(exp, 40))
		}
		row.TokenExpiry = t.UTC()
	}
	if err := row.valid(); err != nil {
		return importRow{}, err
	}
	return row, nil
}

// valid checks a row's invariants; every row parseImport returns satisfies it.
func (r importRow) valid() error {
	switch {
	case !legacyIDPattern.MatchString(r.LegacyUserID):
		return fmt.Errorf("legacy_user_id %q is not 6 letters or digits (such as CRBM3W)", clip(r.LegacyUserID, 20))
	case r.RefreshToken != "" && !tokenShaped(r.RefreshToken):
		return errors.New("refresh_token is not a token (printable ASCII without spaces, at most 4096 characters)")
	case r.AccessToken != "" && !tokenShaped(r.AccessToken):
		return errors.New("access_token is not a token (printable ASCII without spaces, at most 4096 characters)")
	case r.AccessToken != "" && r.RefreshToken == "":
		return errors.New("access_token without refresh_token: an access token alone expires within the hour")
	case !r.TokenExpiry.IsZero() && r.AccessToken == "":
		return errors.New("token_expiry without access_token")
	}
	return checkLabel(r.Label)
}

func tokenShaped(s string) bool {
	if len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func (o *ImportOptions) run(ctx context.Context, e *Env) error {
	var in io.Reader = e.Stdin
	if o.File != "-" {
		f, err := os.Open(o.File)
		if err != nil {
			return usageErr("cannot read %s: %v", o.File, errorsWithoutContent(err))
		}
		defer f.Close()
		in = f
	}
	rows, bad := parseImport(in)

	st, err := openChecked(ctx, e, &o.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	var g *google
	if !o.DryRun && slices.ContainsFunc(rows, func(r importRow) bool { return r.RefreshToken != "" }) {
		if err := o.Config.requireTokenKey(); err != nil {
			return err
		}
		if err := o.Config.resolveGoogle(e.Getenv); err != nil {
			return err
		}
		if g, err = newGoogle(o.Config, e, nil); err != nil {
			return err
		}
	}
	users, err := st.ListUsers(ctx, "")
	if err != nil {
		return abortErr(err)
	}
	im := importer{o: o, e: e, st: st, g: g, byLegacy: map[string]store.User{}, byHealth: map[string]store.User{}}
	for _, u := range users {
		if u.LegacyUserID != "" {
			im.byLegacy[strings.ToUpper(u.LegacyUserID)] = u
		}
		if u.HealthUserID != "" {
			im.byHealth[u.HealthUserID] = u
		}
	}

	var counts [3]int // by store.Change
	var fatal error
	for _, row := range rows {
		ch, err := im.row(ctx, row)
		var ee *exitError
		if errors.As(err, &ee) {
			fatal = err
			break
		}
		if err != nil {
			bad = append(bad, lineError{row.Line, err.Error()})
			continue
		}
		counts[ch]++
	}
	sort.SliceStable(bad, func(i, j int) bool { return bad[i].Line < bad[j].Line })
	prefix := ""
	if o.DryRun {
		prefix = "dry run, nothing stored and no token checked: "
	}
	fmt.Fprintf(e.Stdout, "%s%d imported (%d new, %d updated, %d unchanged), %d failed\n", prefix,
		counts[store.Created]+counts[store.Updated]+counts[store.Unchanged],
		counts[store.Created], counts[store.Updated], counts[store.Unchanged], len(bad))
	for _, b := range bad {
		fmt.Fprintln(e.Stderr, b)
	}
	switch {
	case fatal != nil:
		return fatal
	case len(bad) > 0:
		return silentExit(ExitPartial)
	}
	return nil
}

// importer carries an import's state: who is enrolled, and the Google clients.
type importer struct {
	o        *ImportOptions
	e        *Env
	st       *store.Store
	g        *google
	byLegacy map[string]store.User
	byHealth map[string]store.User
}

// row imports one row. A plain error rejects the line (nothing of it stored); an *exitError
// stops the import (database gone, OAuth client rejected).
func (im *importer) row(ctx context.Context, row importRow) (store.Change, error) {
	ex, exists := im.byLegacy[row.LegacyUserID]
	// Only a participant without a working grant takes the file's token: an active one keeps
	// its own (the file's may be older), and a disabled one stays as the operator left it.
	withToken := row.RefreshToken != "" && (!exists || ex.Status == store.StatusPendingConsent || ex.Status == store.StatusNeedsReconsent)
	if im.o.DryRun {
		switch {
		case !exists:
			return store.Created, nil
		case withToken, row.Label != "" && row.Label != ex.Label:
			return store.Updated, nil
		}
		return store.Unchanged, nil
	}
	if !withToken {
		ch, err := im.st.ImportPending(ctx, row.LegacyUserID, row.Label)
		if err != nil {
			return 0, abortErr(err)
		}
		if !exists {
			im.byLegacy[row.LegacyUserID] = store.User{LegacyUserID: row.LegacyUserID, Label: row.Label, Status: store.StatusPendingConsent}
		}
		return ch, nil
	}

	// Fresh needs a saver; the refreshed token is kept in memory and stored below with the rest
	// of the row, so that a line refused after the refresh stores nothing. (Google does not
	// rotate refresh tokens, so the file's token stays valid either way.)
	var saver memorySaver
	cur := auth.Token{RefreshToken: row.RefreshToken, AccessToken: row.AccessToken, Expiry: row.TokenExpiry}
	tok, _, err := im.g.auth.Fresh(ctx, ex.ID, cur, true, &saver)
	switch {
	case errors.Is(err, auth.ErrClient):
		return 0, usageErr("the OAuth client was rejected while refreshing the token of line %d: check %s and %s", row.Line, EnvClientID, EnvClientSecret)
	case errors.Is(err, auth.ErrReconsent):
		return 0, fmt.Errorf("the refresh token is expired, revoked or not for this OAuth client (invalid_grant): %s must consent again (sync-all users authorize %s)", row.LegacyUserID, row.LegacyUserID)
	case err != nil:
		return 0, fmt.Errorf("refresh the token: %v", err)
	}
	if missing := auth.MissingScopes(tok.Scopes); len(missing) > 0 {
		return 0, fmt.Errorf("the grant lacks %s: %s must consent again (sync-all users authorize %s)", scopeNames(missing), row.LegacyUserID, row.LegacyUserID)
	}
	sess := im.g.health.Session(tok.AccessToken)
	ident, err := sess.Identity(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the identity: %v", err)
	}
	if !strings.EqualFold(ident.LegacyUserID, row.LegacyUserID) {
		return 0, fmt.Errorf("the token belongs to Fitbit user %s, not %s", describeIdentity(ident), row.LegacyUserID)
	}
	if h, ok := im.byHealth[ident.HealthUserID]; ok && !strings.EqualFold(h.LegacyUserID, row.LegacyUserID) {
		return 0, fmt.Errorf("Google account %s is already enrolled as participant %s", ident.HealthUserID, h.Handle())
	}
	settings, err := sess.Settings(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the settings: %v", err)
	}
	ch, err := im.st.ImportActive(ctx, store.Activation{LegacyUserID: row.LegacyUserID, HealthUserID: ident.HealthUserID,
		Label: row.Label, Token: tok, Timezone: settings.TimeZone, CheckedAt: im.e.Now()})
	switch {
	case errors.Is(err, store.ErrDisabled):
		return 0, fmt.Errorf("%s was disabled meanwhile: enable it first (sync-all users enable %s)", row.LegacyUserID, row.LegacyUserID)
	case errors.Is(err, store.ErrDuplicate):
		return 0, fmt.Errorf("Google account %s is already enrolled as another participant", ident.HealthUserID)
	case err != nil:
		return 0, abortErr(err)
	}
	u := store.User{LegacyUserID: row.LegacyUserID, HealthUserID: ident.HealthUserID, Status: store.StatusActive}
	im.byLegacy[row.LegacyUserID], im.byHealth[ident.HealthUserID] = u, u
	return ch, nil
}

// memorySaver holds a refreshed token until the import stores it with its row.
type memorySaver struct{ tok auth.Token }

func (m *memorySaver) SaveToken(_ context.Context, _ int64, _ string, tok auth.Token) error {
	m.tok = tok
	return nil
}

// ---- users list ----

// ListOptions are the `users list` command's flags.
type ListOptions struct {
	Config Config
	Status string
	JSON   bool
}

var statuses = []string{store.StatusPendingConsent, store.StatusActive, store.StatusNeedsReconsent, store.StatusDisabled}

// NewCmdUsersList builds `sync-all users list`.
func NewCmdUsersList(e *Env, runF func(*ListOptions) error) *cobra.Command {
	o := &ListOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List participants with their status, time zone, token expiry and last sync",
		Long: `list prints every participant (or those with --status) as a table, or with --json as an array
of objects for scripts. Tokens are never printed.`,
		Example: `  sync-all users list
  sync-all users list --status needs_reconsent
  sync-all users list --json | jq -r '.[] | select(.consecutive_failures > 0) | .legacy_user_id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(o)
			}
			return o.run(cmd.Context(), e)
		},
	}
	o.Config.configFlags(cmd.Flags(), false)
	cmd.Flags().StringVar(&o.Status, "status", "", "only participants with this status: "+strings.Join(statuses, ", "))
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print a JSON array instead of a table")
	return cmd
}

// userJSON is a participant as `users list --json` prints it: never a token.
type userJSON struct {
	ID                  int64      `json:"id"`
	LegacyUserID        *string    `json:"legacy_user_id"`
	HealthUserID        *string    `json:"health_user_id"`
	Label               string     `json:"label"`
	Status              string     `json:"status"`
	Timezone            *string    `json:"timezone"`
	HasToken            bool       `json:"has_token"`
	TokenExpiresAt      *time.Time `json:"token_expires_at"`
	Scopes              []string   `json:"scopes"`
	DeviceLastSyncAt    *time.Time `json:"device_last_sync_at"`
	LastSuccessAt       *time.Time `json:"last_success_at"`
	LastError           *string    `json:"last_error"`
	LastErrorAt         *time.Time `json:"last_error_at"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
}

func toUserJSON(u store.User) userJSON {
	scopes := u.Token.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return userJSON{ID: u.ID, LegacyUserID: nullable(u.LegacyUserID), HealthUserID: nullable(u.HealthUserID),
		Label: u.Label, Status: u.Status, Timezone: nullable(u.Timezone), HasToken: u.Token.RefreshToken != "",
		TokenExpiresAt: nullableTime(u.Token.Expiry), Scopes: scopes, DeviceLastSyncAt: nullableTime(u.DeviceLastSyncAt),
		LastSuccessAt: nullableTime(u.LastSuccessAt), LastError: nullable(u.LastError), LastErrorAt: nullableTime(u.LastErrorAt),
		ConsecutiveFailures: u.ConsecutiveFailures}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullableTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (o *ListOptions) run(ctx context.Context, e *Env) error {
	if o.Status != "" && !slices.Contains(statuses, o.Status) {
		return usageErr("--status %q: use one of %s", o.Status, strings.Join(statuses, ", "))
	}
	st, err := openChecked(ctx, e, &o.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := st.ListUsers(ctx, o.Status)
	if err != nil {
		return abortErr(err)
	}
	if o.JSON {
		out := make([]userJSON, 0, len(users))
		for _, u := range users {
			out = append(out, toUserJSON(u))
		}
		return writeJSON(e.Stdout, out)
	}
	tw := newTable(e.Stdout)
	fmt.Fprintln(tw, "ID\tLEGACY ID\tHEALTH ID\tLABEL\tSTATUS\tTIME ZONE\tTOKEN EXPIRY\tLAST SUCCESS\tLAST ERROR")
	for _, u := range users {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, orDash(u.LegacyUserID), orDash(u.HealthUserID),
			cell(u.Label, 30), u.Status, orDash(u.Timezone), stamp(u.Token.Expiry), stamp(u.LastSuccessAt), cell(u.LastError, 60))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// cell makes text safe for a table cell: one line, no tabs, at most n characters.
func cell(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return clip(s, n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// stamp formats an instant for tables: UTC, to the minute; "-" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

// ---- users disable / enable / revoke / remove ----

// IDOptions are the flags of the commands that act on one participant.
type IDOptions struct {
	Config    Config
	ID        string
	PurgeData bool // remove only
}

// newIDCmd builds a command that acts on one participant: it opens the database and finds the
// participant, then hands both to run.
func newIDCmd(e *Env, o *IDOptions, use, short, long, example string, google bool, runF func(*IDOptions) error,
	run func(context.Context, *Env, *IDOptions, *store.Store, store.User) error) *cobra.Command {
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			if strings.TrimSpace(o.ID) == "" {
				return usageErr("ID must not be blank")
			}
			if runF != nil {
				return runF(o)
			}
			ctx := cmd.Context()
			st, err := openChecked(ctx, e, &o.Config)
			if err != nil {
				return err
			}
			defer st.Close()
			u, err := findParticipant(ctx, st, o.ID)
			if err != nil {
				return err
			}
			return run(ctx, e, o, st, u)
		},
	}
	o.Config.configFlags(cmd.Flags(), google)
	return cmd
}

// revokeAtGoogle revokes the participant's grant at Google; false when no token is stored.
func revokeAtGoogle(ctx context.Context, e *Env, o *IDOptions, u store.User) (bool, error) {
	tok := grantToken(u)
	if tok == "" {
		return false, nil
	}
	if err := o.Config.resolveGoogle(e.Getenv); err != nil {
		return false, err
	}
	am, err := newAuth(o.Config, e.Now)
	if err != nil {
		return false, usageErr("%v", err)
	}
	return true, am.Revoke(ctx, tok)
}

// NewCmdUsersDisable builds `sync-all users disable`.
func NewCmdUsersDisable(e *Env, runF func(*IDOptions) error) *cobra.Command {
	return newIDCmd(e, &IDOptions{}, "disable ID", "Stop syncing a participant (tokens and data are kept)",
		`disable sets the participant to disabled: runs skip them until "sync-all users enable".`,
		`  sync-all users disable CRBM3W`, false, runF, runDisable)
}

func runDisable(ctx context.Context, e *Env, o *IDOptions, st *store.Store, u store.User) error {
	if u.Status == store.StatusDisabled {
		fmt.Fprintf(e.Stdout, "%s is already disabled\n", u.Handle())
		return nil
	}
	if err := st.SetStatus(ctx, u.ID, store.StatusDisabled, ""); err != nil {
		return abortErr(err)
	}
	fmt.Fprintf(e.Stdout, "%s disabled (was %s); re-enable with: sync-all users enable %s\n", u.Handle(), u.Status, u.Handle())
	return nil
}

// NewCmdUsersEnable builds `sync-all users enable`.
func NewCmdUsersEnable(e *Env, runF func(*IDOptions) error) *cobra.Command {
	return newIDCmd(e, &IDOptions{}, "enable ID", "Re-enable a disabled participant",
		`enable undoes "disable": the participant becomes active again when a token is stored, else
pending_consent (then run "sync-all users authorize ID"). Only a disabled participant can be enabled.`,
		`  sync-all users enable CRBM3W`, false, runF, runEnable)
}

func runEnable(ctx context.Context, e *Env, o *IDOptions, st *store.Store, u store.User) error {
	switch u.Status {
	case store.StatusActive:
		fmt.Fprintf(e.Stdout, "%s is already active\n", u.Handle())
		return nil
	case store.StatusPendingConsent, store.StatusNeedsReconsent:
		return failErr("%s is %s, not disabled: the participant must consent: sync-all users authorize %s", u.Handle(), u.Status, u.Handle())
	}
	status, err := st.EnableUser(ctx, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return failErr("%s changed meanwhile and is no longer disabled: check sync-all users list", u.Handle())
	}
	if err != nil {
		return abortErr(err)
	}
	if status == store.StatusActive {
		fmt.Fprintf(e.Stdout, "%s enabled: active\n", u.Handle())
		return nil
	}
	fmt.Fprintf(e.Stdout, "%s enabled: %s (no token stored): sync-all users authorize %s\n", u.Handle(), status, u.Handle())
	return nil
}

// NewCmdUsersRevoke builds `sync-all users revoke`.
func NewCmdUsersRevoke(e *Env, runF func(*IDOptions) error) *cobra.Command {
	return newIDCmd(e, &IDOptions{}, "revoke ID", "Revoke a participant's Google grant and delete their tokens",
		`revoke asks Google to revoke the participant's grant, then deletes the stored tokens and sets the
participant to needs_reconsent. Their data is kept. If Google cannot be reached nothing changes.`,
		`  sync-all users revoke CRBM3W`, true, runF, runRevoke)
}

func runRevoke(ctx context.Context, e *Env, o *IDOptions, st *store.Store, u store.User) error {
	what := "no token was stored, nothing to revoke at Google"
	revoked, err := revokeAtGoogle(ctx, e, o, u)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return err
	case err != nil:
		return failErr("revoke %s's grant at Google: %v (nothing changed; try again)", u.Handle(), err)
	case revoked:
		what = "grant revoked at Google"
	}
	if err := st.ClearTokens(ctx, u.ID, store.StatusNeedsReconsent, "grant revoked with sync-all users revoke"); err != nil {
		return abortErr(err)
	}
	fmt.Fprintf(e.Stdout, "%s: %s, tokens deleted, status needs_reconsent (data kept)\n", u.Handle(), what)
	return nil
}

// grantToken is the token that revokes the participant's grant: the refresh token, else the
// access token (Google revokes the whole grant behind either).
func grantToken(u store.User) string {
	if u.Token.RefreshToken != "" {
		return u.Token.RefreshToken
	}
	return u.Token.AccessToken
}

// NewCmdUsersRemove builds `sync-all users remove`.
func NewCmdUsersRemove(e *Env, runF func(*IDOptions) error) *cobra.Command {
	o := &IDOptions{}
	cmd := newIDCmd(e, o, "remove ID", "Remove a participant: revoke at Google, delete tokens (and with --purge-data, all their rows)",
		`remove revokes the participant's grant at Google (best effort: a failure is a warning), deletes the
stored tokens and keeps the participant as disabled with its data. With --purge-data the
participant's row and every data row of theirs (summaries, heart rate, steps, calories) are deleted.`,
		`  sync-all users remove CRBM3W
  sync-all users remove CRBM3W --purge-data`, true, runF, runRemove)
	cmd.Flags().BoolVar(&o.PurgeData, "purge-data", false, "also delete the participant and all their data rows (cannot be undone)")
	return cmd
}

func runRemove(ctx context.Context, e *Env, o *IDOptions, st *store.Store, u store.User) error {
	if _, err := revokeAtGoogle(ctx, e, o, u); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		fmt.Fprintf(e.Stderr, "warning: could not revoke %s's grant at Google: %v; the participant can remove access at https://myaccount.google.com/permissions\n", u.Handle(), err)
	}
	if o.PurgeData {
		if err := st.DeleteUser(ctx, u.ID); err != nil {
			return abortErr(err)
		}
		fmt.Fprintf(e.Stdout, "%s removed: the participant and all their data rows are deleted\n", u.Handle())
		return nil
	}
	if err := st.ClearTokens(ctx, u.ID, store.StatusDisabled, "removed with sync-all users remove"); err != nil {
		return abortErr(err)
	}
	fmt.Fprintf(e.Stdout, "%s removed: tokens deleted, kept as disabled with its data (--purge-data deletes it)\n", u.Handle())
	return nil
}
