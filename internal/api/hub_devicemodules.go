package api

// Device-credential module management (hub-edge-protocol §4.9): the IoT
// Edge identity service creates, reads and deletes the modules of its own
// device with the device's credential rather than a hub policy. The
// credential is checked by the same authenticator as MQTT connections (so
// refusals land in the attempt log `muster device why` reads); the request
// is then limited to the modules of that one device, and only an IoT Edge
// device may manage modules.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/sas"
)

// ProtocolHubHTTPS names device-credential requests of the hub's HTTPS
// API in the attempt log.
const ProtocolHubHTTPS = "hub-https"

// authorize authorises a module route: a token naming a policy (skn) or a
// non-SAS Authorization goes through the hub policy check; a device token
// (no skn), or no Authorization with a TLS client certificate, through
// authorizeDevice.
func (hm *hubModules) authorize(r *http.Request, e hubEndpoint) error {
	header := strings.TrimSpace(r.Header.Get("Authorization"))
	if !deviceCredential(r, header) {
		return hm.hs.a.authorizeRealm(r, RealmHub, hm.hs.hosts, e.right)
	}
	return hm.authorizeDevice(r, header)
}

// deviceCredential reports whether a request carries a device's own
// credential rather than a service token.
func deviceCredential(r *http.Request, header string) bool {
	if header == "" {
		return r.TLS != nil && len(r.TLS.PeerCertificates) > 0
	}
	if scheme, _, _ := strings.Cut(header, " "); !strings.EqualFold(scheme, "SharedAccessSignature") {
		return false
	}
	tok, err := sas.Parse(header)
	return err == nil && tok.KeyName == ""
}

// authorizeDevice accepts the request when its credential is that of the
// device in the path and the device is an enabled IoT Edge device. A
// token must name exactly {hub}/devices/{deviceId}, so a device can never
// reach another device's modules.
func (hm *hubModules) authorizeDevice(r *http.Request, header string) error {
	id := r.PathValue("id")
	req := hubauth.Request{
		ClientID:   id,
		Username:   hm.hs.hosts[0] + "/" + id + "/",
		Password:   header,
		RemoteAddr: r.RemoteAddr,
		Protocol:   ProtocolHubHTTPS,
	}
	if header == "" && r.TLS != nil {
		req.Chain = r.TLS.PeerCertificates
	}
	ident, err := hm.devices.Authenticate(r.Context(), req)
	var denial *hubauth.Denial
	switch {
	case errors.As(err, &denial):
		return unauthorized(fmt.Errorf("device credential for %q refused (%s): %s", id, denial.Reason, denial.Detail))
	case err != nil:
		return fmt.Errorf("authenticate device %q: %w", id, err)
	case ident == nil || ident.DeviceID != id || ident.ModuleID != "" || ident.PolicyName != "":
		return unauthorized(fmt.Errorf("the credential is not that of device %q", id))
	}
	d, err := hm.m.GetDevice(r.Context(), id)
	if err != nil {
		return err
	}
	if !d.Capabilities.IoTEdge {
		return unauthorized(fmt.Errorf("device %q is not an IoT Edge device (capabilities.iotEdge is false): only edge devices manage modules with their own credential", id))
	}
	return nil
}
