//go:build windows

package sqlite

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// lockOwner takes the exclusive lock that makes this process the only
// owner of the database at path (see ownerLockPath). It returns the open
// lock file, whose Close releases the lock.
func lockOwner(path string) (*os.File, error) {
	lp := ownerLockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: create the lock file %s: %w", lp, err)
	}
	ol := new(windows.Overlapped)
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, fmt.Errorf("open sqlite store %s: %w (the lock %s is held)", path, ErrInUse, lp)
		}
		return nil, fmt.Errorf("open sqlite store: lock %s: %w", lp, err)
	}
	return f, nil
}
