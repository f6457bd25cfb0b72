package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestEndToEndX509Group provisions an edge device of an X.509 enrollment
// group whose signing certificate is the intermediate CA of `muster certs
// chain`: the device presents its full chain to DPS and to the hub, and
// manages its module identities with its client certificate.
func TestEndToEndX509Group(t *testing.T) {
	e := newE2E(t)
	dir := e.dir
	const group, regID = "e2e-x509-fleet", "edge-e2e-x509-01"
	pki := filepath.Join(dir, "pki")
	e.musterCLI("certs", "chain", regID, "--dir", pki)
	certs := filepath.Join(pki, "certs")
	e.musterCLI("enrollment-group", "create", group, "--edge-enabled",
		"--certificate-path", filepath.Join(certs, "azure-iot-test-only.intermediate.cert.pem"), "--initial-twin-tags", `{"site":"e2e-x509"}`)
	cfg := e.initDevice("x509", "--dps-x509",
		"--x509-identity-certificate", filepath.Join(certs, "iot-edge-device-identity-"+regID+"-full-chain.cert.pem"),
		"--x509-identity-private-key", filepath.Join(pki, "private", "iot-edge-device-identity-"+regID+".key.pem"))
	d := e.startDaemon(cfg)
	reg := verifyX509Check(t, e, cfg, regID, group)

	// The module identities are managed with the client certificate: the
	// deployment's modules get their identities and run.
	e.seedChecklist(d, cfg, "x509", regID, group, "e2e-x509", reg)
}

// TestEndToEndX509Individual provisions an edge device of an individual
// X.509 enrollment of its `muster certs` identity certificate; the device
// presents the certificate alone and its registration ID defaults to the
// certificate's CN.
func TestEndToEndX509Individual(t *testing.T) {
	e := newE2E(t)
	dir := e.dir
	const regID = "edge-e2e-x509-individual-01"
	pki := filepath.Join(dir, "pki")
	e.musterCLI("certs", "chain", regID, "--dir", pki)
	cert := filepath.Join(pki, "certs", "iot-edge-device-identity-"+regID+".cert.pem")
	e.musterCLI("enrollment", "create", "--attestation-type", "x509", "--certificate-path", cert, "--edge-enabled",
		"--initial-twin-tags", `{"site":"e2e-x509-individual"}`)
	cfg := e.initDevice("x509-individual", "--dps-x509", "--x509-identity-certificate", cert,
		"--x509-identity-private-key", filepath.Join(pki, "private", "iot-edge-device-identity-"+regID+".key.pem"))
	d := e.startDaemon(cfg)
	reg := verifyX509Check(t, e, cfg, regID, "")
	e.seedChecklist(d, cfg, "x509-individual", regID, "", "e2e-x509-individual", reg)
}

// verifyX509Check is verifyDevice, and iotedge check checked the identity
// certificate's expiry.
func verifyX509Check(t *testing.T, e *e2e, cfg, regID, group string) registration {
	t.Helper()
	reg, check := e.verifyDevice(cfg, regID, group)
	if !strings.Contains(check, "production readiness: identity certificates expiry - OK") {
		t.Errorf("iotedge check did not check the identity certificate:\n%s", check)
	}
	return reg
}
