// Package cli is sync-all's command line and its one composition root: it reads flags and the
// environment, builds the database pool, HTTP clients, logger and clock, hands them to the
// packages that do the work, and maps what happened to an exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// Exit codes, the contract with cron and with operators' scripts.
const (
	ExitOK      = 0 // every selected participant synced or had nothing new
	ExitPartial = 1 // one or more participants failed, or the run was interrupted
	ExitUsage   = 2 // bad flags or configuration
	ExitAborted = 3 // the run could not go on: database unreachable, schema behind, ...
)

// exitError carries an exit code up to Main. Its message is printed once, on stderr.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, a...)}
}

func abortErr(err error) error { return &exitError{code: ExitAborted, err: err} }

// silentExit ends the command with a code and nothing more to print (it was logged).
func silentExit(code int) error { return &exitError{code: code} }

// exitCode maps an error to the exit code table above. Commands wrap every runtime failure in
// an exitError, so a bare error is cobra's own: an unknown command, a missing argument.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitUsage
}

// Env is the process environment, injected so tests drive the CLI in process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	Now    func() time.Time
	// stderrIsTerminal says whether log lines should be copied to stderr in full.
	StderrIsTerminal bool
}

// Main runs sync-all with args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	env := &Env{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv, Now: time.Now, StderrIsTerminal: isTerminal(stderr)}
	return env.Main(ctx, args)
}

// Main runs the command line with this environment.
func (e *Env) Main(ctx context.Context, args []string) int {
	root := NewRootCmd(e)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || ee.err != nil {
			fmt.Fprintln(e.Stderr, "sync-all:", err)
		}
	}
	return exitCode(err)
}

// NewRootCmd builds the command tree.
func NewRootCmd(e *Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "sync-all",
		Short: "Sync study participants' Fitbit data from the Google Health API into PostgreSQL",
		Long: `sync-all keeps a research team's PostgreSQL database filled with its study participants'
Fitbit data, read from the Google Health API. Cron runs "sync-all run" every five minutes.`,
		Example: `  sync-all migrate
  sync-all run
  sync-all run --user CRBM3W
  sync-all run --user CRBM3W --date 2026-12-01 --dry-run`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetOut(e.Stdout)
	root.SetErr(e.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr("%v (see --help)", err) })
	root.AddCommand(NewCmdRun(e, nil), NewCmdMigrate(e, nil), NewCmdVersion(e), NewCmdUsers(e), NewCmdBackfill(e, nil), NewCmdStatus(e, nil))
	return root
}

// isTerminal reports whether w is a character device (a terminal), without a terminal library:
// cron hands us a pipe or a file, a person a tty.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
