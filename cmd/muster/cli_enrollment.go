package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
)

const registrationIDFlag = "registration-id"

// idFrom returns the object ID given as the one positional argument or with
// the named flag.
func idFrom(args []string, fs *pflag.FlagSet, flag, value string) (string, error) {
	switch {
	case len(args) == 1 && fs.Changed(flag) && args[0] != value:
		return "", fmt.Errorf("the argument %q and --%s %q disagree; give one", args[0], flag, value)
	case len(args) == 1:
		return args[0], nil
	case fs.Changed(flag) && value != "":
		return value, nil
	}
	return "", fmt.Errorf("give the %s as an argument or with --%s", strings.ReplaceAll(flag, "-", " "), flag)
}

func (c *cli) enrollmentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "enrollment",
		Aliases: []string{"enrollments"},
		Short:   "Manage individual enrollments (one device each)",
	}
	cmd.AddCommand(c.enrollmentCreateCmd(), c.enrollmentShowCmd(), c.enrollmentListCmd(), c.enrollmentUpdateCmd(), c.enrollmentDeleteCmd())
	return cmd
}

func (c *cli) enrollmentCreateCmd() *cobra.Command {
	var (
		f               = enrollmentFlags{}
		regID, deviceID string
	)
	cmd := &cobra.Command{
		Use:   "create [registration-id]",
		Short: "Create an individual enrollment",
		Long: `Create an individual enrollment.

Symmetric key (the default): keys the service generates are printed; pass
--primary-key/--secondary-key to choose them. X.509: --certificate-path names
the device certificate, whose CN is the registration ID (and the default one).`,
		Example: `  muster enrollment create sn-007-888-abc --edge-enabled
  muster enrollment create --attestation-type x509 --certificate-path certs/iot-edge-device-identity-dev1.cert.pem --edge-enabled`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			var id string
			if len(args) > 0 || fs.Changed(registrationIDFlag) {
				var err error
				if id, err = idFrom(args, fs, registrationIDFlag, regID); err != nil {
					return err
				}
			}
			e := &enroll.IndividualEnrollment{RegistrationID: id, DeviceID: deviceID}
			notes, err := f.apply(fs, &e.Common, true)
			if err != nil {
				return err
			}
			cn := clientCertCN(e.Attestation)
			switch {
			case e.RegistrationID == "" && cn != "":
				e.RegistrationID = cn
			case e.RegistrationID == "":
				return fmt.Errorf("give the registration ID as an argument or with --%s", registrationIDFlag)
			case cn != "" && cn != e.RegistrationID:
				notes = append(notes, fmt.Sprintf("warning: the certificate's CN %q is not the registration ID %q; the device will be refused (cn_registration_id_mismatch)", cn, e.RegistrationID))
			}
			svc, err := c.service()
			if err != nil {
				return err
			}
			out, err := svc.PutEnrollment(cmd.Context(), e, "")
			if err != nil {
				return err
			}
			return c.emitDetails(out, enrollmentDetails(out), notes...)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&regID, registrationIDFlag, "", "registration ID (letters, digits, - . _ :; for X.509 the certificate's CN)")
	fs.StringVar(&deviceID, "device-id", "", "device ID in the hub (default: the registration ID)")
	f.register(fs)
	return cmd
}

// clientCertCN returns the CN of an individual X.509 attestation's primary
// certificate, "" when there is none.
func clientCertCN(a *enroll.AttestationMechanism) string {
	if a == nil || a.X509 == nil || a.X509.ClientCertificates == nil || a.X509.ClientCertificates.Primary == nil {
		return ""
	}
	cert, err := pki.ParseCertificate([]byte(a.X509.ClientCertificates.Primary.Certificate))
	if err != nil {
		return ""
	}
	return cert.Subject.CommonName
}

func (c *cli) enrollmentShowCmd() *cobra.Command {
	var showKeys bool
	cmd := &cobra.Command{
		Use:   "show <registration-id>",
		Short: "Show an individual enrollment and its registration state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			e, err := svc.GetEnrollment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if showKeys {
				if e.Attestation, err = svc.EnrollmentAttestation(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			return c.emitDetails(e, enrollmentDetails(e))
		},
	}
	cmd.Flags().BoolVar(&showKeys, "show-keys", false, "include the symmetric keys")
	return cmd
}

func (c *cli) enrollmentListCmd() *cobra.Command {
	var pageSize int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List individual enrollments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			items, err := svc.QueryEnrollments(cmd.Context(), dpsservice.QueryAll, pageSize)
			if err != nil {
				return err
			}
			if items == nil {
				items = []*enroll.IndividualEnrollment{}
			}
			return c.emit(items, func(w io.Writer) {
				row(w, "REGISTRATION ID", "DEVICE ID", "ATTESTATION", "PROVISIONING", "EDGE", "REGISTRATION", "HUB")
				for _, e := range items {
					var state, hub string
					if rs := e.RegistrationState; rs != nil {
						state, hub = rs.Status, rs.AssignedHub
					}
					row(w, e.RegistrationID, e.DeviceID, attestationText(e.Attestation, false), provisioningText(e.ProvisioningStatus),
						edgeText(e.Capabilities), state, hub)
				}
			})
		},
	}
	cmd.Flags().IntVar(&pageSize, "page-size", 0, "items per request (0: the service's default); every page is fetched")
	return cmd
}

func (c *cli) enrollmentUpdateCmd() *cobra.Command {
	var (
		f              = enrollmentFlags{}
		deviceID, etag string
	)
	cmd := &cobra.Command{
		Use:   "update <registration-id>",
		Short: "Change the given settings of an individual enrollment",
		Long: `Change the given settings of an individual enrollment: the enrollment is read,
the flags given are applied and it is written back under its etag (or --etag),
so a concurrent change is refused instead of lost.`,
		Example: `  muster enrollment update dev1 --provisioning-status disabled
  muster enrollment update dev1 --initial-twin-tags '{"site":"plant-2"}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			e, err := svc.GetEnrollment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fs := cmd.Flags()
			notes, err := f.apply(fs, &e.Common, false)
			if err != nil {
				return err
			}
			if fs.Changed("device-id") {
				e.DeviceID = deviceID
			}
			ifMatch := e.ETag
			if fs.Changed("etag") {
				ifMatch = etag
			}
			e.RegistrationState = nil
			out, err := svc.PutEnrollment(cmd.Context(), e, ifMatch)
			if err != nil {
				return err
			}
			return c.emitDetails(out, enrollmentDetails(out), notes...)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&deviceID, "device-id", "", "device ID in the hub")
	fs.StringVar(&etag, "etag", "", "update only if the enrollment still has this etag (default: the etag just read)")
	f.register(fs)
	return cmd
}

func (c *cli) enrollmentDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete <registration-id>",
		Short: "Delete an individual enrollment",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			if err := svc.DeleteEnrollment(cmd.Context(), args[0], etag); err != nil {
				return err
			}
			return c.emit(deleted{Deleted: "enrollment", ID: args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "Deleted enrollment %s.\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the enrollment still has this etag")
	return cmd
}

// deleted is the JSON answer of delete commands.
type deleted struct {
	Deleted string `json:"deleted"`
	ID      string `json:"id"`
}

// enrollmentDetails describes an individual enrollment.
func enrollmentDetails(e *enroll.IndividualEnrollment) *details {
	d := &details{}
	d.add("Registration ID", e.RegistrationID)
	d.add("Device ID", e.DeviceID)
	commonDetails(d, &e.Common, false)
	if rs := e.RegistrationState; rs != nil {
		d.add("Registration status", rs.Status)
		d.add("Registration substatus", rs.Substatus)
		d.add("Assigned hub", rs.AssignedHub)
		d.add("Assigned device ID", rs.DeviceID)
		d.add("Registration error", registrationErrorText(rs))
		d.add("Registration updated", timePtrText(rs.LastUpdatedDateTimeUTC))
	}
	return d
}

// commonDetails describes the settings enrollments and groups share.
func commonDetails(d *details, c *enroll.Common, group bool) {
	a := c.Attestation
	d.add("Attestation", attestationText(a, group))
	if a != nil && a.SymmetricKey != nil {
		d.add("Primary key", a.SymmetricKey.PrimaryKey)
		d.add("Secondary key", a.SymmetricKey.SecondaryKey)
	}
	if a != nil && a.X509 != nil {
		for _, set := range []struct {
			name  string
			certs *enroll.X509Certificates
		}{{"Certificate", a.X509.ClientCertificates}, {"Signing certificate", a.X509.SigningCertificates}} {
			if set.certs == nil {
				continue
			}
			certDetails(d, "Primary "+strings.ToLower(set.name), set.certs.Primary)
			certDetails(d, "Secondary "+strings.ToLower(set.name), set.certs.Secondary)
		}
		if r := a.X509.CAReferences; r != nil {
			d.add("Primary CA", r.Primary)
			d.add("Secondary CA", r.Secondary)
		}
	}
	d.add("Provisioning status", provisioningText(c.ProvisioningStatus))
	if c.Capabilities != nil {
		d.add("IoT Edge", boolText(c.Capabilities.IoTEdge))
	}
	d.add("Allocation policy", c.AllocationPolicy)
	d.add("IoT hubs", strings.Join(c.IoTHubs, ", "))
	d.add("IoT hub host name", c.IoTHubHostName)
	if def := c.CustomAllocationDefinition; def != nil {
		d.add("Webhook URL", redactURL(def.WebhookURL))
		d.add("Webhook api-version", def.APIVersion)
	}
	d.add("Reprovision policy", reprovisionText(c.ReprovisionPolicy))
	if tw := c.InitialTwin; tw != nil {
		d.add("Initial twin tags", rawText(tw.Tags))
		if tw.Properties != nil {
			d.add("Initial desired properties", rawText(tw.Properties.Desired))
		}
	}
	d.add("ETag", c.ETag)
	d.add("Created", timePtrText(c.CreatedDateTimeUTC))
	d.add("Updated", timePtrText(c.LastUpdatedDateTimeUTC))
}

// certDetails describes one certificate slot of an X.509 attestation from
// the service's info, or from the certificate itself when info is absent.
func certDetails(d *details, name string, c *enroll.X509CertificateWithInfo) {
	if c == nil {
		return
	}
	info := c.Info
	if info == nil && c.Certificate != "" {
		if cert, err := pki.ParseCertificate([]byte(c.Certificate)); err == nil {
			info = &enroll.X509CertificateInfo{
				SubjectName:      pki.DistinguishedName(cert.Subject),
				SHA256Thumbprint: pki.SHA256Thumbprint(cert),
				NotAfterUTC:      cert.NotAfter,
			}
		}
	}
	if info == nil {
		d.add(name, "(present)")
		return
	}
	d.add(name, info.SubjectName)
	d.add(name+" SHA-256", info.SHA256Thumbprint)
	d.add(name+" expires", timeText(info.NotAfterUTC))
}

// redactURL hides a webhook URL's query string, which holds function keys.
func redactURL(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i] + "?…"
	}
	return s
}

// attestationText summarises an attestation mechanism in a few words.
func attestationText(a *enroll.AttestationMechanism, group bool) string {
	switch {
	case a == nil:
		return ""
	case a.Type != enroll.AttestationX509 || a.X509 == nil:
		return a.Type
	case a.X509.CAReferences != nil && a.X509.CAReferences.Primary != "":
		return "x509 (CA " + a.X509.CAReferences.Primary + ")"
	case a.X509.SigningCertificates != nil:
		return "x509 (signing certificate)"
	case a.X509.ClientCertificates != nil && !group:
		return "x509 (device certificate)"
	}
	return a.Type
}

// provisioningText shows the provisioning status, which defaults to enabled.
func provisioningText(s string) string {
	if s == "" {
		return enroll.StatusEnabled
	}
	return s
}

// edgeText shows the IoT Edge capability.
func edgeText(c *enroll.Capabilities) string {
	return boolText(c != nil && c.IoTEdge)
}

// registrationErrorText shows a registration's error code and message.
func registrationErrorText(rs *enroll.RegistrationStateView) string {
	switch {
	case rs.ErrorCode != 0 && rs.ErrorMessage != "":
		return strconv.Itoa(rs.ErrorCode) + ": " + rs.ErrorMessage
	case rs.ErrorCode != 0:
		return strconv.Itoa(rs.ErrorCode)
	}
	return rs.ErrorMessage
}
