package provisioning

import (
	"fmt"

	"github.com/muster-iot/muster/internal/edge/config"
)

// Reason is the occasion on which the daemon asks for its assignment.
type Reason int

// The occasions of [Provisioner.Ensure].
const (
	// Startup is the daemon starting (or restarting after a crash).
	Startup Reason = iota + 1
	// HubRejected is the assigned hub refusing the device: the identity is
	// gone (deleted, or the device was moved to another hub) or its
	// credential is refused (MQTT CONNACK "not authorized" / "bad user name
	// or password", HTTP 401/404 for the device).
	HubRejected
	// HubUnreachable is the assigned hub having stayed unreachable (DNS
	// failure, refused or timed-out connections) for as long as the caller
	// tolerates; the caller decides how long that is and passes this reason
	// only then, not after every failed attempt.
	HubUnreachable
	// Manual is an operator's `iotedge system reprovision`.
	Manual
)

// String names the reason as the logs and messages do.
func (r Reason) String() string {
	switch r {
	case Startup:
		return "startup"
	case HubRejected:
		return "hub rejected the device"
	case HubUnreachable:
		return "hub unreachable"
	case Manual:
		return "manual reprovision"
	default:
		return fmt.Sprintf("Reason(%d)", int(r))
	}
}

// Decide reports whether the device must register with DPS now, and why,
// given the configured auto_reprovisioning_mode, the occasion, the cached
// assignment (nil when there is none or it is unreadable) and the identity
// the configuration describes now. It is a pure function.
//
// The rules, in order:
//
//  1. Manual always registers: the operator asked.
//
//  2. Without a cache, or with a cache made for another identity (the ID
//     scope, registration ID, DPS endpoint or credential fingerprint
//     differ), every mode and every reason registers: there is no
//     assignment of this identity to use. This is what makes a changed
//     id_scope, registration_id or key take effect without `iotedge system
//     reprovision` (upstream issues #6007 and #7013).
//
//  3. With a cache of this identity:
//
//     | reason         | Dynamic  | AlwaysOnStartup | OnErrorOnly |
//     |----------------|----------|-----------------|-------------|
//     | Startup        | cache    | register        | cache       |
//     | HubRejected    | register | register        | register    |
//     | HubUnreachable | cache    | cache           | register    |
//
// Dynamic (the default) registers when the hub shows that the device has
// moved or lost its identity, and otherwise keeps the cached assignment, so a
// device does not register on every boot and an outage does not turn into a
// registration storm. AlwaysOnStartup adds a registration at every start.
// OnErrorOnly never re-registers while the hub accepts the device, and falls
// back to DPS whenever the hub cannot be used: rejected or unreachable. An
// unknown mode is treated as Dynamic (Validate rejects unknown modes, so
// this only guards against a caller bypassing it). An unknown reason never
// registers.
func Decide(mode string, reason Reason, cache *Cache, id Identity) (register bool, why string) {
	switch reason {
	case Manual:
		return true, "manual reprovision requested"
	case Startup, HubRejected, HubUnreachable:
	default:
		return false, fmt.Sprintf("unknown reason %d", int(reason))
	}
	if cache == nil {
		return true, "no cached assignment"
	}
	if diff := cache.Mismatch(id); diff != "" {
		return true, "the cached assignment is for another identity: " + diff
	}
	switch mode {
	case config.ReprovisionAlwaysOnStartup:
		switch reason {
		case Startup:
			return true, "auto_reprovisioning_mode is AlwaysOnStartup"
		case HubRejected:
			return true, "the hub rejected the device"
		default:
			return false, "hub unreachable: AlwaysOnStartup re-registers only at startup or when the hub rejects the device"
		}
	case config.ReprovisionOnErrorOnly:
		switch reason {
		case Startup:
			return false, "the cached assignment matches the configuration"
		case HubRejected:
			return true, "the hub rejected the device"
		default:
			return true, "the hub is unreachable and auto_reprovisioning_mode is OnErrorOnly"
		}
	default:
		switch reason {
		case Startup:
			return false, "the cached assignment matches the configuration"
		case HubRejected:
			return true, "the hub rejected the device"
		default:
			return false, "hub unreachable: Dynamic re-registers only when the hub rejects the device"
		}
	}
}
