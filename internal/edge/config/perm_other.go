//go:build !windows

package config

import "os"

// restrictFile makes f readable and writable by its owner only.
func restrictFile(f *os.File) error { return f.Chmod(0o600) }

// makePrivateDir creates dir (and its parents) and makes it accessible by
// its owner only.
func makePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}
