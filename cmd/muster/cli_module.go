package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/registry"
)

func (c *cli) moduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "module",
		Aliases: []string{"modules"},
		Short:   "List and show the module identities of a device",
		Long: `List and show the module identities of a device (IoT Edge devices have
$edgeAgent and $edgeHub, plus the modules their deployments create) through
the hub service API, with a hub connection string (--hub-connection-string,
` + envHubConnectionString + `, or endpoints.json's hubConnectionString). Module twins are shown by
"muster twin show <device-id> --module <module-id>".`,
	}
	h := addHubFlag(cmd)
	cmd.AddCommand(c.moduleListCmd(h), c.moduleShowCmd(h))
	return cmd
}

func (c *cli) moduleListCmd(h *hubFlag) *cobra.Command {
	return &cobra.Command{
		Use:   "list <device-id>",
		Short: "List a device's module identities in ID order",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			ms, err := hub.ListModules(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if ms == nil {
				ms = []*registry.Module{}
			}
			for _, m := range ms {
				redactModuleKeys(m)
			}
			return c.emit(ms, func(w io.Writer) {
				row(w, "MODULE ID", "MANAGED BY", "AUTHENTICATION", "CONNECTION", "LAST ACTIVITY")
				for _, m := range ms {
					row(w, m.ModuleID, m.ManagedBy, m.Authentication.Type, m.ConnectionState, timeText(m.LastActivityTime))
				}
			})
		},
	}
}

func (c *cli) moduleShowCmd(h *hubFlag) *cobra.Command {
	var showKeys bool
	cmd := &cobra.Command{
		Use:   "show <device-id> <module-id>",
		Short: "Show a module identity (its keys only with --show-keys)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			m, err := hub.GetModule(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if !showKeys {
				redactModuleKeys(m)
			}
			return c.emitDetails(m, moduleDetails(hub.HostName(), m))
		},
	}
	cmd.Flags().BoolVar(&showKeys, "show-keys", false, "print the module's symmetric keys and connection string")
	return cmd
}

// redactModuleKeys removes a module's symmetric keys before it is printed.
func redactModuleKeys(m *registry.Module) {
	m.Authentication.SymmetricKey = nil
}

// moduleDetails describes a module identity; its keys and connection
// string appear only when m still carries them.
func moduleDetails(hubHost string, m *registry.Module) *details {
	var dt details
	dt.add("Device ID", m.DeviceID)
	dt.add("Module ID", m.ModuleID)
	dt.add("Managed by", m.ManagedBy)
	dt.add("Authentication", m.Authentication.Type)
	if k := m.Authentication.SymmetricKey; k != nil {
		dt.add("Primary key", k.PrimaryKey)
		dt.add("Secondary key", k.SecondaryKey)
		if k.PrimaryKey != "" {
			dt.add("Connection string", "HostName="+hubHost+";DeviceId="+m.DeviceID+";ModuleId="+m.ModuleID+";SharedAccessKey="+k.PrimaryKey)
		}
	}
	if p := m.Authentication.X509Thumbprint.PrimaryThumbprint; p != nil {
		dt.add("Primary thumbprint", *p)
	}
	if s := m.Authentication.X509Thumbprint.SecondaryThumbprint; s != nil {
		dt.add("Secondary thumbprint", *s)
	}
	dt.add("Connection state", m.ConnectionState)
	dt.add("Last activity", timeText(m.LastActivityTime))
	dt.add("Generation ID", m.GenerationID)
	dt.add("ETag", m.ETag)
	return &dt
}
