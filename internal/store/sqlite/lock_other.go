//go:build !unix && !windows

package sqlite

import (
	"fmt"
	"os"
)

// lockOwner opens the lock file; this platform has no advisory file
// locks, so ownership is not enforced (see ownerLockPath).
func lockOwner(path string) (*os.File, error) {
	lp := ownerLockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: create the lock file %s: %w", lp, err)
	}
	return f, nil
}
