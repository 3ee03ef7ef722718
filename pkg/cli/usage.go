package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// ExitUsage is the exit code of a usage error in vipd and bootstrap: an unknown command or
// flag, a wrong number of arguments, a bad flag value.
const ExitUsage = 2

// UsageError is a command line mistake; the binaries exit with ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// IsUsage reports whether err is (or wraps) a UsageError.
func IsUsage(err error) bool {
	var ue *UsageError
	return errors.As(err, &ue)
}

// StrictUsage makes every usage mistake under root come back from Execute as a *UsageError:
// unknown or malformed flags, unknown commands, and arguments a command's Args refuses.
// Call it after every command has been added. A root without Run gets one that prints the
// help, so that `NAME bogus` is an error (cobra would otherwise print the help and exit 0).
func StrictUsage(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	if !root.Runnable() {
		root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		args := c.Args
		if args == nil {
			args = func(cmd *cobra.Command, a []string) error {
				if cmd.HasSubCommands() && len(a) > 0 {
					return fmt.Errorf("unknown command %q for %q", a[0], cmd.CommandPath())
				}
				return nil
			}
		}
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return &UsageError{Err: err}
			}
			return nil
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
