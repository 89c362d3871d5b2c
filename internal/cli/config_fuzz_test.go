package cli

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/studylab/sync-all/internal/tokencrypt"
)

// configInput is one fuzzed configuration: every variable Config.resolveDatabase and
// resolveGoogle read (tokencrypt.FromEnv included), and the `run` command line.
type configInput struct {
	dbPre, dbPass, dbPost string // DATABASE_URL = dbPre + dbPass + dbPost
	clientID, secret      string // GOOGLE_CLIENT_SECRET, or the content of GOOGLE_CLIENT_SECRET_FILE
	health, authURL       string
	tokenURL, revokeURL   string
	keyPre, key, keyPost  string // SYNC_TOKEN_KEY (or its file) = keyPre + key + keyPost
	logFile, flags        string
	mode                  uint8 // bits: secret via file, both secret forms, DSN via flag, key via file, no key
}

// envAndArgs renders the input as an environment and `run` arguments; files go to dir.
func (in configInput) envAndArgs(t *testing.T, dir string) (map[string]string, []string) {
	dsn := in.dbPre + in.dbPass + in.dbPost
	env := map[string]string{
		EnvClientID: in.clientID, EnvHealthAPIURL: in.health, EnvAuthURL: in.authURL,
		EnvTokenURL: in.tokenURL, EnvRevokeURL: in.revokeURL, EnvLogFile: in.logFile,
	}
	args := []string{"run"}
	if in.mode&4 != 0 {
		args = append(args, "--database-url", dsn)
	} else {
		env[EnvDatabaseURL] = dsn
	}
	// Secret files are written by the test, never named by the fuzzer: a fuzzed path such as
	// /dev/zero or a FIFO would only test the machine.
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if in.mode&1 != 0 {
		env[EnvClientSecretFile] = write("secret", in.secret)
	}
	if in.mode&1 == 0 || in.mode&2 != 0 {
		env[EnvClientSecret] = in.secret
	}
	spec := in.keyPre + in.key + in.keyPost
	switch {
	case in.mode&16 != 0:
	case in.mode&8 != 0:
		env[tokencrypt.EnvKeyFile] = write("key", spec)
	default:
		env[tokencrypt.EnvKey] = spec
	}
	return env, append(args, strings.Fields(in.flags)...)
}

// rotate maps a secret to another of the same shape: every letter and digit moves to another of
// its class (a-f, g-z, A-F, G-Z, 0-9, so hex and base64 stay hex and base64) and everything else
// stays. A configuration with the rotated secret takes the same path through the parsers, so any
// difference in how often the secret appears in the output is the secret being echoed.
func rotate(s string) string {
	b := []byte(s)
	for i, c := range b {
		for _, r := range [][2]byte{{'a', 'f'}, {'g', 'z'}, {'A', 'F'}, {'G', 'Z'}, {'0', '9'}} {
			if c >= r[0] && c <= r[1] {
				b[i] = r[0] + (c-r[0]+1)%(r[1]-r[0]+1)
			}
		}
	}
	return string(b)
}

// runConfig parses the command line with NewCmdRun's flag set (inside the real command tree, so
// its flag error handling applies) and resolves the configuration as `run` does before any I/O
// beyond reading the secret files. It returns the error and everything printed.
func runConfig(env map[string]string, args []string) (error, string) {
	var stdout, stderr bytes.Buffer
	e := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }, Now: time.Now}
	root := NewRootCmd(e)
	for _, c := range root.Commands() {
		if c.Name() == "run" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(NewCmdRun(e, func(o *RunOptions) error {
		if _, err := o.validate(); err != nil {
			return err
		}
		if err := o.Config.resolveDatabase(e.Getenv); err != nil {
			return err
		}
		if err := o.Config.resolveGoogle(e.Getenv); err != nil {
			return err
		}
		if err := o.Config.requireTokenKey(); err != nil {
			return err
		}
		_ = o.logFile(e.Getenv)
		return nil
	}))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	out := stdout.String() + stderr.String()
	if err != nil {
		out += "\n" + err.Error()
	}
	return err, out
}

// dsnPassword reports whether pass is the password of dsn (URL or key=value form), the only case
// in which its appearing in a message is a leak rather than an echo of some other part.
func dsnPassword(dsn, pass string) bool {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return true // unparsable: which part is the password cannot be known, so all of it is
		}
		p, ok := u.User.Password()
		return ok && p == pass
	}
	return strings.Contains(dsn, "password="+pass)
}

// wholeKey reports whether key is a whole key body in keyPre+key+keyPost (so neither part of an
// id, which messages may name, nor inside a comment).
func wholeKey(pre, key, post string) bool {
	if strings.ContainsAny(key, ":,#\n \t\r") || strings.Contains(pre, "#") {
		return false
	}
	return (pre == "" || strings.ContainsAny(pre[len(pre)-1:], ":,\n")) &&
		(post == "" || strings.ContainsAny(post[:1], ",\n#  \t\r"))
}

// fuzzDir is where the secret files go: memory when /dev/shm exists, since every execution
// writes them and a disk would bound the fuzzer's speed.
func fuzzDir(f *testing.F) string {
	if dir, err := os.MkdirTemp("/dev/shm", "fuzzconfig-"); err == nil {
		f.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return f.TempDir()
}

// FuzzConfig feeds random environments and command lines to `run`'s configuration: it must never
// panic, every error must be a usage error (exit 2), and no message may echo the DATABASE_URL
// password, the GOOGLE_CLIENT_SECRET or the token key.
func FuzzConfig(f *testing.F) {
	key, err := tokencrypt.GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range []configInput{
		{dbPre: "postgres://syncer:", dbPass: "s3cr3t-Pw", dbPost: "@db.example.org:5432/study?sslmode=verify-full",
			clientID: "123-abc.apps.googleusercontent.com", secret: "GOCSPX-abcdefghijklmnop", key: key},
		{dbPre: "postgresql://syncer:", dbPass: "p%40ss", dbPost: "@localhost/study", clientID: "sim-client", secret: "sim-secret",
			health: "http://127.0.0.1:8089/", authURL: "http://127.0.0.1:8089/o/oauth2/v2/auth", tokenURL: "http://127.0.0.1:8089/token",
			keyPre: "k1:", key: key, keyPost: ",k0:" + key, flags: "--user CRBM3W --date 2026-12-01 --concurrency 4", mode: 8},
		{dbPre: "host=db.example.org user=syncer password=", dbPass: "kv-Secret", dbPost: " dbname=study", clientID: "id",
			secret: "file-secret\n", flags: "--dry-run --log-format json --min-interval 0s", mode: 1},
		{dbPre: "mysql://u:", dbPass: "wrongScheme1", dbPost: "@h/db", clientID: "id", secret: "s", key: key, mode: 2},
		{dbPre: "postgres://u:", dbPass: "bad%zzEscape", dbPost: "@h/db", clientID: "id", secret: "s", key: "short"},
		{dbPre: "postgres://u:", dbPass: "Pw", dbPost: "@h/db", clientID: "id", secret: "s", mode: 16,
			flags: "--max-rps 0 --user-timeout 1ms --healthcheck-url ftp://x --user"},
		{dbPre: "postgres://u:", dbPass: "Pw", dbPost: "@h:99999/db", secret: "s", key: key, health: "not a url", flags: "extra-arg --bogus"},
		{dbPre: "", dbPass: "", dbPost: "", flags: "--help"},
		{dbPre: "postgres://u:", dbPass: "Pw", dbPost: "@h/db", clientID: "id", secret: "  ", key: key, mode: 3,
			flags: "--database-url=postgres://x:Pw@y/z --log-max-size-mb -1 --date 2026-02-30 --max-catchup-days 91"},
	} {
		f.Add(in.dbPre, in.dbPass, in.dbPost, in.clientID, in.secret, in.health, in.authURL, in.tokenURL, in.revokeURL,
			in.keyPre, in.key, in.keyPost, in.logFile, in.flags, in.mode)
	}
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, dbPre, dbPass, dbPost, clientID, secret, health, authURL, tokenURL, revokeURL,
		keyPre, key, keyPost, logFile, flags string, mode uint8) {
		in := configInput{dbPre, dbPass, dbPost, clientID, secret, health, authURL, tokenURL, revokeURL,
			keyPre, key, keyPost, logFile, flags, mode}
		env, args := in.envAndArgs(t, dir)
		err, out := runConfig(env, args)
		if err != nil {
			var ee *exitError
			if code := exitCode(err); code != ExitUsage || errors.As(err, &ee) && ee.code != ExitUsage {
				t.Fatalf("exit %d, want %d (usage): %v", code, ExitUsage, err)
			}
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("usage error without a message")
			}
		}

		// The same input with each secret rotated: a secret that appears more often in the first
		// output than in the second was echoed. An output without the secret cannot have echoed it.
		if !strings.Contains(out, in.dbPass) && !strings.Contains(out, in.secret) && !strings.Contains(out, in.key) {
			return
		}
		alt := in
		alt.dbPass, alt.secret, alt.key = rotate(in.dbPass), rotate(in.secret), rotate(in.key)
		altEnv, altArgs := alt.envAndArgs(t, dir)
		altErr, altOut := runConfig(altEnv, altArgs)
		if exitCode(err) != exitCode(altErr) {
			return // a different path through the parsers: nothing to compare
		}
		for _, s := range []struct {
			name, val, rotated string
			check              bool
		}{
			{"the DATABASE_URL password", in.dbPass, alt.dbPass, dsnPassword(in.dbPre+in.dbPass+in.dbPost, in.dbPass)},
			{"the client secret", in.secret, alt.secret, true},
			{"the token key", in.key, alt.key, wholeKey(in.keyPre, in.key, in.keyPost)},
		} {
			if s.check && s.val != s.rotated && strings.Count(out, s.val) > strings.Count(altOut, s.val) {
				t.Fatalf("%s %q is echoed:\n%s", s.name, s.val, out)
			}
		}
	})
}
