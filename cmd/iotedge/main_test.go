package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCmd(&out)
	cmd.SetArgs([]string{"version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := "iotedge " + version + " (" + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("version output = %q, want %q", got, want)
	}
}
