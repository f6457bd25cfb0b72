package main

// logsHint ends `iotedge system status`: where the service's log is.
const logsHint = "Use 'journalctl -u iotedge' to read the service's log."
