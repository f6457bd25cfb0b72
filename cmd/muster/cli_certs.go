package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/muster-iot/muster/internal/pki"
)

// Default common names, as the Azure IoT Edge test-certificate scripts use.
const (
	defaultRootCN         = "Azure_IoT_Hub_CA_Cert_Test_Only"
	defaultIntermediateCN = "Azure_IoT_Hub_Intermediate_Cert_Test_Only"
)

// certOptions are the flags every "certs" subcommand takes.
type certOptions struct {
	dir      string
	keyType  string
	days     int
	notAfter string
	force    bool
}

func (o *certOptions) register(flags *pflag.FlagSet) {
	flags.StringVar(&o.dir, "dir", ".", "base directory; files go to <dir>/certs and keys to <dir>/private")
	flags.StringVar(&o.keyType, "key-type", string(pki.KeyP256), "p256, p384, rsa2048, rsa3072 or rsa4096")
	flags.IntVar(&o.days, "days", 0, "validity in days from now (default 365, roots 3650)")
	flags.StringVar(&o.notAfter, "not-after", "", "expiry date, 2006-01-02 or RFC 3339 (instead of --days)")
	flags.BoolVar(&o.force, "force", false, "replace existing files")
}

func (o *certOptions) layout() pki.Layout { return pki.Layout{Dir: o.dir, Force: o.force} }

// options turns the flags into issuing options.
func (o *certOptions) options(flags *pflag.FlagSet) ([]pki.Option, error) {
	kt, err := pki.ParseKeyType(o.keyType)
	if err != nil {
		return nil, fmt.Errorf("--key-type: %w", err)
	}
	opts := []pki.Option{pki.WithKeyType(kt)}
	switch {
	case flags.Changed("days") && flags.Changed("not-after"):
		return nil, errors.New("give --days or --not-after, not both")
	case flags.Changed("days"):
		if o.days < 1 {
			return nil, fmt.Errorf("--days %d: must be at least 1", o.days)
		}
		opts = append(opts, pki.WithValidityDays(o.days))
	case flags.Changed("not-after"):
		na, err := parseDate(o.notAfter)
		if err != nil {
			return nil, err
		}
		nb := time.Now().Add(-pki.BackdateNotBefore)
		if !na.After(nb) {
			return nil, fmt.Errorf("--not-after %s: the date has passed", o.notAfter)
		}
		opts = append(opts, pki.WithValidity(nb, na))
	}
	return opts, nil
}

// parseDate reads --not-after: a date (meaning its first instant, midnight
// UTC) or an RFC 3339 time.
func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--not-after %q: use a date such as 2051-01-01 or an RFC 3339 time such as 2051-01-01T00:00:00Z", s)
}

// written describes the files of one certificate.
type written struct {
	Role      string `json:"role"`
	Cert      string `json:"cert"`
	FullChain string `json:"fullChain,omitempty"`
	Key       string `json:"key"`
	// Kept is set when an existing certificate was reused instead of written.
	Kept bool `json:"kept,omitempty"`
}

func writtenFrom(role string, p pki.DevicePaths) written {
	return written{Role: role, Cert: p.Cert, FullChain: p.FullChain, Key: p.Key}
}

// printWritten prints the files written.
func (c *cli) printWritten(ws []written) error {
	return c.emit(ws, func(w io.Writer) {
		row(w, "ROLE", "CERTIFICATE", "FULL CHAIN", "KEY")
		for _, x := range ws {
			role := x.Role
			if x.Kept {
				role += " (kept)"
			}
			row(w, role, x.Cert, x.FullChain, x.Key)
		}
	})
}

// forceHint adds the flag to use when a file exists.
func forceHint(err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w; pass --force to replace it", err)
	}
	return err
}

func (c *cli) certsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create test certificates (local files, no server needed)",
		Long: `Create test certificate chains for X.509 provisioning, with the file names of
the Azure IoT Edge test-certificate scripts: <dir>/certs/*.cert.pem and
<dir>/private/*.key.pem (keys 0600). Test certificates only: protect real CA
keys with an HSM or a managed PKI.`,
		Example: `  muster certs chain my-edge-device
  muster certs root --key-type rsa4096 --not-after 2051-01-01
  muster certs edge-ca my-edge-device`,
	}
	cmd.AddCommand(c.certsRootCmd(), c.certsIntermediateCmd(), c.certsDeviceCmd(), c.certsEdgeCACmd(), c.certsVerificationCmd(), c.certsChainCmd())
	return cmd
}

// certCmd completes a single-certificate "certs" subcommand: create issues
// the certificate into the layout with the flags' options.
func (c *cli) certCmd(cmd *cobra.Command, create func(l pki.Layout, args []string, opts []pki.Option) (written, error)) *cobra.Command {
	var o certOptions
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		opts, err := o.options(cmd.Flags())
		if err != nil {
			return err
		}
		w, err := create(o.layout(), args, opts)
		if err != nil {
			return forceHint(err)
		}
		return c.printWritten([]written{w})
	}
	o.register(cmd.Flags())
	return cmd
}

func (c *cli) certsRootCmd() *cobra.Command {
	var cn string
	cmd := c.certCmd(&cobra.Command{
		Use:   "root",
		Short: "Create a self-signed root CA",
		Args:  cobra.NoArgs,
	}, func(l pki.Layout, _ []string, opts []pki.Option) (written, error) {
		_, err := l.CreateRoot(cn, opts...)
		return writtenFrom("root CA", l.RootPaths()), err
	})
	cmd.Flags().StringVar(&cn, "cn", defaultRootCN, "common name")
	return cmd
}

func (c *cli) certsIntermediateCmd() *cobra.Command {
	var cn string
	cmd := c.certCmd(&cobra.Command{
		Use:   "intermediate",
		Short: "Create an intermediate CA signed by the root",
		Args:  cobra.NoArgs,
	}, func(l pki.Layout, _ []string, opts []pki.Option) (written, error) {
		_, err := l.CreateIntermediate(cn, opts...)
		return writtenFrom("intermediate CA", l.IntermediatePaths()), err
	})
	cmd.Flags().StringVar(&cn, "cn", defaultIntermediateCN, "common name")
	return cmd
}

func (c *cli) certsDeviceCmd() *cobra.Command {
	return c.certCmd(&cobra.Command{
		Use:   "device <name>",
		Short: "Create a device identity certificate (CN = name = registration ID)",
		Long: `Create a device identity certificate whose CN is the name (the registration ID),
signed by the intermediate CA when there is one, else by the root, with a
full-chain file for the device.`,
		Args: cobra.ExactArgs(1),
	}, func(l pki.Layout, args []string, opts []pki.Option) (written, error) {
		p, err := l.CreateDeviceIdentity(args[0], opts...)
		return writtenFrom("device identity", p), err
	})
}

func (c *cli) certsEdgeCACmd() *cobra.Command {
	return c.certCmd(&cobra.Command{
		Use:   "edge-ca <name>",
		Short: "Create an IoT Edge device CA certificate",
		Args:  cobra.ExactArgs(1),
	}, func(l pki.Layout, args []string, opts []pki.Option) (written, error) {
		p, err := l.CreateEdgeCA(args[0], opts...)
		return writtenFrom("edge CA", p), err
	})
}

func (c *cli) certsVerificationCmd() *cobra.Command {
	var signer string
	cmd := c.certCmd(&cobra.Command{
		Use:   "verification <code>",
		Short: "Create a proof-of-possession certificate (CN = the code from \"muster ca verification-code\")",
		Args:  cobra.ExactArgs(1),
	}, func(l pki.Layout, args []string, opts []pki.Option) (written, error) {
		if signer != pki.SignerRoot && signer != pki.SignerIntermediate {
			return written{}, fmt.Errorf("--signer %q: must be %s or %s", signer, pki.SignerRoot, pki.SignerIntermediate)
		}
		p, err := l.CreateVerification(args[0], signer, opts...)
		return writtenFrom("verification", p), err
	})
	cmd.Flags().StringVar(&signer, "signer", pki.SignerRoot, "the CA being verified: root or intermediate")
	return cmd
}

func (c *cli) certsChainCmd() *cobra.Command {
	var o certOptions
	cmd := &cobra.Command{
		Use:   "chain <device-name>",
		Short: "Create root CA, intermediate CA and device identity certificate in one go",
		Long: `Create a root CA, an intermediate CA signed by it and a device identity
certificate (CN = device name) signed by the intermediate. An existing root or
intermediate is kept (so several devices share one chain) unless --force is
given; the device's files are never replaced without --force.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := o.options(cmd.Flags())
			if err != nil {
				return err
			}
			l := o.layout()
			var ws []written
			for _, ca := range []struct {
				role   string
				paths  pki.DevicePaths
				create func() error
			}{
				{"root CA", l.RootPaths(), func() error { _, err := l.CreateRoot(defaultRootCN, opts...); return err }},
				{"intermediate CA", l.IntermediatePaths(), func() error { _, err := l.CreateIntermediate(defaultIntermediateCN, opts...); return err }},
			} {
				kept, err := exists(ca.paths.Cert)
				if err != nil {
					return err
				}
				if !kept || o.force {
					if err := ca.create(); err != nil {
						return forceHint(err)
					}
				}
				w := writtenFrom(ca.role, ca.paths)
				w.Kept = kept && !o.force
				ws = append(ws, w)
			}
			p, err := l.CreateDeviceIdentity(args[0], opts...)
			if err != nil {
				return forceHint(err)
			}
			ws = append(ws, writtenFrom("device identity", p))
			return c.printWritten(ws)
		},
	}
	o.register(cmd.Flags())
	return cmd
}

// exists reports whether a file exists.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("look for %s: %w", path, err)
}
