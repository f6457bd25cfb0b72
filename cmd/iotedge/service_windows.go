package main

// logsHint ends `iotedge system status`: where the service's log is.
const logsHint = "Use Get-IoTEdgeLog, or Get-WinEvent -FilterHashtable @{ProviderName='iotedged';LogName='Application'}, to read the service's log."
