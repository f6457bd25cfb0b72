package config

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// Protected DACLs granting full access to SYSTEM and Administrators only;
// the directory's entries are inherited by what is created in it.
const (
	privateFileSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
	privateDirSDDL  = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
)

// restrictFile gives f a protected DACL: SYSTEM and Administrators only.
func restrictFile(f *os.File) error { return setDACL(f.Name(), privateFileSDDL) }

// makePrivateDir creates dir (and its parents) and gives it a protected,
// inherited DACL: SYSTEM and Administrators only.
func makePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return setDACL(dir, privateDirSDDL)
}

func setDACL(path, sddl string) error {
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return fmt.Errorf("parse security descriptor: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("read DACL: %w", err)
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("set DACL of %s: %w", path, err)
	}
	return nil
}
