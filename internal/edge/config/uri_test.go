package config

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// The POSIX and Windows readings of file URIs are pure functions, tested on
// every platform.
func TestFileURIPaths(t *testing.T) {
	cases := []struct {
		uri              string
		unix, unixErr    string
		windows, winErr  string
		unixURI, winURI  string
		skipURIRoundTrip bool
	}{
		{uri: "file:///var/secrets/device-id.pem", unix: "/var/secrets/device-id.pem", winErr: "has no drive letter"},
		{uri: "file://localhost/var/secrets/a.pem", unix: "/var/secrets/a.pem", winErr: "has no drive letter", skipURIRoundTrip: true},
		{uri: "file:///var/secrets/device%20id.pem", unix: "/var/secrets/device id.pem", winErr: "has no drive letter"},
		{uri: "file:///var/secrets/../keys/./k", unix: "/var/keys/k", winErr: "has no drive letter", skipURIRoundTrip: true},
		{uri: "file:///C:/secrets/device-id.pem", unix: "/C:/secrets/device-id.pem", windows: `C:\secrets\device-id.pem`},
		{uri: "file:///c:/Program%20Data/iotedge/k", unix: "/c:/Program Data/iotedge/k", windows: `c:\Program Data\iotedge\k`},
		{uri: "file://server/share/certs/device.pem", unixErr: `names host "server"`, windows: `\\server\share\certs\device.pem`},
		{uri: "file://server/", unixErr: `names host "server"`, winErr: "names host \"server\" but no share and file"},
		{uri: "file://certs/device.pem", unixErr: "a local file URI has three slashes", windows: `\\certs\device.pem`},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			u, err := url.Parse(tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			check := func(name string, got string, err error, want, wantErr string) {
				t.Helper()
				if wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), wantErr) {
						t.Errorf("%s: got %q, %v; want an error containing %q", name, got, err, wantErr)
					}
					return
				}
				if err != nil || got != want {
					t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
				}
			}
			p, err := unixFileURIPath(u)
			check("unix", p, err, tc.unix, tc.unixErr)
			if tc.unixErr == "" && !tc.skipURIRoundTrip {
				if back := unixPathToFileURI(p); back != tc.uri {
					t.Errorf("unixPathToFileURI(%q) = %q, want %q", p, back, tc.uri)
				}
			}
			w, err := windowsFileURIPath(u)
			check("windows", w, err, tc.windows, tc.winErr)
			if tc.winErr == "" && !tc.skipURIRoundTrip {
				back := windowsPathToFileURI(w)
				if bu, err := url.Parse(back); err != nil {
					t.Errorf("windowsPathToFileURI(%q) = %q does not parse: %v", w, back, err)
				} else if again, err := windowsFileURIPath(bu); err != nil || again != w {
					t.Errorf("windowsPathToFileURI(%q) = %q reads back as %q, %v", w, back, again, err)
				}
			}
		})
	}
}

func TestResolveFileRef(t *testing.T) {
	cases := []struct {
		ref     string
		plainOK bool
		wantErr string
		unsup   bool
	}{
		{ref: "", plainOK: true, wantErr: "is empty"},
		{ref: "relative/path.pem", plainOK: true, wantErr: `"relative/path.pem" is a relative path`},
		{ref: "/abs/path.pem", plainOK: false, wantErr: `"/abs/path.pem" is not a URI; give a file URI`},
		{ref: "pkcs11:slot-id=0;object=device%20id?pin-value=1234", plainOK: true, wantErr: "PKCS#11 URIs are not supported yet", unsup: true},
		{ref: "https://example.com/key", plainOK: true, wantErr: `URI scheme "https" is not supported`},
		{ref: "file:relative/key", plainOK: true, wantErr: `"file:relative/key" is a relative file URI`},
		{ref: "file:///abs/key?x=1", plainOK: true, wantErr: "must not have a user, query or fragment"},
		{ref: "file:///abs/%zz", plainOK: true, wantErr: "is not a valid URI"},
	}
	for _, tc := range cases {
		t.Run(tc.ref, func(t *testing.T) {
			got, err := resolveFileRef(tc.ref, tc.plainOK)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("resolveFileRef(%q) = %q, %v; want an error containing %q", tc.ref, got, err, tc.wantErr)
			}
			if got := errors.Is(err, ErrUnsupported); got != tc.unsup {
				t.Errorf("errors.Is(err, ErrUnsupported) = %v, want %v", got, tc.unsup)
			}
		})
	}
}
