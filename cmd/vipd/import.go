package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vipd-project/vipd/pkg/cli"
	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/importer"
)

func newImportCmd() *cobra.Command {
	var src importer.Sources
	c := &cobra.Command{
		Use:   "import --keepalived FILE [--haproxy FILE]",
		Short: "Translate keepalived.conf and haproxy.cfg into vipd.yaml on stdout",
		Long: `Translates a Keepalived + HAProxy pair's files into an equivalent vipd.yaml, printed on
stdout, with a comment on every setting that could not be carried over and why (a vrrp_script
running curl becomes vipd's built-in tracking; timeout client becomes no idle timeout). Nothing
is printed unless the output is a valid configuration. Secrets (auth_pass, stats auth) are not
copied: the comments say which file to put them in, and vipd check passes once they are there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if src.KeepalivedFile == "" {
				return &cli.UsageError{Err: errors.New("--keepalived is required (vipd needs the VRRP instance)")}
			}
			var err error
			if src.Keepalived, err = os.ReadFile(src.KeepalivedFile); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("import: %w", err)}
			}
			if src.HAProxyFile != "" {
				if src.HAProxy, err = os.ReadFile(src.HAProxyFile); err != nil {
					return &exitError{code: 1, err: fmt.Errorf("import: %w", err)}
				}
			}
			out, err := importer.Import(src)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("import: %w", err)}
			}
			if _, err := config.Parse("(translated vipd.yaml)", out); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("import: the translation does not pass vipd check: %w", err)}
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	c.Flags().StringVar(&src.KeepalivedFile, "keepalived", "", "keepalived.conf to translate")
	c.Flags().StringVar(&src.HAProxyFile, "haproxy", "", "haproxy.cfg to translate (optional: without it, VRRP only)")
	return c
}
