package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/client/hubservice"
)

func (c *cli) methodCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "method",
		Aliases: []string{"methods"},
		Short:   "Invoke direct methods on devices and modules",
		Long: `Invoke direct methods on connected devices and modules through the hub service
API, with a hub connection string (--hub-connection-string, ` + envHubConnectionString + `, or
endpoints.json's hubConnectionString).`,
	}
	h := addHubFlag(cmd)
	cmd.AddCommand(c.methodInvokeCmd(h))
	return cmd
}

func (c *cli) methodInvokeCmd(h *hubFlag) *cobra.Command {
	var (
		payload string
		call    hubservice.MethodCall
	)
	cmd := &cobra.Command{
		Use:   "invoke <device-id> <method> [--payload <json>] [flags]",
		Short: "Call a direct method and print the device's answer: its status and payload",
		Long: `Call a direct method on a device (or one of its modules, --module) and print
its answer: the status the device chose and its JSON payload. The device must
be connected and subscribed to $iothub/methods/POST/#, or become so within
--connect-timeout; else the hub answers 404 DeviceNotOnline (404103). A device
that does not answer within --timeout gives 504 GatewayTimeout (504101).`,
		Example: `  muster method invoke sensor-1 reboot --payload '{"delay":5}'
  muster method invoke gw-1 ping --module monitor --timeout 10s -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			call.DeviceID, call.Name = args[0], args[1]
			if payload != "" {
				if !json.Valid([]byte(payload)) {
					var v any
					err := json.Unmarshal([]byte(payload), &v)
					var se *json.SyntaxError
					if errors.As(err, &se) {
						return fmt.Errorf("--payload: invalid JSON at offset %d: %w", se.Offset, err)
					}
					return fmt.Errorf("--payload: invalid JSON: %w", err)
				}
				call.Payload = json.RawMessage(payload)
			}
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			res, err := hub.InvokeMethod(cmd.Context(), call)
			if err != nil {
				return err
			}
			var d details
			d.add("Status", strconv.Itoa(res.Status))
			d.add("Payload", rawText(res.Payload))
			return c.emitDetails(res, &d)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&payload, "payload", "", "the JSON sent to the device (default: null)")
	fl.StringVar(&call.ModuleID, "module", "", "call a module of the device instead")
	fl.DurationVar(&call.ResponseTimeout, "timeout", hubservice.DefaultMethodResponseTimeout,
		fmt.Sprintf("how long to wait for the device's answer (%v to %v)", hubservice.MinMethodResponseTimeout, hubservice.MaxMethodTimeout))
	fl.DurationVar(&call.ConnectTimeout, "connect-timeout", 0,
		fmt.Sprintf("how long the hub waits for an offline device to connect (0 to %v)", hubservice.MaxMethodTimeout))
	return cmd
}
