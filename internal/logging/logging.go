// Package logging builds the job's structured logger: slog records written to a size-rotated file
// (lumberjack) and, when useful, to stderr. It fixes the attribute keys and messages that operators
// grep for, and it redacts secrets wherever they might slip into a record.
package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Attribute keys. They are a contract with operators' grep lines and with the README.
const (
	KeyUser             = "user"
	KeyDate             = "date"
	KeyReason           = "reason"
	KeyError            = "error"
	KeyHint             = "hint"
	KeyRecordsInserted  = "records_inserted"
	KeyRecordsUpdated   = "records_updated"
	KeyRecordsUnchanged = "records_unchanged"
	KeyUsersTotal       = "users_total"
	KeyUsersOK          = "users_ok"
	KeyUsersFailed      = "users_failed"
	KeyUsersSkipped     = "users_skipped"
	KeyDuration         = "duration"
	KeyRunID            = "run_id"
	KeyDays             = "days"
	KeyDryRun           = "dry_run"
)

// Messages. Fixed lowercase strings, so a grep for one finds every occurrence.
const (
	MsgRunStarted          = "run started"
	MsgRunFinished         = "run finished"
	MsgPreviousRunActive   = "previous run still active"
	MsgUserSynced          = "user synced"
	MsgUserUnchanged       = "user unchanged"
	MsgUserFailed          = "user failed"
	MsgUserSkipped         = "user skipped"
	MsgUserNeedsReconsent  = "user needs re-consent"
	MsgDaySynced           = "day synced"
	MsgTokenRefreshed      = "token refreshed"
	MsgTimezoneChanged     = "timezone changed"
	MsgInsecureDatabaseURL = "database connection is not verified TLS"
)

// Formats accepted by Config.Format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Config says where and how to log.
type Config struct {
	File       string // "" = no file
	MaxSizeMB  int
	MaxBackups int
	MaxAgeDays int
	Format     string // FormatText (default) or FormatJSON
	// Stderr receives a copy of the records: all of them when StderrAll (a terminal), else only
	// errors, because cron mails whatever a job prints and a healthy run should mail nothing.
	Stderr    io.Writer
	StderrAll bool
	Level     slog.Level
}

// New returns a logger and a closer for its file.
func New(cfg Config) (*slog.Logger, io.Closer, error) {
	switch cfg.Format {
	case "", FormatText, FormatJSON:
	default:
		return nil, nil, fmt.Errorf("log format %q is not supported: use %q or %q", cfg.Format, FormatText, FormatJSON)
	}
	var handlers []slog.Handler
	var closer io.Closer = nopCloser{}
	if cfg.File != "" {
		w, err := openFile(cfg)
		if err != nil {
			return nil, nil, err
		}
		closer = w
		handlers = append(handlers, newHandler(w, cfg.Format, cfg.Level))
	}
	if cfg.Stderr != nil {
		level := slog.LevelError
		if cfg.StderrAll {
			level = cfg.Level
		}
		handlers = append(handlers, newHandler(cfg.Stderr, cfg.Format, level))
	}
	return slog.New(fanout(handlers)), closer, nil
}

// openFile prepares a private log folder and file (health data and participant ids are in there),
// then hands the file to lumberjack, which rotates by size.
func openFile(cfg Config) (*lumberjack.Logger, error) {
	dir := filepath.Dir(cfg.File)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create log folder %s: %w", dir, err)
	}
	// lumberjack creates new files 0600 but reopens existing ones as they are; make the first
	// file ourselves so its mode is right from the start.
	f, err := os.OpenFile(cfg.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log file %s: %w (set --log-file or SYNC_LOG_FILE to a writable path)", cfg.File, err)
	}
	_ = f.Close()
	return &lumberjack.Logger{
		Filename:   cfg.File,
		MaxSize:    max(cfg.MaxSizeMB, 1),
		MaxBackups: cfg.MaxBackups,
		MaxAge:     cfg.MaxAgeDays,
		LocalTime:  false,
		Compress:   false,
	}, nil
}

func newHandler(w io.Writer, format string, level slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceAttr}
	if format == FormatJSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// secretKeys are attribute keys whose values are never written, whatever their type.
var secretKeys = map[string]bool{
	"access_token": true, "refresh_token": true, "token": true, "client_secret": true,
	"secret": true, "password": true, "authorization": true, "code": true, "code_verifier": true,
	"key": true, "token_key": true,
}

// Redacted is what a secret looks like in a log line.
const Redacted = "[redacted]"

func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
		// UTC with the date, so `grep 2026-12-03` and log shipping agree whatever the host zone.
		a.Value = slog.TimeValue(a.Value.Time().UTC())
		return a
	}
	if secretKeys[strings.ToLower(a.Key)] {
		return slog.String(a.Key, Redacted)
	}
	if a.Value.Kind() == slog.KindDuration {
		// Durations print as "1.234s" rather than nanoseconds in JSON.
		return slog.String(a.Key, a.Value.Duration().Round(time.Millisecond).String())
	}
	return a
}

// Secret is a string that logs and prints as [redacted].
type Secret string

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// String implements fmt.Stringer.
func (Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return Redacted }

// Discard returns a logger that drops everything (for commands that do not log).
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// fanout sends each record to every handler that accepts its level.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
