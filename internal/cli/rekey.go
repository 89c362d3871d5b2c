package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// RekeyOptions are the `users rekey` command's flags.
type RekeyOptions struct {
	Config Config
}

// NewCmdUsersRekey builds `sync-all users rekey`.
func NewCmdUsersRekey(e *Env, runF func(*RekeyOptions) error) *cobra.Command {
	o := &RekeyOptions{}
	cmd := &cobra.Command{
		Use:   "rekey",
		Short: "Re-encrypt every stored token under the current key (after a key rotation)",
		Long: `rekey re-encrypts every participant's OAuth tokens under the first key of SYNC_TOKEN_KEY (or
SYNC_TOKEN_KEY_FILE), including tokens stored in the clear before a key was configured.

To rotate: put the new key first and keep the old one after it (comma or newline separated), run
rekey, then drop the old key.`,
		Example: `  SYNC_TOKEN_KEY="$(head -c 32 /dev/urandom | base64),$OLD_KEY" sync-all users rekey`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(o)
			}
			return o.run(cmd.Context(), e)
		},
	}
	o.Config.configFlags(cmd.Flags(), false)
	return cmd
}

func (o *RekeyOptions) run(ctx context.Context, e *Env) error {
	st, err := openChecked(ctx, e, &o.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	if o.Config.TokenKeys == nil {
		return usageErr("rekey needs SYNC_TOKEN_KEY or SYNC_TOKEN_KEY_FILE: it encrypts under the first key listed")
	}
	rewritten, current, err := st.RekeyTokens(ctx)
	if err != nil {
		return abortErr(fmt.Errorf("rekey stopped after %d participants: %w", rewritten, err))
	}
	fmt.Fprintf(e.Stdout, "re-encrypted the tokens of %d participants under key %s; %d already were\n",
		rewritten, o.Config.TokenKeys.CurrentID(), current)
	return nil
}
