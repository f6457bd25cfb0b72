package platform

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseShow(t *testing.T) {
	cases := []struct {
		name    string
		out     string
		want    unitStatus
		state   State
		wantErr string
	}{
		{
			name:  "running",
			out:   "LoadState=loaded\nActiveState=active\nSubState=running\nFragmentPath=/etc/systemd/system/iotedge.service\n",
			want:  unitStatus{"loaded", "active", "running", "/etc/systemd/system/iotedge.service"},
			state: StateRunning,
		},
		{
			name:  "not installed",
			out:   "LoadState=not-found\nActiveState=inactive\nSubState=dead\nFragmentPath=\n",
			want:  unitStatus{loadState: "not-found", activeState: "inactive", subState: "dead"},
			state: StateNotInstalled,
		},
		{
			name:  "unit file removed while it runs",
			out:   "LoadState=not-found\nActiveState=active\nSubState=running\nFragmentPath=\n",
			want:  unitStatus{loadState: "not-found", activeState: "active", subState: "running"},
			state: StateRunning,
		},
		{name: "stopped", out: "LoadState=loaded\nActiveState=inactive\n", want: unitStatus{loadState: "loaded", activeState: "inactive"}, state: StateStopped},
		{name: "failed", out: "LoadState=loaded\nActiveState=failed\n", want: unitStatus{loadState: "loaded", activeState: "failed"}, state: StateFailed},
		{name: "starting", out: "ActiveState=activating\nLoadState=loaded\n", want: unitStatus{loadState: "loaded", activeState: "activating"}, state: StateStartPending},
		{name: "stopping", out: "LoadState=loaded\nActiveState=deactivating\n", want: unitStatus{loadState: "loaded", activeState: "deactivating"}, state: StateStopPending},
		{name: "reloading", out: "LoadState=loaded\nActiveState=reloading\n", want: unitStatus{loadState: "loaded", activeState: "reloading"}, state: StateRunning},
		{name: "masked", out: "LoadState=masked\nActiveState=inactive\n", want: unitStatus{loadState: "masked", activeState: "inactive"}, state: StateStopped},
		{name: "unknown state", out: "LoadState=loaded\nActiveState=maintenance\n", want: unitStatus{loadState: "loaded", activeState: "maintenance"}, state: StateUnknown},
		{name: "other properties are ignored", out: "Id=iotedge.service\nLoadState=loaded\nActiveState=active\n", want: unitStatus{loadState: "loaded", activeState: "active"}, state: StateRunning},
		{name: "value with '='", out: "LoadState=loaded\nActiveState=active\nFragmentPath=/etc/a=b.service\n", want: unitStatus{loadState: "loaded", activeState: "active", fragmentPath: "/etc/a=b.service"}, state: StateRunning},
		{name: "no LoadState", out: "ActiveState=active\n", wantErr: "parse systemctl show: no LoadState"},
		{name: "empty ActiveState", out: "LoadState=loaded\nActiveState=\n", wantErr: "parse systemctl show: no ActiveState"},
		{name: "empty output", out: "", wantErr: "parse systemctl show: no LoadState"},
		{name: "garbage line", out: "LoadState=loaded\nFailed to connect to bus\n", wantErr: `parse systemctl show: line 2 "Failed to connect to bus" is not KEY=VALUE`},
		{name: "repeated key", out: "LoadState=loaded\nLoadState=masked\nActiveState=active\n", wantErr: "parse systemctl show: line 2: LoadState repeated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseShow(tc.out)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Fatalf("parseShow error = %q, want %q", gotErr, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(unitStatus{})); diff != "" {
				t.Errorf("parseShow (-want +got):\n%s", diff)
			}
			if err == nil && got.state() != tc.state {
				t.Errorf("state() = %q, want %q", got.state(), tc.state)
			}
		})
	}
}

// FuzzParseShow parses arbitrary systemctl output: an error, or a status
// with both required properties whose state is one of the known states.
func FuzzParseShow(f *testing.F) {
	f.Add("LoadState=loaded\nActiveState=active\nSubState=running\nFragmentPath=/etc/systemd/system/iotedge.service\n")
	f.Add("LoadState=not-found\nActiveState=inactive\n")
	f.Add("LoadState=\nActiveState=\n\n\n")
	f.Add("=\n==\nLoadState")
	known := map[State]bool{StateRunning: true, StateStopped: true, StateStartPending: true, StateStopPending: true,
		StateFailed: true, StateNotInstalled: true, StateUnknown: true}
	f.Fuzz(func(t *testing.T, out string) {
		u, err := parseShow(out)
		if err != nil {
			if u != (unitStatus{}) {
				t.Fatalf("parseShow(%q) = %+v with error %v", out, u, err)
			}
			return
		}
		if u.loadState == "" || u.activeState == "" {
			t.Fatalf("parseShow(%q) = %+v without a required property", out, u)
		}
		if !known[u.state()] {
			t.Fatalf("state() of %+v = %q", u, u.state())
		}
	})
}
