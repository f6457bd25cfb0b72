package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
)

// envHubConnectionString names the hub connection string the hub commands
// (device, twin, monitor) use.
const envHubConnectionString = "MUSTER_HUB_CONNECTION_STRING"

// Device authentication types the CLI creates.
const (
	authSAS                  = "sas"
	authSelfSigned           = "selfSigned"
	authCertificateAuthority = "certificateAuthority"
)

// hubFlag holds the --hub-connection-string flag of one hub command tree.
type hubFlag struct {
	connectionString string
	flags            *pflag.FlagSet
}

// addHubFlag adds --hub-connection-string to cmd and its subcommands.
func addHubFlag(cmd *cobra.Command) *hubFlag {
	h := &hubFlag{flags: cmd.PersistentFlags()}
	h.flags.StringVar(&h.connectionString, "hub-connection-string", "",
		"hub service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…); env "+envHubConnectionString+"; default: endpoints.json's hubConnectionString")
	return h
}

// resolveHubTarget applies flag > env > endpoints.json to the hub
// connection string, and --server/--ca-file (flag > env) > endpoints.json to
// the address and CA file; endpoints.json's are used only with a connection
// string for its hub.
func (c *cli) resolveHubTarget(h *hubFlag) (target, error) {
	t := target{
		server: c.setting("server", c.server, envServer),
		caFile: c.setting("ca-file", c.caFile, envCAFile),
	}
	if f := h.flags.Lookup("hub-connection-string"); f != nil && f.Changed {
		t.connectionString = h.connectionString
	} else if v, ok := c.lookupEnv(envHubConnectionString); ok && v != "" {
		t.connectionString = v
	}
	return c.completeFromEndpoints(t, hubRealm())
}

func hubRealm() serviceRealm {
	return serviceRealm{what: "hub", flag: "hub-connection-string", env: envHubConnectionString, key: "hubConnectionString",
		fromEndpoints: func(ep *instance.Endpoints) string { return ep.HubConnectionString }}
}

// hubService returns a client of the hub service API the settings point at.
func (c *cli) hubService(h *hubFlag) (*hubservice.Client, error) {
	t, err := c.resolveHubTarget(h)
	if err != nil {
		return nil, err
	}
	opts := hubservice.Options{ConnectionString: t.connectionString, Server: t.server}
	if t.caFile != "" {
		if opts.RootCAs, err = rootsFromFile(t.caFile); err != nil {
			return nil, err
		}
	}
	cl, err := hubservice.New(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to the hub service API: %w", err)
	}
	return cl, nil
}

// rootsFromFile reads the PEM certificates of --ca-file into a pool.
func rootsFromFile(path string) (*x509.CertPool, error) {
	pem, err := readFlagFile("--ca-file", path)
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseCertificates(pem)
	if err != nil {
		return nil, fmt.Errorf("--ca-file %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

func (c *cli) deviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "device",
		Aliases: []string{"devices"},
		Short:   "Manage the hub's device identities (and see why a device was refused)",
		Long: `Manage the device identities of the hub through its service API, with a hub
connection string (--hub-connection-string, ` + envHubConnectionString + `, or
endpoints.json's hubConnectionString). "device why" reads the attempt log
through the provisioning service API with the DPS connection string.`,
	}
	h := addHubFlag(cmd)
	cmd.AddCommand(c.deviceListCmd(h), c.deviceShowCmd(h), c.deviceCreateCmd(h), c.deviceUpdateCmd(h),
		c.deviceDeleteCmd(h), c.deviceWhyCmd())
	return cmd
}

func (c *cli) deviceListCmd(h *hubFlag) *cobra.Command {
	var top int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List device identities in ID order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			ds, err := hub.ListDevices(cmd.Context(), top)
			if err != nil {
				return err
			}
			if ds == nil {
				ds = []*registry.Device{}
			}
			for _, d := range ds {
				redactKeys(d)
			}
			return c.emit(ds, func(w io.Writer) {
				row(w, "DEVICE ID", "STATUS", "AUTHENTICATION", "EDGE", "CONNECTION", "LAST ACTIVITY")
				for _, d := range ds {
					row(w, d.DeviceID, d.Status, d.Authentication.Type, boolText(d.Capabilities.IoTEdge), d.ConnectionState, timeText(d.LastActivityTime))
				}
			})
		},
	}
	cmd.Flags().IntVar(&top, "top", hubservice.MaxListDevices, fmt.Sprintf("list at most this many devices (1 to %d)", hubservice.MaxListDevices))
	return cmd
}

func (c *cli) deviceShowCmd(h *hubFlag) *cobra.Command {
	var showKeys bool
	cmd := &cobra.Command{
		Use:   "show <device-id>",
		Short: "Show a device identity (its keys only with --show-keys)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			d, err := hub.GetDevice(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !showKeys {
				redactKeys(d)
			}
			return c.emitDetails(d, deviceDetails(hub.HostName(), d))
		},
	}
	cmd.Flags().BoolVar(&showKeys, "show-keys", false, "print the device's symmetric keys and connection string")
	return cmd
}

// deviceSpec holds the flags of device create and update.
type deviceSpec struct {
	deviceID                                  string
	authType                                  string
	primaryKey, secondaryKey                  string
	primaryThumbprint, secondaryThumbprint    string
	edgeEnabled                               bool
	status, statusReason                      string
	flags                                     *pflag.FlagSet
	changedAuth, changedKeys, changedThumbs   bool
	changedEdge, changedStatus, changedReason bool
}

func (s *deviceSpec) addFlags(f *pflag.FlagSet, create bool) {
	s.flags = f
	def := ""
	if create {
		def = authSAS
	}
	f.StringVar(&s.authType, "auth-type", def, "authentication: sas, selfSigned or certificateAuthority")
	f.StringVar(&s.primaryKey, "primary-key", "", "sas: the primary key, base64 (default: generated)")
	f.StringVar(&s.secondaryKey, "secondary-key", "", "sas: the secondary key, base64 (default: generated)")
	f.StringVar(&s.primaryThumbprint, "primary-thumbprint", "", "selfSigned: SHA-1 or SHA-256 thumbprint (hex) of the device certificate")
	f.StringVar(&s.secondaryThumbprint, "secondary-thumbprint", "", "selfSigned: thumbprint of the device's second certificate")
	f.BoolVar(&s.edgeEnabled, "edge-enabled", false, "the device is an IoT Edge device")
	f.StringVar(&s.status, "status", "", "enabled or disabled (create default: enabled)")
	f.StringVar(&s.statusReason, "status-reason", "", "why the device has its status (free text)")
}

// changed records which flags were given.
func (s *deviceSpec) changed() {
	ch := s.flags.Changed
	s.changedAuth = ch("auth-type")
	s.changedKeys = ch("primary-key") || ch("secondary-key")
	s.changedThumbs = ch("primary-thumbprint") || ch("secondary-thumbprint")
	s.changedEdge = ch("edge-enabled")
	s.changedStatus = ch("status")
	s.changedReason = ch("status-reason")
}

// normalizeAuthType returns the canonical spelling of an authentication type.
func normalizeAuthType(v string) (string, error) {
	for _, t := range []string{authSAS, authSelfSigned, authCertificateAuthority} {
		if strings.EqualFold(v, t) {
			return t, nil
		}
	}
	return "", fmt.Errorf("--auth-type %q: must be %s, %s or %s", v, authSAS, authSelfSigned, authCertificateAuthority)
}

// apply writes the given flags onto d (a new device or one read back).
func (s *deviceSpec) apply(d *registry.Device) error {
	s.changed()
	if s.changedStatus {
		st := strings.ToLower(s.status)
		if st != registry.StatusEnabled && st != "disabled" {
			return fmt.Errorf("--status %q: must be enabled or disabled", s.status)
		}
		d.Status = st
	}
	if s.changedReason {
		reason := s.statusReason
		d.StatusReason = &reason
	}
	if s.changedEdge {
		d.Capabilities.IoTEdge = s.edgeEnabled
	}
	auth := &d.Authentication
	if s.changedAuth || d.Authentication.Type == "" {
		t, err := normalizeAuthType(s.authType)
		if err != nil {
			return err
		}
		if t != auth.Type {
			*auth = registry.Authentication{Type: t}
		}
	}
	if s.changedKeys && auth.Type != authSAS {
		return fmt.Errorf("--primary-key and --secondary-key need --auth-type %s, not %s", authSAS, auth.Type)
	}
	if s.changedThumbs && auth.Type != authSelfSigned {
		return fmt.Errorf("--primary-thumbprint and --secondary-thumbprint need --auth-type %s, not %s", authSelfSigned, auth.Type)
	}
	switch auth.Type {
	case authSAS:
		if auth.SymmetricKey == nil {
			auth.SymmetricKey = &registry.SymmetricKey{}
		}
		for _, k := range []struct {
			flag, value string
			dst         *string
		}{{"--primary-key", s.primaryKey, &auth.SymmetricKey.PrimaryKey}, {"--secondary-key", s.secondaryKey, &auth.SymmetricKey.SecondaryKey}} {
			if k.value != "" {
				if _, err := sas.DecodeKey(k.value); err != nil {
					return fmt.Errorf("%s: %w", k.flag, err)
				}
				*k.dst = k.value
			}
			if *k.dst == "" {
				key, err := sas.GenerateKey()
				if err != nil {
					return fmt.Errorf("generate the %s: %w", strings.TrimPrefix(k.flag, "--"), err)
				}
				*k.dst = key
			}
		}
	case authSelfSigned:
		if s.primaryThumbprint != "" {
			v := s.primaryThumbprint
			auth.X509Thumbprint.PrimaryThumbprint = &v
		}
		if s.secondaryThumbprint != "" {
			v := s.secondaryThumbprint
			auth.X509Thumbprint.SecondaryThumbprint = &v
		}
		if auth.X509Thumbprint.PrimaryThumbprint == nil || *auth.X509Thumbprint.PrimaryThumbprint == "" {
			return fmt.Errorf("--primary-thumbprint: a %s device needs the thumbprint of its certificate", authSelfSigned)
		}
	}
	return nil
}

func (c *cli) deviceCreateCmd(h *hubFlag) *cobra.Command {
	var spec deviceSpec
	cmd := &cobra.Command{
		Use:   "create --device-id <id> [flags]",
		Short: "Create a device identity (sas keys are generated unless given)",
		Example: `  muster device create --device-id sensor-1
  muster device create --device-id cam-7 --auth-type selfSigned --primary-thumbprint 9F8E…
  muster device create --device-id gw-1 --edge-enabled`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if spec.deviceID != "" && spec.deviceID != args[0] {
					return fmt.Errorf("--device-id %q and the argument %q name different devices", spec.deviceID, args[0])
				}
				spec.deviceID = args[0]
			}
			if spec.deviceID == "" {
				return errors.New("--device-id: give the ID of the device to create")
			}
			d := &registry.Device{DeviceID: spec.deviceID}
			if err := spec.apply(d); err != nil {
				return err
			}
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			out, err := hub.CreateDevice(cmd.Context(), d)
			if err != nil {
				return err
			}
			return c.emitDetails(out, deviceDetails(hub.HostName(), out))
		},
	}
	cmd.Flags().StringVar(&spec.deviceID, "device-id", "", "the device ID (or give it as the argument)")
	spec.addFlags(cmd.Flags(), true)
	return cmd
}

func (c *cli) deviceUpdateCmd(h *hubFlag) *cobra.Command {
	var (
		spec deviceSpec
		etag string
	)
	cmd := &cobra.Command{
		Use:   "update <device-id> [flags]",
		Short: "Change a device identity (read, change the given fields, write back with If-Match)",
		Example: `  muster device update sensor-1 --status disabled --status-reason "battery swap"
  muster device update gw-1 --edge-enabled=false`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			d, err := hub.GetDevice(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := spec.apply(d); err != nil {
				return err
			}
			if etag == "" {
				etag = d.ETag
			}
			out, err := hub.UpdateDevice(cmd.Context(), d, etag)
			if err != nil {
				return err
			}
			redactKeys(out)
			return c.emitDetails(out, deviceDetails(hub.HostName(), out))
		},
	}
	spec.addFlags(cmd.Flags(), false)
	cmd.Flags().StringVar(&etag, "etag", "", "write only if the device still has this etag (default: the etag just read)")
	return cmd
}

func (c *cli) deviceDeleteCmd(h *hubFlag) *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete <device-id>",
		Short: "Delete a device identity and its twin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			if err := hub.DeleteDevice(cmd.Context(), args[0], etag); err != nil {
				return err
			}
			return c.emit(deleted{Deleted: "device", ID: args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "Deleted device %s.\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the device still has this etag")
	return cmd
}

func (c *cli) deviceWhyCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "why <device-id>",
		Short: "Show the attempt log of a device, newest first: its registrations and refused hub connections",
		Long: `Show why a device was refused: the attempt log entries recorded under its
ID, newest first. The provisioning service records each registration attempt
there and the hub each refused CONNECT (protocol hub-mqtt), with the denial
reason and a hint. The log is read through the provisioning service API, with
the DPS connection string.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return fmt.Errorf("--limit %d: must be at least 1", limit)
			}
			svc, err := c.service()
			if err != nil {
				return err
			}
			attempts, err := svc.Attempts(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			if attempts == nil {
				attempts = []store.Attempt{}
			}
			slices.SortStableFunc(attempts, func(a, b store.Attempt) int { return b.Time.Compare(a.Time) })
			if len(attempts) == 0 {
				c.note("No attempts are recorded for %q: the device has neither registered nor been refused by the hub (a device that never reached the server, for DNS, TLS trust or network reasons, leaves none).", args[0])
			}
			return c.emit(attempts, func(w io.Writer) {
				if len(attempts) == 0 {
					return
				}
				row(w, "TIME", "PROTOCOL", "ATTESTATION", "OUTCOME", "REASON", "ENROLLMENT", "HINT")
				for _, a := range attempts {
					row(w, timeText(a.Time), a.Protocol, a.Attestation, a.Outcome, a.Reason, enrollmentText(a), a.Hint)
				}
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", defaultAttemptLimit, "how many attempts to show")
	return cmd
}

// redactKeys blanks a device's symmetric keys (for output that should not
// show them).
func redactKeys(d *registry.Device) {
	if d.Authentication.SymmetricKey != nil {
		d.Authentication.SymmetricKey = nil
	}
}

// deviceDetails describes a device identity; its keys and connection
// string appear only when d still carries them.
func deviceDetails(hubHost string, d *registry.Device) *details {
	var dt details
	dt.add("Device ID", d.DeviceID)
	dt.add("Status", d.Status)
	if d.StatusReason != nil {
		dt.add("Status reason", *d.StatusReason)
	}
	dt.add("Authentication", d.Authentication.Type)
	if k := d.Authentication.SymmetricKey; k != nil {
		dt.add("Primary key", k.PrimaryKey)
		dt.add("Secondary key", k.SecondaryKey)
		if k.PrimaryKey != "" {
			dt.add("Connection string", "HostName="+hubHost+";DeviceId="+d.DeviceID+";SharedAccessKey="+k.PrimaryKey)
		}
	}
	if p := d.Authentication.X509Thumbprint.PrimaryThumbprint; p != nil {
		dt.add("Primary thumbprint", *p)
	}
	if s := d.Authentication.X509Thumbprint.SecondaryThumbprint; s != nil {
		dt.add("Secondary thumbprint", *s)
	}
	dt.add("IoT Edge", boolText(d.Capabilities.IoTEdge))
	dt.add("Connection state", d.ConnectionState)
	dt.add("Last activity", timeText(d.LastActivityTime))
	dt.add("Device scope", d.DeviceScope)
	dt.add("Parent scopes", strings.Join(d.ParentScopes, ", "))
	if p := d.ProvisionedBy; p != nil {
		by := "registration " + p.RegistrationID
		if p.EnrollmentGroupID != "" {
			by += " (group " + p.EnrollmentGroupID + ")"
		}
		dt.add("Provisioned by", by)
	}
	dt.add("Generation ID", d.GenerationID)
	dt.add("ETag", d.ETag)
	return &dt
}
