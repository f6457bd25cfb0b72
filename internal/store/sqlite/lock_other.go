//go:build !unix && !windows

package sqlite

import "os"

// tryLock does nothing: this platform has no advisory file locks, so
// ownership is not enforced.
func tryLock(*os.File) (busy bool, err error) { return false, nil }
