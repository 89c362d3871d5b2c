package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"
)

func TestParseImport(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		rows []importRow
		errs []lineError
	}{
		{name: "empty", in: " \n\t\n"},
		{
			name: "csv with BOM, CRLF, spaces, lowercase ids and a blank line",
			in: "\xef\xbb\xbfLegacy_User_ID, label ,refresh_token,access_token,token_expiry\r\n" +
				"crbm3w,Site A,1//0abc,ya29.x,2026-12-03T16:00:00+01:00\r\n" +
				"\r\n" +
				"  7QK2LM , \"Doe, Jane\",,,\r\n",
			rows: []importRow{
				{Line: 2, LegacyUserID: "CRBM3W", Label: "Site A", RefreshToken: "1//0abc", AccessToken: "ya29.x", TokenExpiry: exp},
				{Line: 4, LegacyUserID: "7QK2LM", Label: "Doe, Jane"},
			},
		},
		{
			name: "csv with only the required column",
			in:   "legacy_user_id\nAAAAAA\nBBBBBB\n",
			rows: []importRow{{Line: 2, LegacyUserID: "AAAAAA"}, {Line: 3, LegacyUserID: "BBBBBB"}},
		},
		{
			name: "csv bad lines are reported and the good ones kept",
			in: "legacy_user_id,label,refresh_token,access_token,token_expiry\n" +
				"AAAAAA,ok,,,\n" +
				"TOOLONG1,bad id,,,\n" +
				"BBBBBB,too few fields\n" +
				"CCCCCC,bare \"quote,,,\n" +
				"DDDDDD,,,ya29.alone,\n" +
				"EEEEEE,,1//0x,ya29.y,tomorrow\n" +
				"aaaaaa,repeat,,,\n" +
				"FFFFFF,,1//0has space,,\n" +
				",no id,,,\n" +
				"GGGGGG,\"two\nlines\",,,\n" +
				"HHHHHH,last,,,\n",
			rows: []importRow{{Line: 2, LegacyUserID: "AAAAAA", Label: "ok"}, {Line: 13, LegacyUserID: "HHHHHH", Label: "last"}},
			errs: []lineError{
				{3, `legacy_user_id "TOOLONG1" is not 6 letters or digits (such as CRBM3W)`},
				{4, "2 fields, the header has 5"},
				{5, `not valid CSV: bare " in non-quoted-field`},
				{6, "access_token without refresh_token: an access token alone expires within the hour"},
				{7, `token_expiry "tomorrow" is not an RFC 3339 time such as 2026-12-03T14:00:00Z`},
				{8, "legacy_user_id AAAAAA repeats line 2"},
				{9, "refresh_token is not a token (printable ASCII without spaces, at most 4096 characters)"},
				{10, "legacy_user_id is missing"},
				{11, "label contains a control character (tab, newline, ...)"},
			},
		},
		{
			name: "csv unknown column",
			in:   "legacy_user_id,refresh-token\nAAAAAA,x\n",
			errs: []lineError{{1, `header: unknown column "refresh-token" (the columns are legacy_user_id, label, refresh_token, access_token, token_expiry)`}},
		},
		{
			name: "csv without the id column",
			in:   "label\nsomeone\n",
			errs: []lineError{{1, "header: no legacy_user_id column (the first line must name the columns)"}},
		},
		{
			name: "csv repeated column",
			in:   "legacy_user_id,label,LABEL\nAAAAAA,a,b\n",
			errs: []lineError{{1, "header: column label appears twice"}},
		},
		{
			name: "json lines",
			in: "  {\"legacy_user_id\": \"crbm3w\", \"label\": \"A\", \"refresh_token\": \"1//0r\"}\n" +
				"\n" +
				"{\"legacy_user_id\": \"BBBBBB\", \"nickname\": \"x\"}\n" +
				"{\"legacy_user_id\": 123456}\n" +
				"{\"legacy_user_id\": \"CCCCCC\"} {\"legacy_user_id\": \"DDDDDD\"}\n" +
				"[\"EEEEEE\"]\n" +
				"{\"legacy_user_id\": \"FFFFFF\",\n" +
				"{\"legacy_user_id\": \"GGGGGG\", \"access_token\": \"ya29.a\", \"refresh_token\": \"1//0b\", \"token_expiry\": \"2026-12-03T15:00:00Z\"}\r\n",
			rows: []importRow{
				{Line: 1, LegacyUserID: "CRBM3W", Label: "A", RefreshToken: "1//0r"},
				{Line: 8, LegacyUserID: "GGGGGG", RefreshToken: "1//0b", AccessToken: "ya29.a", TokenExpiry: exp},
			},
			errs: []lineError{
				{3, `unknown field "nickname" (the fields are legacy_user_id, label, refresh_token, access_token, token_expiry)`},
				{4, "legacy_user_id must be a string"},
				{5, "more than one JSON value on the line"},
				{6, "not a JSON object (every line of a JSON lines file is one {...})"},
				{7, "not valid JSON (the object is cut short)"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, errs := parseImport(strings.NewReader(tt.in))
			if diff := cmp.Diff(tt.rows, rows); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.errs, errs, cmp.AllowUnexported(lineError{})); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseImportNeverQuotesTokens: a rejected line's message must not carry the token it held.
func TestParseImportNeverQuotesTokens(t *testing.T) {
	t.Parallel()
	secret := "1//0SECRETsecretSECRET"
	for _, in := range []string{
		"legacy_user_id,refresh_token\nAAAAAA,\"" + secret + " x\"\n",
		"legacy_user_id,access_token\nAAAAAA," + secret + "\n",
		`{"legacy_user_id": "AAAAAA", "refresh_token": "` + secret + "\t\"}\n",
		`{"legacy_user_id": "AAAAAA", "refresh_token": ["` + secret + `"]}` + "\n",
		`{"legacy_user_id": "AAAAAA", "refresh_token": "` + secret + `", "x": 1}` + "\n",
	} {
		_, errs := parseImport(strings.NewReader(in))
		if len(errs) == 0 {
			t.Errorf("%q: accepted", in)
		}
		for _, e := range errs {
			if strings.Contains(e.String(), "SECRET") {
				t.Errorf("%q: message quotes the token: %s", in, e)
			}
		}
	}
}

func FuzzParseImport(f *testing.F) {
	for _, s := range []string{
		"legacy_user_id,label,refresh_token,access_token,token_expiry\nCRBM3W,Site A,1//0abc,ya29.x,2026-12-03T16:00:00Z\n",
		"legacy_user_id\nAAAAAA\naaaaaa\n\n",
		"legacy_user_id,label\n\"AAAAAA\",\"multi\nline\"\nBBBBBB,\"unterminated\n",
		"legacy_user_id,label\nAAAAAA,bare\"quote\n",
		`{"legacy_user_id": "CRBM3W", "refresh_token": "1//0r"}` + "\n" + `{"legacy_user_id": 1}` + "\n",
		`{"legacy_user_id": "CRBM3W", "label": "\u0000"}` + "\n{\n",
		"\xef\xbb\xbf{\"legacy_user_id\":\"ÄÄÄÄÄÄ\"}",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rows, errs := parseImport(strings.NewReader(in))
		seen := map[string]bool{}
		last := 0
		for _, r := range rows {
			if err := r.valid(); err != nil {
				t.Fatalf("accepted an invalid row %+v: %v", r, err)
			}
			// Checked again without valid(), so a bug there cannot hide one here.
			if len(r.LegacyUserID) != 6 || strings.IndexFunc(r.LegacyUserID, func(c rune) bool { return !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') }) >= 0 {
				t.Fatalf("accepted legacy id %q", r.LegacyUserID)
			}
			if strings.IndexFunc(r.Label, unicode.IsControl) >= 0 || strings.ContainsAny(r.RefreshToken+r.AccessToken, " \t\r\n") {
				t.Fatalf("accepted a control character or a space: %+v", r)
			}
			if r.AccessToken != "" && r.RefreshToken == "" {
				t.Fatalf("accepted an access token without a refresh token")
			}
			if seen[r.LegacyUserID] {
				t.Fatalf("legacy id %s accepted twice", r.LegacyUserID)
			}
			seen[r.LegacyUserID] = true
			if r.Line <= last {
				t.Fatalf("row lines not increasing: %d after %d", r.Line, last)
			}
			last = r.Line
		}
		for _, e := range errs {
			if e.Line < 0 || e.Msg == "" {
				t.Fatalf("bad line error %+v", e)
			}
		}
	})
}

func TestBackfillFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		wantErr string
		check   func(*BackfillOptions) bool
	}{
		{args: []string{"CRBM3W", "--from", "2026-11-20"}, check: func(o *BackfillOptions) bool {
			return o.ID == "CRBM3W" && o.From == "2026-11-20" && o.To == "" && o.MaxRPS == defaultBfRPS && !o.Force
		}},
		{args: []string{"--all", "--from", "2026-11-20", "--to", "2026-11-29", "--force"}, check: func(o *BackfillOptions) bool {
			return o.All && o.To == "2026-11-29" && o.Force
		}},
		{args: []string{"--from", "2026-11-20"}, wantErr: "give a participant ID (such as CRBM3W) or --all"},
		{args: []string{"CRBM3W", "--all", "--from", "2026-11-20"}, wantErr: "not both"},
		{args: []string{"CRBM3W"}, wantErr: "--from is required"},
		{args: []string{"CRBM3W", "--from", "2026-11-31"}, wantErr: `--from "2026-11-31": use YYYY-MM-DD`},
		{args: []string{"CRBM3W", "--from", "2026-11-20", "--to", "2026-11-19"}, wantErr: "--to 2026-11-19 is before --from 2026-11-20"},
		{args: []string{"CRBM3W", "--from", "2026-11-20", "--max-rps", "0"}, wantErr: "--max-rps 0"},
		{args: []string{"CRBM3W", "--from", "2026-11-20", "--concurrency", "0"}, wantErr: "--concurrency 0"},
	}
	for _, tt := range tests {
		var got *BackfillOptions
		cmd := NewCmdBackfill(&Env{}, func(o *BackfillOptions) error {
			got = o
			_, _, err := o.validate()
			return err
		})
		cmd.SetArgs(tt.args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || exitCode(err) != ExitUsage {
				t.Errorf("%v: err = %v (exit %d), want exit 2 with %q", tt.args, err, exitCode(err), tt.wantErr)
			}
		case err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case !tt.check(got):
			t.Errorf("%v: options %+v", tt.args, got)
		}
	}
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	t.Parallel()
	root := NewRootCmd(&Env{})
	for _, path := range [][]string{
		{"users"}, {"users", "authorize"}, {"users", "import"}, {"users", "list"}, {"users", "disable"},
		{"users", "enable"}, {"users", "revoke"}, {"users", "remove"}, {"backfill"}, {"status"},
	} {
		c, _, err := root.Find(path)
		if err != nil || c.Name() != path[len(path)-1] {
			t.Errorf("%v: not found (%v)", path, err)
			continue
		}
		if c.Example == "" || c.Short == "" {
			t.Errorf("%v: no example or short help", path)
		}
		if len(path) > 1 || path[0] != "users" {
			if c.Flags().Lookup("database-url") == nil {
				t.Errorf("%v: no --database-url", path)
			}
		}
	}
	// cobra adds its completion command when the root executes.
	var out bytes.Buffer
	e := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }, Now: time.Now}
	if code := e.Main(context.Background(), []string{"completion", "bash"}); code != 0 || !strings.Contains(out.String(), "__start_sync-all") {
		t.Errorf("completion bash: exit %d, output %.200q", code, out.String())
	}
}
