//go:build !linux && !windows

package main

// logsHint ends `iotedge system status`: where the service's log is.
const logsHint = "The service's log is the standard error of \"iotedge service run\"."
