// Command iotedge is Muster's device-side runtime: it writes the device
// configuration (init, config apply), checks the device's setup (check),
// runs the edge daemon (daemon, and the OS service's hidden "service run",
// wired through internal/edge/daemon), talks to the running daemon through
// its management socket (list, logs, restart, system status, system
// reprovision, system restart), shows the daemon's log (system logs) and
// manages the iotedge OS service (service, system).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func newRootCmd(stdout io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "iotedge",
		Short:         "Muster IoT Edge runtime",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the runtime version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(stdout, "iotedge %s (%s/%s)\n", version, runtime.GOOS, runtime.GOARCH)
			return err
		},
	})
	root.AddCommand(newInitCmd(stdout), newConfigCmd(stdout))
	root.AddCommand(newCheckCmd(stdout))
	root.AddCommand(newServiceCmd(stdout, platformServices{}, runDaemon), newSystemCmd(stdout, platformServices{}))
	root.AddCommand(newDaemonCmd(runDaemon), newListCmd(stdout, connectSocket), newLogsCmd(stdout, connectSocket), newRestartCmd(stdout, connectSocket))
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd(os.Stdout).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "iotedge:", err)
		os.Exit(1)
	}
}
