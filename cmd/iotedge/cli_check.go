package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/edge/check"
	"github.com/muster-iot/muster/internal/edge/config"
)

// errChecksFailed is returned by `iotedge check` when a check raised an
// error (or a warning, with --warnings-as-errors), so that the command
// exits with status 1.
var errChecksFailed = errors.New("check: one or more checks raised errors")

// Output formats of `iotedge check`.
const (
	outputText = "text"
	outputJSON = "json"
)

// checkOptions are the flags of `iotedge check`.
type checkOptions struct {
	configFile       string
	output           string
	timeout          time.Duration
	iothubHostname   string
	verbose          bool
	warningsAsErrors bool
}

// newCheckCmd builds `iotedge check`.
func newCheckCmd(stdout io.Writer) *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the device's configuration, identity, clock and connectivity",
		Long: `Check the device's configuration, identity, clock and connectivity.

The checks run in order; a check whose prerequisite failed is skipped:

  config-well-formed           the configuration parses and the files it names are usable
  identity-credential          the symmetric key, or the X.509 certificate and its matching key, is readable
  identity-certificate-expiry  the identity certificates are valid now and for 30 more days
  host-local-time              the clock is within a minute of the DPS endpoint's (HTTP Date header)
  provisioning-cached          the device has provisioned, for the identity configured now
  host-connect-dps-endpoint    a TLS handshake with the DPS endpoint succeeds with the trust bundle
  host-connect-iothub-mqtt     a TLS handshake with the assigned hub's MQTT port (8883) succeeds

Every warning and error says how to fix it. The exit status is 1 when a check
raised an error (or a warning, with --warnings-as-errors).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCheck(cmd, stdout, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.configFile, "config-file", "c", config.DefaultConfigPath(), "the configuration to check")
	f.StringVarP(&o.output, "output", "o", outputText, "output format: text or json")
	f.DurationVar(&o.timeout, "timeout", check.DefaultTimeout, "time limit of each network operation")
	f.StringVar(&o.iothubHostname, "iothub-hostname", "", "the hub to check instead of the assigned one (host[:port])")
	f.BoolVar(&o.verbose, "verbose", false, "also show the details of passing, skipped and ignored checks")
	f.BoolVar(&o.warningsAsErrors, "warnings-as-errors", false, "exit with status 1 on warnings too")
	return cmd
}

func runCheck(cmd *cobra.Command, stdout io.Writer, o *checkOptions) error {
	switch o.output {
	case outputText, outputJSON:
	default:
		return fmt.Errorf("check: --output %q is neither %q nor %q", o.output, outputText, outputJSON)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("check: --timeout %v is not positive", o.timeout)
	}
	env := check.NewEnv(o.configFile)
	env.Timeout = o.timeout
	env.HubHostname = o.iothubHostname
	env.Version = version
	r := check.Run(cmd.Context(), env, check.Default())
	var err error
	if o.output == outputJSON {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteText(stdout, o.verbose)
	}
	if err != nil {
		return err
	}
	if r.Failed(o.warningsAsErrors) {
		return fmt.Errorf("%w (%d error(s), %d warning(s))", errChecksFailed, r.Count(check.Fail), r.Count(check.Warn))
	}
	return nil
}
