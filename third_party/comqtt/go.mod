module github.com/wind-c/comqtt/v2

go 1.25.0

require (
	github.com/gorilla/websocket v1.5.3
	github.com/prometheus/client_golang v1.23.2
	github.com/quic-go/quic-go v0.59.1
	github.com/rs/xid v1.6.0
)
