//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockOwner takes the exclusive advisory lock that makes this process the
// only owner of the database at path (see ownerLockPath). It returns the
// open lock file, whose Close releases the lock.
func lockOwner(path string) (*os.File, error) {
	lp := ownerLockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: create the lock file %s: %w", lp, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open sqlite store %s: %w (the lock %s is held)", path, ErrInUse, lp)
		}
		return nil, fmt.Errorf("open sqlite store: lock %s: %w", lp, err)
	}
	return f, nil
}
