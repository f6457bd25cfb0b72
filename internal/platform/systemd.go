package platform

import (
	"errors"
	"fmt"
	"strings"
)

// unitStatus is what `systemctl show` says of a unit.
type unitStatus struct {
	loadState    string // loaded, not-found, masked, bad-setting, error
	activeState  string // active, inactive, failed, activating, deactivating, reloading
	subState     string
	fragmentPath string // the unit file, empty when not found
}

// parseShow parses the KEY=VALUE lines `systemctl show` prints for the
// properties unitStatus holds. LoadState and ActiveState must be present.
func parseShow(out string) (unitStatus, error) {
	var u unitStatus
	have := map[string]bool{}
	for n, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return unitStatus{}, fmt.Errorf("parse systemctl show: line %d %q is not KEY=VALUE", n+1, line)
		}
		switch key {
		case "LoadState":
			u.loadState = value
		case "ActiveState":
			u.activeState = value
		case "SubState":
			u.subState = value
		case "FragmentPath":
			u.fragmentPath = value
		default:
			continue
		}
		if have[key] {
			return unitStatus{}, fmt.Errorf("parse systemctl show: line %d: %s repeated", n+1, key)
		}
		have[key] = true
	}
	switch {
	case u.loadState == "":
		return unitStatus{}, errors.New("parse systemctl show: no LoadState")
	case u.activeState == "":
		return unitStatus{}, errors.New("parse systemctl show: no ActiveState")
	}
	return u, nil
}

// installed reports whether systemd knows a unit file for the unit.
func (u unitStatus) installed() bool { return u.loadState != "not-found" }

// state maps the unit's load and active states to a State.
func (u unitStatus) state() State {
	if !u.installed() && (u.activeState == "inactive" || u.activeState == "failed") {
		return StateNotInstalled
	}
	switch u.activeState {
	case "active", "reloading", "refreshing":
		return StateRunning
	case "inactive":
		return StateStopped
	case "failed":
		return StateFailed
	case "activating":
		return StateStartPending
	case "deactivating":
		return StateStopPending
	}
	return StateUnknown
}
