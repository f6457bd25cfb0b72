// Command muster is the cloud side of Muster. `muster serve` runs the
// provisioning service and the hub; the other subcommands are the
// operator's tools: they manage enrollments, enrollment groups, registration
// records and CA certificates through the service API of a running server
// (like any other client, with a DPS connection string), explain why a
// device was refused, derive group device keys and write test certificate
// chains. This package holds only main and the cobra wiring; the work is
// done by internal packages.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "muster:", err)
		os.Exit(1)
	}
}

// newRootCmd builds the muster command tree reading the process environment.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	return newRoot(stdout, stderr, os.LookupEnv)
}

// Environment variables of the root's persistent flags.
const (
	envDataDir          = "MUSTER_DATA_DIR"
	envConnectionString = "MUSTER_DPS_CONNECTION_STRING"
	envServer           = "MUSTER_SERVER"
	envCAFile           = "MUSTER_CA_FILE"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// newRoot builds the command tree; lookupEnv reads the environment.
func newRoot(stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) *cobra.Command {
	c := &cli{stdout: stdout, stderr: stderr, lookupEnv: lookupEnv}
	return c.rootCmd()
}

// rootCmd builds the command tree around c.
func (c *cli) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "muster",
		Short: "Muster: a self-hosted, Azure-IoT-compatible device provisioning service and hub",
		Long: `Muster is a self-hosted device provisioning service (DPS) and IoT hub that the
Azure IoT SDKs and the IoT Edge runtime accept.

"muster serve" runs the server. The other commands talk to a running server
through its service API. They find it, in order of precedence, from flags,
from the environment (` + envConnectionString + `, ` + envServer + `,
` + envCAFile + `), or from the endpoints.json that "muster serve" writes into
its data directory (--data-dir, ` + envDataDir + `).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if c.output != outputTable && c.output != outputJSON {
				return fmt.Errorf("--output %q: must be %s or %s", c.output, outputTable, outputJSON)
			}
			return nil
		},
	}
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&c.dataDir, "data-dir", config.Defaults().DataDir, "data directory of a local \"muster serve\" (its endpoints.json supplies the defaults below); env "+envDataDir)
	pf.StringVar(&c.connectionString, "connection-string", "", "DPS service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…); env "+envConnectionString)
	pf.StringVar(&c.server, "server", "", "host:port to dial for the service API (default: the connection string's HostName on port 443); env "+envServer)
	pf.StringVar(&c.caFile, "ca-file", "", "PEM file of the CA that signed the server's TLS certificate (default: system roots); env "+envCAFile)
	pf.StringVarP(&c.output, "output", "o", outputTable, "output format: table or json")
	c.flags = pf

	root.AddCommand(
		newServeCmd(),
		c.enrollmentCmd(),
		c.groupCmd(),
		c.registrationCmd(),
		c.keyCmd(),
		c.caCmd(),
		c.certsCmd(),
		c.deviceCmd(),
		c.moduleCmd(),
		c.twinCmd(),
		c.queryCmd(),
		c.deploymentCmd(),
		c.monitorCmd(),
		c.c2dCmd(),
		c.methodCmd(),
		newBenchCmd(),
	)
	return root
}
