package main

import (
	"os"
	"testing"
)

// checkPrivateFile fails t unless path is a regular file. Windows protects
// it with a DACL rather than a mode; the mode bits carry no meaning there.
func checkPrivateFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() {
		t.Errorf("%s is not a regular file (%v)", path, fi.Mode())
	}
}
