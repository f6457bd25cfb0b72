// Command iotedge is Muster's device-side runtime: it provisions an IoT Edge
// device through the provisioning service and runs its modules. This build
// carries the configuration commands (init, config apply); the daemon
// arrives with the edge runtime.
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
