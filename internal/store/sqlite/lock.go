package sqlite

import (
	"fmt"
	"os"
)

// ownerLockPath is the file whose exclusive lock a Store holds while the
// database at path is open, so that no second process writes to it behind
// the writer's in-memory state (the attempt count, the key filter).
func ownerLockPath(path string) string { return path + ".lock" }

// lockOwner takes the exclusive lock that makes this Store the only owner
// of the database at path. It returns the open lock file, whose Close
// releases the lock.
func lockOwner(path string) (*os.File, error) {
	lp := ownerLockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: create the lock file %s: %w", lp, err)
	}
	busy, err := tryLock(f)
	if err != nil || busy {
		f.Close()
	}
	if busy {
		return nil, fmt.Errorf("open sqlite store %s: %w (the lock %s is held)", path, ErrInUse, lp)
	}
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: lock %s: %w", lp, err)
	}
	return f, nil
}
