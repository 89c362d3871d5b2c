package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Build information, set by the Makefile through -ldflags "-X ...". They are written once by
// the linker and never changed at run time.
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

func versionString() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s)", version, commit, date, runtime.Version())
}

// NewCmdVersion builds `sync-all version`.
func NewCmdVersion(e *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(e.Stdout, "sync-all", versionString())
			return nil
		},
	}
}
