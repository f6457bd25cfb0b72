package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/store"
)

// defaultAttemptLimit is how many attempts "registration why" shows.
const defaultAttemptLimit = 20

func (c *cli) registrationCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "registration",
		Aliases: []string{"registrations"},
		Short:   "Inspect registration records and the attempt log (why a device was refused)",
	}
	cmd.AddCommand(c.registrationListCmd(), c.registrationShowCmd(), c.registrationWhyCmd(), c.registrationDeleteCmd())
	return cmd
}

func (c *cli) registrationListCmd() *cobra.Command {
	var (
		group    string
		pageSize int
	)
	cmd := &cobra.Command{
		Use:   "list --group <group-id>",
		Short: "List the registration records of an enrollment group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if group == "" {
				return errors.New("--group: give the enrollment group whose registration records to list")
			}
			svc, err := c.service()
			if err != nil {
				return err
			}
			items, err := svc.QueryGroupRegistrations(cmd.Context(), group, pageSize)
			if err != nil {
				return err
			}
			if items == nil {
				items = []*enroll.RegistrationStateView{}
			}
			return c.emit(items, func(w io.Writer) {
				row(w, "REGISTRATION ID", "DEVICE ID", "STATUS", "SUBSTATUS", "ASSIGNED HUB", "UPDATED", "ERROR")
				for _, r := range items {
					row(w, r.RegistrationID, r.DeviceID, r.Status, r.Substatus, r.AssignedHub, timePtrText(r.LastUpdatedDateTimeUTC), registrationErrorText(r))
				}
			})
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "enrollment group ID (required)")
	cmd.Flags().IntVar(&pageSize, "page-size", 0, "items per request (0: the service's default); every page is fetched")
	return cmd
}

func (c *cli) registrationShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show <registration-id>",
		Short: "Show the registration record of a device",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			r, err := svc.GetRegistration(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.emit(r, func(w io.Writer) {
				d := &details{}
				d.add("Registration ID", r.RegistrationID)
				d.add("Status", r.Status)
				d.add("Substatus", r.Substatus)
				d.add("Device ID", r.DeviceID)
				d.add("Assigned hub", r.AssignedHub)
				d.add("Error", registrationErrorText(r))
				d.add("Payload", rawText(r.Payload))
				d.add("ETag", r.ETag)
				d.add("Created", timePtrText(r.CreatedDateTimeUTC))
				d.add("Updated", timePtrText(r.LastUpdatedDateTimeUTC))
				d.write(w)
			})
		},
	}
}

func (c *cli) registrationWhyCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "why [registration-id]",
		Short: "Show a device's registration attempts, newest first, with the reason each was refused",
		Long: `Show the registration attempts the service recorded for a device, newest
first: when, over which protocol, with which attestation, the outcome, the
precise reason a refusal had (a stable code such as sas_signature_mismatch or
chain_untrusted), a hint how to fix it, and the enrollment involved.

Devices are told no more than an Azure-shaped error; this is where the
operator finds out why. Without a registration ID it shows the newest
attempts of all devices. The log is bounded: old attempts are dropped.`,
		Example: `  muster registration why sn-007-888-abc
  muster registration why --limit 100`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return fmt.Errorf("--limit %d: must be at least 1", limit)
			}
			var id string
			if len(args) == 1 {
				id = args[0]
			}
			svc, err := c.service()
			if err != nil {
				return err
			}
			attempts, err := svc.Attempts(cmd.Context(), id, limit)
			if err != nil {
				return err
			}
			if attempts == nil {
				attempts = []store.Attempt{}
			}
			slices.SortStableFunc(attempts, func(a, b store.Attempt) int { return b.Time.Compare(a.Time) })
			if len(attempts) == 0 {
				if id == "" {
					c.note("No registration attempts are recorded.")
				} else {
					c.note("No registration attempts are recorded for %q. Registration IDs are matched case-insensitively; a device that never reached the service (DNS, TLS trust, ID scope) leaves no attempt.", id)
				}
			}
			return c.emit(attempts, func(w io.Writer) {
				if len(attempts) == 0 {
					return
				}
				head := []string{"TIME", "PROTOCOL", "ATTESTATION", "OUTCOME", "REASON", "ENROLLMENT", "HINT"}
				if id == "" {
					head = append([]string{head[0], "REGISTRATION ID"}, head[1:]...)
				}
				row(w, head...)
				for _, a := range attempts {
					cells := []string{timeText(a.Time), a.Protocol, a.Attestation, a.Outcome, a.Reason, enrollmentText(a), a.Hint}
					if id == "" {
						cells = append([]string{cells[0], a.RegistrationID}, cells[1:]...)
					}
					row(w, cells...)
				}
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", defaultAttemptLimit, "how many attempts to show")
	return cmd
}

// enrollmentText names the enrollment an attempt involved ("group/g1").
func enrollmentText(a store.Attempt) string {
	switch {
	case a.EnrollmentID == "":
		return ""
	case a.EnrollmentKind == "":
		return a.EnrollmentID
	}
	return strings.ToLower(a.EnrollmentKind) + "/" + a.EnrollmentID
}

func (c *cli) registrationDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete <registration-id>",
		Short: "Delete a registration record (the device then registers as new)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := c.service()
			if err != nil {
				return err
			}
			if err := svc.DeleteRegistration(cmd.Context(), args[0], etag); err != nil {
				return err
			}
			return c.emit(deleted{Deleted: "registration", ID: args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "Deleted registration record %s.\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the record still has this etag")
	return cmd
}
