package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/edge/config"
)

// initOptions are the flags of `iotedge init`.
type initOptions struct {
	dpsX509, dpsSymmetricKey bool
	scopeID, registrationID  string
	symmetricKey             string
	identityCert, identityPK string
	globalEndpoint           string
	trustBundle              string
	transport                string
	reprovisioning           string
	hostname, homedir        string
	hubMQTTPort, hubHTTPS    int
	edgeHubAddress           string
	configFile               string
	force                    bool
	installService           bool
}

// newInitCmd builds `iotedge init`, the counterpart of the IoT Edge 1.1
// Windows installer's Initialize-IoTEdge for DPS provisioning.
func newInitCmd(stdout io.Writer) *cobra.Command {
	o := &initOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Configure the runtime to provision through DPS",
		Long: `Configure the runtime to provision through the device provisioning service.

This mirrors Initialize-IoTEdge of the IoT Edge 1.1 Windows installer:

  Initialize-IoTEdge -DpsX509 -ScopeId S -X509IdentityCertificate C -X509IdentityPrivateKey K [-RegistrationId R]
    iotedge init --dps-x509 --scope-id S --x509-identity-certificate C --x509-identity-private-key K [--registration-id R] --global-endpoint E

  Initialize-IoTEdge -DpsSymmetricKey -ScopeId S -RegistrationId R -SymmetricKey K
    iotedge init --dps-symmetric-key --scope-id S --registration-id R --symmetric-key K --global-endpoint E

The global endpoint is Muster's dpsDeviceEndpoint (host:port, or a URL such as
https://localhost:8443). Paths may be relative; they are stored as absolute
file URIs. The certificate must be a PEM chain starting with the device
certificate and the key must belong to it. Without --registration-id an X.509
device registers with its certificate's CN. An inline symmetric key is stored
in a key file under homedir. The configuration is written like
"iotedge config apply" writes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runInit(stdout, o); err != nil || !o.installService {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("init: locate this executable for the service: %w", err)
			}
			return installAndStartService(cmd.Context(), stdout, platformServices{}, exe, o.configFile)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.dpsX509, "dps-x509", false, "provision through DPS with an X.509 identity certificate")
	f.BoolVar(&o.dpsSymmetricKey, "dps-symmetric-key", false, "provision through DPS with a symmetric key")
	f.StringVar(&o.scopeID, "scope-id", "", "the DPS ID scope")
	f.StringVar(&o.registrationID, "registration-id", "", "the registration ID (default for X.509: the certificate's CN)")
	f.StringVar(&o.symmetricKey, "symmetric-key", "", "the device's base64 symmetric key (individual or derived from a group key)")
	f.StringVar(&o.identityCert, "x509-identity-certificate", "", "PEM file of the identity certificate chain, device certificate first")
	f.StringVar(&o.identityPK, "x509-identity-private-key", "", "PEM file of the identity certificate's private key")
	f.StringVar(&o.globalEndpoint, "global-endpoint", "", "the DPS device endpoint: host:port or https://host:port")
	f.StringVar(&o.trustBundle, "trust-bundle", "", "PEM file of the CA certificates that verify the service (Muster's server CA)")
	f.StringVar(&o.transport, "transport", config.TransportHTTPS, "https or mqtt, towards DPS and the hub")
	f.StringVar(&o.reprovisioning, "auto-reprovisioning-mode", config.ReprovisionDynamic, "Dynamic, AlwaysOnStartup or OnErrorOnly")
	f.StringVar(&o.hostname, "hostname", "", "the edge device's host name (default: the machine's)")
	f.StringVar(&o.homedir, "homedir", config.DefaultHomedir(), "the runtime's state directory")
	f.IntVar(&o.hubMQTTPort, "iothub-mqtt-port", 0, fmt.Sprintf("the assigned hub's MQTT port (default %d; Muster: the port of endpoints.json mqttAddr)", config.DefaultHubMQTTPort))
	f.IntVar(&o.hubHTTPS, "iothub-https-port", 0, fmt.Sprintf("the assigned hub's HTTPS port (default %d; Muster: the port of endpoints.json httpsAddr)", config.DefaultHubHTTPSPort))
	f.StringVar(&o.edgeHubAddress, "edge-hub-address", "", fmt.Sprintf("host:port the local edge hub listens on for modules (default %s; port 0 picks a free one)", config.DefaultEdgeHubAddress))
	f.StringVar(&o.configFile, "config-file", config.DefaultConfigPath(), "where the runtime reads its configuration")
	f.BoolVar(&o.force, "force", false, "overwrite an existing configuration file")
	f.BoolVar(&o.installService, "install-service", false, "then install the runtime's system service and start it (restart it when installed)")
	cmd.MarkFlagsMutuallyExclusive("dps-x509", "dps-symmetric-key")
	cmd.MarkFlagsOneRequired("dps-x509", "dps-symmetric-key")
	return cmd
}

func runInit(stdout io.Writer, o *initOptions) error {
	c, err := o.config()
	if err != nil {
		return err
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return flagProblems(err)
	}
	if err := c.CheckFiles(); err != nil {
		return flagProblems(err)
	}
	if !o.force {
		if _, err := os.Stat(o.configFile); err == nil {
			return fmt.Errorf("init: %s already exists; pass --force to overwrite it, or edit it and run \"iotedge config apply\"", o.configFile)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("init: check %s: %w", o.configFile, err)
		}
	}
	return install(stdout, c, o.configFile)
}

// config builds the configuration the flags describe; file flags become
// absolute file URIs.
func (o *initOptions) config() (*config.Config, error) {
	var errs []error
	uri := func(flag, p string) string {
		if p == "" {
			return ""
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s: make %q absolute: %w", flag, p, err))
			return ""
		}
		return config.PathToFileURI(abs)
	}
	a := &config.Attestation{RegistrationID: o.registrationID}
	if o.dpsX509 {
		a.Method = config.MethodX509
	} else {
		a.Method = config.MethodSymmetricKey
	}
	if o.symmetricKey != "" {
		a.SymmetricKey = &config.Secret{Value: o.symmetricKey}
	}
	a.IdentityCert = uri("x509-identity-certificate", o.identityCert)
	a.IdentityPK = uri("x509-identity-private-key", o.identityPK)
	c := &config.Config{
		Hostname:               o.hostname,
		TrustBundleCert:        uri("trust-bundle", o.trustBundle),
		AutoReprovisioningMode: o.reprovisioning,
		Provisioning: config.Provisioning{
			Source:         config.SourceDPS,
			Transport:      o.transport,
			GlobalEndpoint: o.globalEndpoint,
			IDScope:        o.scopeID,
			Attestation:    a,
		},
	}
	if o.hubMQTTPort != 0 || o.hubHTTPS != 0 {
		c.IoTHub = &config.IoTHub{MQTTPort: o.hubMQTTPort, HTTPSPort: o.hubHTTPS}
	}
	if o.edgeHubAddress != "" {
		c.EdgeHub = &config.EdgeHub{ListenAddress: o.edgeHubAddress}
	}
	if o.homedir != "" {
		abs, err := filepath.Abs(o.homedir)
		if err != nil {
			errs = append(errs, fmt.Errorf("--homedir: make %q absolute: %w", o.homedir, err))
		}
		c.Homedir = abs
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	return c, nil
}

// flagProblems restates configuration problems in terms of the init flags.
func flagProblems(err error) error {
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("init: %w", err)
	}
	lines := make([]string, 0, len(ve.Problems))
	for _, p := range ve.Problems {
		msg := strings.NewReplacer(
			fmt.Sprintf("method = %q", config.MethodX509), "--dps-x509",
			fmt.Sprintf("method = %q", config.MethodSymmetricKey), "--dps-symmetric-key",
		).Replace(p.Message)
		if flag := flagOfKey(p.Key); flag != "" {
			lines = append(lines, fmt.Sprintf("%s (%s): %s", flag, p.Key, msg))
		} else {
			lines = append(lines, p.String())
		}
	}
	if len(lines) == 1 {
		return fmt.Errorf("init: %s", lines[0])
	}
	return fmt.Errorf("init: %d problems:\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// flagOfKey names the init flag that sets a configuration key.
func flagOfKey(key string) string {
	switch key {
	case "provisioning.id_scope":
		return "--scope-id"
	case "provisioning.global_endpoint":
		return "--global-endpoint"
	case "provisioning.transport":
		return "--transport"
	case "provisioning.attestation.registration_id":
		return "--registration-id"
	case "provisioning.attestation.symmetric_key", "provisioning.attestation.symmetric_key.value":
		return "--symmetric-key"
	case "provisioning.attestation.identity_cert":
		return "--x509-identity-certificate"
	case "provisioning.attestation.identity_pk":
		return "--x509-identity-private-key"
	case "trust_bundle_cert":
		return "--trust-bundle"
	case "auto_reprovisioning_mode":
		return "--auto-reprovisioning-mode"
	case "hostname":
		return "--hostname"
	case "homedir":
		return "--homedir"
	case "iothub.mqtt_port":
		return "--iothub-mqtt-port"
	case "iothub.https_port":
		return "--iothub-https-port"
	case "edge_hub.listen_address":
		return "--edge-hub-address"
	}
	return ""
}
