package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/client/hubservice"
)

func (c *cli) twinCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "twin",
		Aliases: []string{"twins"},
		Short:   "Show and update device and module twins (tags and desired properties)",
		Long: `Show and update the device twins (and, with --module, the module twins) of the
hub through its service API, with a hub connection string
(--hub-connection-string, ` + envHubConnectionString + `, or endpoints.json's hubConnectionString).`,
	}
	h := addHubFlag(cmd)
	cmd.AddCommand(c.twinShowCmd(h), c.twinUpdateCmd(h))
	return cmd
}

func (c *cli) twinShowCmd(h *hubFlag) *cobra.Command {
	var module string
	cmd := &cobra.Command{
		Use:   "show <device-id> [--module <module-id>]",
		Short: "Show a device (or module) twin: tags, desired and reported properties",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			var t *hubservice.Twin
			if module != "" {
				t, err = hub.GetModuleTwin(cmd.Context(), args[0], module)
			} else {
				t, err = hub.GetTwin(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			return c.emitDetails(t, twinDetails(t))
		},
	}
	cmd.Flags().StringVar(&module, "module", "", "show the twin of this module of the device")
	return cmd
}

func (c *cli) twinUpdateCmd(h *hubFlag) *cobra.Command {
	var tags, desired, etag, module string
	cmd := &cobra.Command{
		Use:   "update <device-id> [--module <module-id>] (--tags <json> | --desired <json>)",
		Short: "Merge-patch a twin's tags and desired properties (a null member removes it)",
		Long: `Merge-patch a device twin: each member of --tags and --desired replaces the
twin's member of that name (objects are merged recursively; null removes the
member). The patch is sent with If-Match: the --etag given, else the twin's
etag read just before, so a concurrent change is not overwritten.`,
		Example: `  muster twin update sensor-1 --tags '{"site":"plant-2","floor":3}'
  muster twin update sensor-1 --desired '{"interval":10,"mode":null}'
  muster twin update edge-1 --module SimulatedTemperatureSensor --desired '{"SendInterval":5}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tags == "" && desired == "" {
				return errors.New("give --tags and/or --desired: there is nothing to update")
			}
			var u hubservice.TwinUpdate
			for _, f := range []struct {
				flag, value string
				dst         *json.RawMessage
			}{{"--tags", tags, &u.Tags}, {"--desired", desired, &u.Desired}} {
				if f.value == "" {
					continue
				}
				var obj map[string]json.RawMessage
				if err := json.Unmarshal([]byte(f.value), &obj); err != nil || obj == nil {
					if err == nil {
						err = errors.New("it is null")
					}
					return fmt.Errorf("%s: not a JSON object: %w", f.flag, err)
				}
				*f.dst = json.RawMessage(f.value)
			}
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			get := func() (*hubservice.Twin, error) { return hub.GetTwin(cmd.Context(), args[0]) }
			patch := func() (*hubservice.Twin, error) { return hub.PatchTwin(cmd.Context(), args[0], u, etag) }
			if module != "" {
				get = func() (*hubservice.Twin, error) { return hub.GetModuleTwin(cmd.Context(), args[0], module) }
				patch = func() (*hubservice.Twin, error) { return hub.PatchModuleTwin(cmd.Context(), args[0], module, u, etag) }
			}
			if etag == "" {
				cur, err := get()
				if err != nil {
					return err
				}
				etag = cur.ETag
			}
			t, err := patch()
			if err != nil {
				return err
			}
			return c.emitDetails(t, twinDetails(t))
		},
	}
	f := cmd.Flags()
	f.StringVar(&tags, "tags", "", "JSON object merged into the twin's tags")
	f.StringVar(&desired, "desired", "", "JSON object merged into the twin's desired properties")
	f.StringVar(&etag, "etag", "", "patch only if the twin still has this etag (default: the etag just read)")
	f.StringVar(&module, "module", "", "update the twin of this module of the device")
	return cmd
}

// sectionText is a desired or reported section for the text view: its
// members and $version, without the $metadata tree (-o json keeps it).
func sectionText(raw json.RawMessage) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return rawText(raw)
	}
	delete(m, "$metadata")
	b, err := json.Marshal(m)
	if err != nil {
		return rawText(raw)
	}
	return string(b)
}

// twinDetails describes a device or module twin.
func twinDetails(t *hubservice.Twin) *details {
	var d details
	d.add("Device ID", t.DeviceID)
	d.add("Module ID", t.ModuleID)
	d.add("Status", t.Status)
	d.add("Connection state", t.ConnectionState)
	d.add("Authentication", t.AuthenticationType)
	if t.ModuleID == "" { // module twins have no capabilities
		d.add("IoT Edge", boolText(t.Capabilities.IoTEdge))
	}
	d.add("Tags", rawText(t.Tags))
	d.add("Desired", sectionText(t.Properties.Desired))
	d.add("Reported", sectionText(t.Properties.Reported))
	d.add("Version", fmt.Sprint(t.Version))
	d.add("ETag", t.ETag)
	return &d
}
