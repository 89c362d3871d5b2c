package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// MigrateOptions are the `migrate` command's flags.
type MigrateOptions struct {
	Config Config
	Status bool
}

// NewCmdMigrate builds `sync-all migrate`.
func NewCmdMigrate(e *Env, runF func(*MigrateOptions) error) *cobra.Command {
	o := &MigrateOptions{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations (safe to run again, and from two hosts at once)",
		Example: `  sync-all migrate
  sync-all migrate --status`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(o)
			}
			return o.run(cmd.Context(), e)
		},
	}
	o.Config.configFlags(cmd.Flags(), false)
	cmd.Flags().BoolVar(&o.Status, "status", false, "print the current and latest schema version and change nothing")
	return cmd
}

func (o *MigrateOptions) run(ctx context.Context, e *Env) error {
	if err := o.Config.resolveDatabase(e.Getenv); err != nil {
		return err
	}
	st, err := openStore(ctx, o.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	if o.Status {
		cur, latest, err := st.MigrationStatus(ctx)
		if err != nil {
			return abortErr(err)
		}
		state := "up to date"
		if cur < latest {
			state = fmt.Sprintf("%d pending: run `sync-all migrate`", latest-cur)
		}
		fmt.Fprintf(e.Stdout, "current version: %d\nlatest version:  %d\n%s\n", cur, latest, state)
		return nil
	}
	from, to, err := st.Migrate(ctx)
	if err != nil {
		return abortErr(err)
	}
	if from == to {
		fmt.Fprintf(e.Stdout, "schema is up to date at version %d\n", to)
		return nil
	}
	fmt.Fprintf(e.Stdout, "migrated schema from version %d to %d\n", from, to)
	return nil
}
