package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/enroll"
)

func (c *cli) caCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Register CA certificates and prove possession of their keys",
		Long: `Register CA certificates with the service and prove possession of their keys,
so enrollment groups can reference them (--ca-name):

  muster ca upload my-root --certificate-path certs/azure-iot-test-only.root.ca.cert.pem
  muster ca verification-code my-root
  muster certs verification <code> --signer root
  muster ca verify my-root --certificate-path certs/verification-code.cert.pem`,
	}
	cmd.AddCommand(c.caUploadCmd(), c.caShowCmd(), c.caListCmd(), c.caCodeCmd(), c.caVerifyCmd(), c.caDeleteCmd())
	return cmd
}

// etagOf returns the given etag, or fetches the CA's current one.
func etagOf(cmd *cobra.Command, svc *dpsservice.Client, name, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	ca, err := svc.GetCA(cmd.Context(), name)
	if err != nil {
		return "", err
	}
	return ca.ETag, nil
}

func (c *cli) caUploadCmd() *cobra.Command {
	var path, etag string
	cmd := &cobra.Command{
		Use:   "upload <name> --certificate-path <file>",
		Short: "Upload (or replace) a CA certificate; it starts unverified",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return errors.New("--certificate-path: give the PEM file of the CA certificate")
			}
			pem, note, err := readCertificateFlag("--certificate-path", path)
			if err != nil {
				return err
			}
			svc, err := c.service()
			if err != nil {
				return err
			}
			ca, err := svc.PutCA(cmd.Context(), args[0], pem, etag)
			if err != nil {
				return err
			}
			if note != "" {
				c.note("%s", note)
			}
			if !ca.IsVerified {
				c.note("Next: muster ca verification-code %s", ca.Name)
			}
			return c.emitDetails(ca, caDetails(ca))
		},
	}
	cmd.Flags().StringVar(&path, "certificate-path", "", "PEM file of the CA certificate (required)")
	cmd.Flags().StringVar(&etag, "etag", "", "replace only if the CA still has this etag")
	return cmd
}

func (c *cli) caShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show <name>",
		Short: "Show a CA certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			ca, err := svc.GetCA(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.emitDetails(ca, caDetails(ca))
		},
	}
}

func (c *cli) caListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List CA certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			cas, err := svc.ListCAs(cmd.Context())
			if err != nil {
				return err
			}
			if cas == nil {
				cas = []*enroll.CACertificate{}
			}
			return c.emit(cas, func(w io.Writer) {
				row(w, "NAME", "SUBJECT", "VERIFIED", "EXPIRES", "SHA-1 THUMBPRINT")
				for _, ca := range cas {
					row(w, ca.Name, ca.Subject, boolText(ca.IsVerified), timeText(ca.Expiry), ca.Thumbprint)
				}
			})
		},
	}
}

func (c *cli) caCodeCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "verification-code <name>",
		Short: "Get a proof-of-possession code for a CA certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			ifMatch, err := etagOf(cmd, svc, args[0], etag)
			if err != nil {
				return err
			}
			ca, err := svc.GenerateVerificationCode(cmd.Context(), args[0], ifMatch)
			if err != nil {
				return err
			}
			c.note("Next: sign a certificate with CN=%s using the CA's key, for example\n  muster certs verification %s --signer root\nthen: muster ca verify %s --certificate-path certs/verification-code.cert.pem",
				ca.VerificationCode, ca.VerificationCode, ca.Name)
			return c.emit(ca, func(w io.Writer) {
				d := &details{}
				d.add("Name", ca.Name)
				d.add("Verification code", ca.VerificationCode)
				d.add("ETag", ca.ETag)
				d.write(w)
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "the CA's etag (default: fetched)")
	return cmd
}

func (c *cli) caVerifyCmd() *cobra.Command {
	var path, etag string
	cmd := &cobra.Command{
		Use:   "verify <name> --certificate-path <file>",
		Short: "Prove possession of a CA's key with a certificate whose CN is the verification code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return errors.New("--certificate-path: give the PEM file of the verification certificate")
			}
			pem, _, err := readCertificateFlag("--certificate-path", path)
			if err != nil {
				return err
			}
			svc, err := c.service()
			if err != nil {
				return err
			}
			ifMatch, err := etagOf(cmd, svc, args[0], etag)
			if err != nil {
				return err
			}
			ca, err := svc.VerifyCA(cmd.Context(), args[0], pem, ifMatch)
			if err != nil {
				return err
			}
			return c.emitDetails(ca, caDetails(ca))
		},
	}
	cmd.Flags().StringVar(&path, "certificate-path", "", "PEM file of the verification certificate (required)")
	cmd.Flags().StringVar(&etag, "etag", "", "the CA's etag (default: fetched)")
	return cmd
}

func (c *cli) caDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete <name>",
		Short: "Delete a CA certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			ifMatch, err := etagOf(cmd, svc, args[0], etag)
			if err != nil {
				return err
			}
			if err := svc.DeleteCA(cmd.Context(), args[0], ifMatch); err != nil {
				return err
			}
			return c.emit(deleted{Deleted: "caCertificate", ID: args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "Deleted CA certificate %s.\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "the CA's etag (default: fetched)")
	return cmd
}

// caDetails describes a CA certificate.
func caDetails(ca *enroll.CACertificate) *details {
	d := &details{}
	d.add("Name", ca.Name)
	d.add("Subject", ca.Subject)
	d.add("Verified", boolText(ca.IsVerified))
	d.add("Verified at", timePtrText(ca.VerifiedAt))
	d.add("Verification code", ca.VerificationCode)
	d.add("Expires", timeText(ca.Expiry))
	d.add("SHA-1 thumbprint", ca.Thumbprint)
	d.add("SHA-256 thumbprint", ca.SHA256Thumbprint)
	d.add("ETag", ca.ETag)
	d.add("Created", timeText(ca.Created))
	d.add("Updated", timeText(ca.Updated))
	return d
}
