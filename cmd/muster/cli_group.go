package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/enroll"
)

const groupIDFlag = "group-id"

func (c *cli) groupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "enrollment-group",
		Aliases: []string{"enrollment-groups", "group"},
		Short:   "Manage enrollment groups (many devices sharing one attestation)",
	}
	cmd.AddCommand(c.groupCreateCmd(), c.groupShowCmd(), c.groupListCmd(), c.groupUpdateCmd(), c.groupDeleteCmd())
	return cmd
}

func (c *cli) groupCreateCmd() *cobra.Command {
	var (
		f       = enrollmentFlags{group: true}
		groupID string
	)
	cmd := &cobra.Command{
		Use:   "create [group-id]",
		Short: "Create an enrollment group",
		Long: `Create an enrollment group.

Symmetric key (the default): the service generates the group keys, which are
printed; each device signs with a key derived from them (see "muster key
derive"). X.509: either --certificate-path names a signing certificate (the
root or intermediate CA that issued the device certificates), or --ca-name
names a CA certificate registered and verified with "muster ca".`,
		Example: `  muster enrollment-group create edge-fleet --edge-enabled
  muster enrollment-group create x509-fleet --certificate-path certs/azure-iot-test-only.intermediate.cert.pem --edge-enabled
  muster enrollment-group create ca-fleet --ca-name my-root`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			id, err := idFrom(args, fs, groupIDFlag, groupID)
			if err != nil {
				return err
			}
			g := &enroll.EnrollmentGroup{EnrollmentGroupID: id}
			notes, err := f.apply(fs, &g.Common, true)
			if err != nil {
				return err
			}
			svc, err := c.service()
			if err != nil {
				return err
			}
			out, err := svc.PutGroup(cmd.Context(), g, "")
			if err != nil {
				return err
			}
			return c.emitDetails(out, groupDetails(out), notes...)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&groupID, groupIDFlag, "", "enrollment group ID")
	f.register(fs)
	return cmd
}

func (c *cli) groupShowCmd() *cobra.Command {
	var showKeys bool
	cmd := &cobra.Command{
		Use:   "show <group-id>",
		Short: "Show an enrollment group",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			g, err := svc.GetGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if showKeys {
				if g.Attestation, err = svc.GroupAttestation(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			return c.emitDetails(g, groupDetails(g))
		},
	}
	cmd.Flags().BoolVar(&showKeys, "show-keys", false, "include the group's symmetric keys")
	return cmd
}

func (c *cli) groupListCmd() *cobra.Command {
	var pageSize int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List enrollment groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			items, err := svc.QueryGroups(cmd.Context(), dpsservice.QueryAll, pageSize)
			if err != nil {
				return err
			}
			if items == nil {
				items = []*enroll.EnrollmentGroup{}
			}
			return c.emit(items, func(w io.Writer) {
				row(w, "GROUP ID", "ATTESTATION", "PROVISIONING", "EDGE", "ALLOCATION", "HUBS")
				for _, g := range items {
					row(w, g.EnrollmentGroupID, attestationText(g.Attestation, true), provisioningText(g.ProvisioningStatus),
						edgeText(g.Capabilities), g.AllocationPolicy, strings.Join(g.IoTHubs, ","))
				}
			})
		},
	}
	cmd.Flags().IntVar(&pageSize, "page-size", 0, "items per request (0: the service's default); every page is fetched")
	return cmd
}

func (c *cli) groupUpdateCmd() *cobra.Command {
	var (
		f    = enrollmentFlags{group: true}
		etag string
	)
	cmd := &cobra.Command{
		Use:   "update <group-id>",
		Short: "Change the given settings of an enrollment group",
		Long: `Change the given settings of an enrollment group: the group is read, the flags
given are applied and it is written back under its etag (or --etag).`,
		Example: `  muster enrollment-group update edge-fleet --provisioning-status disabled
  muster enrollment-group update ca-fleet --secondary-ca-name next-root`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			g, err := svc.GetGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fs := cmd.Flags()
			notes, err := f.apply(fs, &g.Common, false)
			if err != nil {
				return err
			}
			ifMatch := g.ETag
			if fs.Changed("etag") {
				ifMatch = etag
			}
			out, err := svc.PutGroup(cmd.Context(), g, ifMatch)
			if err != nil {
				return err
			}
			return c.emitDetails(out, groupDetails(out), notes...)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&etag, "etag", "", "update only if the group still has this etag (default: the etag just read)")
	f.register(fs)
	return cmd
}

func (c *cli) groupDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete <group-id>",
		Short: "Delete an enrollment group (its registration records stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			if err := svc.DeleteGroup(cmd.Context(), args[0], etag); err != nil {
				return err
			}
			return c.emit(deleted{Deleted: "enrollmentGroup", ID: args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "Deleted enrollment group %s.\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the group still has this etag")
	return cmd
}

// groupDetails describes an enrollment group.
func groupDetails(g *enroll.EnrollmentGroup) *details {
	d := &details{}
	d.add("Group ID", g.EnrollmentGroupID)
	commonDetails(d, &g.Common, true)
	return d
}
