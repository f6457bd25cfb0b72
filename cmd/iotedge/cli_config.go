package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/edge/config"
)

// newConfigCmd builds `iotedge config`.
func newConfigCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage the device configuration (config.toml)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newConfigApplyCmd(stdout))
	return cmd
}

// newConfigApplyCmd builds `iotedge config apply`.
func newConfigApplyCmd(stdout io.Writer) *cobra.Command {
	var in, out string
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Validate a config.toml and install it for the runtime",
		Long: `Validate a config.toml and install it for the runtime.

Every problem is reported at once, each naming its key. On success the
configuration is written in normalised form (file URIs, canonical
global_endpoint, defaults made explicit) to the runtime's configuration file,
readable by its owner only. An inline symmetric key is moved to a key file
under homedir, which the written configuration refers to.

By default the file is validated and rewritten in place.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := config.Load(in)
			if err != nil {
				return err
			}
			return install(stdout, c, out)
		},
	}
	def := config.DefaultConfigPath()
	cmd.Flags().StringVarP(&in, "config-file", "c", def, "the configuration to apply")
	cmd.Flags().StringVarP(&out, "out-config-file", "o", def, "where the runtime reads its configuration")
	return cmd
}

// install writes a validated configuration to path and reports what it
// did, as upstream `iotedge config apply` does.
func install(stdout io.Writer, c *config.Config, path string) error {
	if a := c.Provisioning.Attestation; a != nil && a.SymmetricKey != nil && a.SymmetricKey.Value != "" {
		if _, err := fmt.Fprintf(stdout, "Note: Symmetric key will be written to %s\n", config.KeyFilePath(c.Homedir)); err != nil {
			return err
		}
	}
	w, err := config.Write(c, path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%w (run as root, or as Administrator on Windows)", err)
		}
		return err
	}
	_, err = fmt.Fprintf(stdout, "IoT Edge has been configured successfully!\nConfiguration written to %s.\n", w.ConfigPath)
	return err
}
