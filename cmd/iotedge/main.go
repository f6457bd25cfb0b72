// Command iotedge is Muster's device-side runtime CLI: it writes the device
// configuration (init, config apply), checks the device's setup (check), and
// manages the iotedge OS service (service, system). The daemon that
// provisions through DPS and runs modules is wired in by the edge issue; its
// building blocks live under internal/edge.
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
	root.AddCommand(newServiceCmd(stdout, platformServices{}, awaitStop), newSystemCmd(stdout, platformServices{}))
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
