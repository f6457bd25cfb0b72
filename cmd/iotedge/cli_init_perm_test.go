//go:build !windows

package main

import (
	"os"
	"testing"
)

// checkPrivateFile fails t unless path is a regular file of mode 0600.
func checkPrivateFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want a regular file with mode 0600", path, fi.Mode())
	}
}
