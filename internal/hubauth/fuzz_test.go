package hubauth

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/registry"
)

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{
		nodeDeviceUsername, nodeModuleUsername, cDeviceUsername,
		vectorHub + "/dev1/", vectorHub + "/dev1", vectorHub + "/dev1/mod1",
		vectorHub + "/dev1/api-version=2016-11-14&DeviceClientType=java/1.0",
		vectorHub + "/d%2B1?x=y/m(1)/?api-version=1",
		vectorHub + "/dev1/?api-version=1&DeviceClientType=100%&k",
		vectorHub + "/dev1/mod1/extra/?api-version=1",
		vectorHub + "/dev1/?API-Version=a&api-version=b",
		"", "/", "//", "h//", "h/d//", "h/d/?", "h/d/m/?", "h/?d/", "h/d/?&&=&%zz=%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			if !errors.Is(err, ErrUsernameMalformed) {
				t.Fatalf("error %v does not match ErrUsernameMalformed", err)
			}
			return
		}
		if !validHost(u.HubHost) || !registry.ValidDeviceID(u.DeviceID) {
			t.Fatalf("accepted host %q device %q", u.HubHost, u.DeviceID)
		}
		if u.ModuleID != "" && !registry.ValidDeviceID(u.ModuleID) {
			t.Fatalf("accepted module %q", u.ModuleID)
		}
		if u.Query == nil {
			t.Fatal("Query is nil")
		}
		// The identity is the path prefix of the username, as written.
		prefix := u.HubHost + "/" + u.DeviceID
		if u.ModuleID != "" {
			prefix += "/" + u.ModuleID
		}
		if !strings.HasPrefix(s, prefix) {
			t.Fatalf("%q does not start with the parsed identity %q", s, prefix)
		}
		if u.APIVersion != "" && apiVersion(u.Query) != u.APIVersion {
			t.Fatalf("APIVersion %q is not the query's %q", u.APIVersion, apiVersion(u.Query))
		}
		// Parsing is deterministic.
		again, err := ParseUsername(s)
		if err != nil || again.DeviceID != u.DeviceID || again.ModuleID != u.ModuleID || again.APIVersion != u.APIVersion {
			t.Fatalf("second parse gave %+v, %v; first %+v", again, err, u)
		}
	})
}

func FuzzAuthenticate(f *testing.F) {
	for _, s := range []struct{ clientID, username, password string }{
		{"dev1", nodeDeviceUsername, vectorDeviceToken},
		{"dev1/mod1", nodeModuleUsername, vectorModuleToken},
		{"dev1", nodeDeviceUsername, vectorServiceToken},
		{"dev1", cDeviceUsername, ""},
		{"gone", vectorHub + "/gone/", vectorDeviceToken},
		{"keyless", vectorHub + "/keyless/", "SharedAccessSignature sr=myhub.azure-devices.net&sig=abc&se=1&skn=device"},
		{"x509dev", vectorHub + "/x509dev/", "x"},
		{"", "", ""},
		{"a/b/c", "h/a/b/c", "SharedAccessSignature sr=%zz&sig=%&se=-1&skn=%"},
	} {
		f.Add(s.clientID, s.username, s.password)
	}
	now := time.Unix(vectorExpiry-600, 0)
	fx := sasFixture(f, now)
	fx.auth.log = slog.New(slog.DiscardHandler) // the fixture's buffer would grow without bound
	f.Fuzz(func(t *testing.T, clientID, username, password string) {
		id, err := fx.auth.Authenticate(fx.ctx(), Request{ClientID: clientID, Username: username, Password: password})
		if err == nil {
			// Only real credentials of the fixture can succeed.
			if id == nil || id.ClientID() != clientID {
				t.Fatalf("accepted %q as %+v", clientID, id)
			}
			return
		}
		var d *Denial
		if !errors.As(err, &d) {
			t.Fatalf("error %v is not a *Denial", err)
		}
		switch d.ConnackCode {
		case ConnackIdentifierRejected, ConnackBadUsernameOrPassword, ConnackNotAuthorized:
		default:
			t.Fatalf("denial %v has CONNACK code %d", d, d.ConnackCode)
		}
		if d.Reason == "" || d.Detail == "" || d.Hint == "" {
			t.Fatalf("incomplete denial %+v", d)
		}
	})
}
