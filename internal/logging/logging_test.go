package logging

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileModesAndContent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	file := filepath.Join(dir, "sync.log")
	var stderr bytes.Buffer
	log, closer, err := New(Config{File: file, MaxSizeMB: 1, Format: FormatText, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	log.Info(MsgUserSynced, KeyUser, "CRBM3W", KeyDate, "2026-12-03", "refresh_token", "1//0secret", "note", Secret("s3cr3t"))
	log.Error(MsgUserFailed, KeyUser, "AB12CD", KeyReason, "api", KeyError, errors.New("boom"))
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, file: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", path, got, want)
		}
	}
	body, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{`msg="user synced" user=CRBM3W date=2026-12-03`, `level=ERROR msg="user failed" user=AB12CD reason=api error=boom`, "time=" + time.Now().UTC().Format("2006-01-02")} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	for _, secret := range []string{"1//0secret", "s3cr3t"} {
		if strings.Contains(text, secret) || strings.Contains(stderr.String(), secret) {
			t.Errorf("secret %q leaked", secret)
		}
	}
	// stderr that is not a terminal gets errors only (cron mails it).
	if strings.Contains(stderr.String(), "user synced") || !strings.Contains(stderr.String(), "user failed") {
		t.Errorf("stderr should hold only the error line, got:\n%s", stderr.String())
	}
}

func TestStderrTerminalGetsEverythingAsJSON(t *testing.T) {
	var stderr bytes.Buffer
	log, _, err := New(Config{Format: FormatJSON, Stderr: &stderr, StderrAll: true})
	if err != nil {
		t.Fatal(err)
	}
	log.Info(MsgRunFinished, KeyUsersTotal, 3, KeyDuration, 1500*time.Millisecond, "client_secret", "xyz")
	got := stderr.String()
	for _, want := range []string{`"msg":"run finished"`, `"users_total":3`, `"duration":"1.5s"`, `"client_secret":"[redacted]"`} {
		if !strings.Contains(got, want) {
			t.Errorf("stderr lacks %s: %s", want, got)
		}
	}
}

func TestBadFormat(t *testing.T) {
	if _, _, err := New(Config{Format: "xml"}); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("err = %v, want a message naming the format", err)
	}
}
