package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/sas"
)

func (c *cli) keyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Symmetric key tools",
	}
	cmd.AddCommand(c.keyDeriveCmd())
	return cmd
}

// derivedKey is the JSON answer of "key derive".
type derivedKey struct {
	RegistrationID string `json:"registrationId"`
	DerivedKey     string `json:"derivedKey"`
}

func (c *cli) keyDeriveCmd() *cobra.Command {
	var groupKey, groupID, regID string
	cmd := &cobra.Command{
		Use:   "derive --registration-id <id> (--group-key <key> | --group-id <group>)",
		Short: "Derive a device's key from its enrollment group's key",
		Long: `Derive the key a device of a symmetric-key enrollment group signs with:
base64(HMAC-SHA256(base64-decode(group key), registration ID)).

With --group-key this is a local computation. With --group-id the group's
primary key is fetched from the service first.`,
		Example: `  muster key derive --group-key "$GROUP_KEY" --registration-id sn-007-888-abc
  muster key derive --group-id edge-fleet --registration-id sn-007-888-abc`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if regID == "" {
				return errors.New("--registration-id: give the device's registration ID (the derivation is case-sensitive)")
			}
			switch {
			case groupKey != "" && groupID != "":
				return errors.New("give --group-key or --group-id, not both")
			case groupKey == "" && groupID == "":
				return errors.New("give the group's key with --group-key, or its ID with --group-id to fetch the key")
			case groupID != "":
				svc, err := c.service()
				if err != nil {
					return err
				}
				a, err := svc.GroupAttestation(cmd.Context(), groupID)
				if err != nil {
					return err
				}
				if a.SymmetricKey == nil || a.SymmetricKey.PrimaryKey == "" {
					return fmt.Errorf("enrollment group %q uses %s attestation, not a symmetric key", groupID, a.Type)
				}
				groupKey = a.SymmetricKey.PrimaryKey
			}
			key, err := sas.DeriveKey(groupKey, regID)
			if err != nil {
				return fmt.Errorf("--group-key: %w", err)
			}
			return c.emit(derivedKey{RegistrationID: regID, DerivedKey: key}, func(w io.Writer) {
				fmt.Fprintln(w, key)
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&groupKey, "group-key", "", "the enrollment group's primary (or secondary) key, base64")
	fs.StringVar(&groupID, groupIDFlag, "", "fetch the primary key of this enrollment group from the service")
	fs.StringVar(&regID, "registration-id", "", "the device's registration ID")
	return cmd
}
