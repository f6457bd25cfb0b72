package check

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/edge/provisioning"
	"github.com/muster-iot/muster/internal/pki"
)

const testScope = "0ne0000000A"

var testKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

// testPKI is a CA and what it issued for the tests.
type testPKI struct {
	root *pki.Issued
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	root, err := pki.NewRoot(name)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{root: root}
}

// bundle writes the root certificate to a PEM file.
func (p *testPKI) bundle(t *testing.T) string {
	t.Helper()
	return writeFile(t, "bundle.pem", p.root.CertPEM())
}

// server starts a TLS listener on loopback that answers every HTTP request
// with 404 (and a Date header), with a certificate for cn from p.
func (p *testPKI) server(t *testing.T, cn string, opts ...pki.Option) *httptest.Server {
	t.Helper()
	leaf, err := p.root.NewServer(cn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what several tests provoke
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// device issues a device certificate and writes it (with the root) and
// its key; it returns the two paths.
func (p *testPKI) device(t *testing.T, cn string, opts ...pki.Option) (certPath, keyPath string) {
	t.Helper()
	dev, err := p.root.NewDevice(cn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	key, err := dev.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "device.pem", append(dev.CertPEM(), p.root.CertPEM()...)), writeFile(t, "device.key", key)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// addr is the host:port of a test server.
func addr(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// cfg describes a test configuration.
type cfg struct {
	home, bundle, endpoint, transport string
	x509Cert, x509Key, regID          string
	manual                            string // connection string; source = manual
	hubMQTTPort                       string // [iothub] mqtt_port, when set
}

// write renders the configuration to a config.toml and returns its path.
func (c cfg) write(t *testing.T) string {
	t.Helper()
	if c.home == "" {
		c.home = t.TempDir()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "homedir = %q\n", c.home)
	if c.bundle != "" {
		fmt.Fprintf(&b, "trust_bundle_cert = %q\n", c.bundle)
	}
	if c.hubMQTTPort != "" {
		fmt.Fprintf(&b, "[iothub]\nmqtt_port = %s\n", c.hubMQTTPort)
	}
	if c.manual != "" {
		fmt.Fprintf(&b, "[provisioning]\nsource = \"manual\"\nconnection_string = %q\n", c.manual)
		return writeFile(t, "config.toml", []byte(b.String()))
	}
	if c.transport == "" {
		c.transport = "https"
	}
	fmt.Fprintf(&b, "[provisioning]\nsource = \"dps\"\ntransport = %q\nglobal_endpoint = %q\nid_scope = %q\n", c.transport, c.endpoint, testScope)
	if c.x509Cert != "" {
		fmt.Fprintf(&b, "[provisioning.attestation]\nmethod = \"x509\"\nidentity_cert = %q\nidentity_pk = %q\n", c.x509Cert, c.x509Key)
		if c.regID != "" {
			fmt.Fprintf(&b, "registration_id = %q\n", c.regID)
		}
	} else {
		fmt.Fprintf(&b, "[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"edge-1\"\nsymmetric_key = { value = %q }\n", testKey)
	}
	return writeFile(t, "config.toml", []byte(b.String()))
}

// runUpTo runs the Default checks up to and including id against env and
// returns the outcome of id.
func runUpTo(t *testing.T, env *Env, id string) Outcome {
	t.Helper()
	var checks []Check
	for _, c := range Default() {
		checks = append(checks, c)
		if c.ID == id {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := Run(ctx, env, checks)
	return r.Outcomes[len(r.Outcomes)-1]
}

// expect checks an outcome's status and that its message and fix contain
// the given fragments.
func expect(t *testing.T, o Outcome, status Status, inMessage, inFix string) {
	t.Helper()
	if o.Status != status {
		t.Fatalf("%s: status %v, want %v\nmessage: %s\nfix: %s", o.ID, o.Status, status, o.Message, o.Fix)
	}
	if !strings.Contains(o.Message, inMessage) {
		t.Errorf("%s: message %q does not contain %q", o.ID, o.Message, inMessage)
	}
	if !strings.Contains(o.Fix, inFix) {
		t.Errorf("%s: fix %q does not contain %q", o.ID, o.Fix, inFix)
	}
	if (status == Warn || status == Fail) && o.Fix == "" {
		t.Errorf("%s: a %v without a fix", o.ID, status)
	}
}

func envFor(path string) *Env {
	e := NewEnv(path)
	e.Timeout = 5 * time.Second
	e.ThirtyTwoBit = false
	return e
}

func TestConfigCheck(t *testing.T) {
	ca := newTestPKI(t, "ca")
	cert, key := ca.device(t, "edge-x")
	_, otherKey := ca.device(t, "edge-y")
	tests := []struct {
		name      string
		path      func(t *testing.T) string
		status    Status
		msg, fix  string
		hasConfig bool
	}{
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.toml") }, Fail, "does not exist", "iotedge init", false},
		{"not a file", func(t *testing.T) string { return t.TempDir() }, Fail, "not a regular file", "regular file", false},
		{"invalid", func(t *testing.T) string {
			return writeFile(t, "config.toml", []byte("[provisioning]\nsource = \"dps\"\nid_scope = \"nope\"\n"))
		}, Fail, "provisioning.id_scope", "iotedge config apply -c", false},
		{"bad trust bundle", func(t *testing.T) string {
			return cfg{endpoint: "dps.example.com", bundle: writeFile(t, "b.pem", []byte("not pem"))}.write(t)
		}, Fail, "trust_bundle_cert", "PEM CA certificates", false},
		{"valid", func(t *testing.T) string { return cfg{endpoint: "dps.example.com"}.write(t) }, Pass, "provisioning through DPS (" + testScope + ", symmetric_key over https)", "", true},
		{"identity problems are left to identity-credential", func(t *testing.T) string {
			return cfg{endpoint: "dps.example.com", x509Cert: cert, x509Key: otherKey}.write(t)
		}, Pass, "x509 over https", "", true},
		{"valid x509", func(t *testing.T) string {
			return cfg{endpoint: "dps.example.com", x509Cert: cert, x509Key: key}.write(t)
		}, Pass, "x509", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := envFor(tc.path(t))
			o := runUpTo(t, env, IDConfig)
			expect(t, o, tc.status, tc.msg, tc.fix)
			if (env.Config != nil) != tc.hasConfig {
				t.Errorf("env.Config set = %v, want %v", env.Config != nil, tc.hasConfig)
			}
		})
	}
}

func TestConfigCheckPermission(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("file modes do not deny access here")
	}
	path := cfg{endpoint: "dps.example.com"}.write(t)
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	expect(t, runUpTo(t, envFor(path), IDConfig), Fail, "permission denied", "as root")
}

func TestIdentityCheck(t *testing.T) {
	ca := newTestPKI(t, "ca")
	cert, key := ca.device(t, "edge-x")
	_, otherKey := ca.device(t, "edge-y")
	caCert := writeFile(t, "ca.pem", ca.root.CertPEM())
	caKey, err := ca.root.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	caKeyPath := writeFile(t, "ca.key", caKey)
	serverOnly, serverOnlyKey := ca.device(t, "edge-s", pki.WithEKU(x509.ExtKeyUsageServerAuth))
	badCN, badCNKey := ca.device(t, "edge x!")
	keyFile := writeFile(t, "device-id", bytes.Repeat([]byte{9}, 32))
	missingKeyFile := filepath.Join(t.TempDir(), "gone")
	symFile := func(uri string) func(t *testing.T) string {
		return func(t *testing.T) string {
			path := cfg{endpoint: "dps.example.com"}.write(t)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.Replace(b, []byte(fmt.Sprintf("{ value = %q }", testKey)), []byte(fmt.Sprintf("{ uri = %q }", config.PathToFileURI(uri))), 1)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
	}
	x := func(c, k, regID string) func(t *testing.T) string {
		return func(t *testing.T) string {
			return cfg{endpoint: "dps.example.com", x509Cert: c, x509Key: k, regID: regID}.write(t)
		}
	}
	tests := []struct {
		name     string
		path     func(t *testing.T) string
		status   Status
		msg, fix string
		chain    bool
	}{
		{"inline symmetric key", func(t *testing.T) string { return cfg{endpoint: "dps.example.com"}.write(t) }, Pass, `registration ID "edge-1" attests with a 32-byte symmetric key (inline value)`, "", false},
		{"symmetric key file", symFile(keyFile), Pass, "32-byte symmetric key (file://", "", false},
		{"missing key file", symFile(missingKeyFile), Fail, "symmetric_key.uri", "Create the key file", false},
		{"x509", x(cert, key, ""), Pass, "X.509 identity CN=edge-x issued by CN=ca", "", true},
		{"x509 with matching registration id", x(cert, key, "EDGE-X"), Pass, "CN=edge-x", "", true},
		{"key of another certificate", x(cert, otherKey, ""), Fail, "does not belong to the certificate CN=edge-x", "private key the identity certificate was issued for", false},
		{"CA first", x(caCert, caKeyPath, ""), Fail, "is a CA certificate", "device's own certificate first", false},
		{"missing certificate", x(filepath.Join(t.TempDir(), "none.pem"), key, ""), Fail, "identity_cert", "Install the device's identity certificate", false},
		{"registration id is not the CN", x(cert, key, "other"), Fail, `registration_id is "other" but the identity certificate's CN is "edge-x"`, "Remove registration_id", false},
		{"CN is not a registration id", x(badCN, badCNKey, ""), Fail, `the CN "edge x!"`, "muster certs device", false},
		{"no client auth", x(serverOnly, serverOnlyKey, ""), Fail, "does not allow client authentication", "clientAuth", false},
		{"manual", func(t *testing.T) string {
			return cfg{manual: "HostName=hub.example.com;DeviceId=edge-m;SharedAccessKey=" + testKey}.write(t)
		}, Pass, `device "edge-m" of hub hub.example.com`, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := envFor(tc.path(t))
			o := runUpTo(t, env, IDIdentity)
			expect(t, o, tc.status, tc.msg, tc.fix)
			if (len(env.IdentityChain) == 2) != tc.chain {
				t.Errorf("identity chain of %d certificates, want it set = %v", len(env.IdentityChain), tc.chain)
			}
		})
	}
}

func TestExpiryCheck(t *testing.T) {
	ca := newTestPKI(t, "ca")
	now := time.Now()
	day := 24 * time.Hour
	valid := func(from, to time.Duration) pki.Option { return pki.WithValidity(now.Add(from), now.Add(to)) }
	tests := []struct {
		name         string
		opts         []pki.Option
		thirtyTwoBit bool
		status       Status
		msg, fix     string
	}{
		{"a year left", []pki.Option{valid(-day, 365*day)}, false, Pass, "the identity certificate CN=edge-x expires on", ""},
		{"ten days left", []pki.Option{valid(-day, 10*day)}, false, Warn, "in 9 days", "Renew the identity certificate"},
		{"hours left", []pki.Option{valid(-day, 5*time.Hour)}, false, Warn, "in 4 hours", "Renew"},
		{"expired", []pki.Option{valid(-10*day, -day)}, false, Fail, "expired on", "Renew the identity certificate"},
		{"not yet valid", []pki.Option{valid(day, 10*day)}, false, Fail, "is not valid before", "local clock is wrong"},
		{"after 2038 on a 32-bit device", []pki.Option{pki.WithValidity(now.Add(-day), time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC))}, true, Warn, "32-bit time_t", "before 2038-01-19"},
		{"after 2038 on a 64-bit device", []pki.Option{pki.WithValidity(now.Add(-day), time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC))}, false, Pass, "expires on", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := ca.device(t, "edge-x", tc.opts...)
			env := envFor(cfg{endpoint: "dps.example.com", x509Cert: cert, x509Key: key}.write(t))
			env.ThirtyTwoBit = tc.thirtyTwoBit
			env.Now = func() time.Time { return now }
			expect(t, runUpTo(t, env, IDExpiry), tc.status, tc.msg, tc.fix)
		})
	}
	t.Run("issuer expires first", func(t *testing.T) {
		inter, err := ca.root.NewIntermediate("inter", pki.WithValidity(now.Add(-day), now.Add(20*day)))
		if err != nil {
			t.Fatal(err)
		}
		dev, err := inter.NewDevice("edge-x", pki.WithValidity(now.Add(-day), now.Add(19*day)))
		if err != nil {
			t.Fatal(err)
		}
		// The device certificate outlives nothing here; make the issuer the
		// first to expire by re-issuing the device for longer.
		dev, err = inter.NewDevice("edge-x", pki.WithKey(dev.Key), pki.WithValidity(now.Add(-day), now.Add(100*day)))
		if err != nil {
			t.Fatal(err)
		}
		key, err := dev.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		certPath := writeFile(t, "chain.pem", append(dev.CertPEM(), inter.CertPEM()...))
		env := envFor(cfg{endpoint: "dps.example.com", x509Cert: certPath, x509Key: writeFile(t, "k.pem", key)}.write(t))
		env.Now = func() time.Time { return now }
		expect(t, runUpTo(t, env, IDExpiry), Warn, "issuer certificate 1 (CN=inter) of "+certPath+" expires on", "Renew")
	})
	t.Run("symmetric key", func(t *testing.T) {
		expect(t, runUpTo(t, envFor(cfg{endpoint: "dps.example.com"}.write(t)), IDExpiry), Ignore, "does not authenticate with an X.509 certificate", "")
	})
}

func TestClockCheck(t *testing.T) {
	ca := newTestPKI(t, "ca")
	srv := ca.server(t, "127.0.0.1", pki.WithValidity(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)))
	bundle := ca.bundle(t)
	endpoint := "https://" + addr(srv)
	tests := []struct {
		name     string
		offset   time.Duration
		status   Status
		msg, fix string
	}{
		{"in sync", 0, Pass, "the local clock is", ""},
		{"two minutes ahead", 2 * time.Minute, Warn, "ahead of the time of the DPS endpoint " + addr(srv), "timedatectl set-ntp true"},
		{"ten minutes behind", -10 * time.Minute, Fail, "behind the time of the DPS endpoint", "Synchronise the clock"},
		// Three days ahead the server's certificate has expired for the
		// local clock; the check still reads the server's time.
		{"three days ahead", 72 * time.Hour, Fail, "ahead of the time of the DPS endpoint", "Synchronise the clock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := envFor(cfg{endpoint: endpoint, bundle: bundle}.write(t))
			env.Now = func() time.Time { return time.Now().Add(tc.offset) }
			expect(t, runUpTo(t, env, IDClock), tc.status, tc.msg, tc.fix)
		})
	}
	t.Run("untrusted server", func(t *testing.T) {
		other := newTestPKI(t, "other")
		env := envFor(cfg{endpoint: endpoint, bundle: other.bundle(t)}.write(t))
		expect(t, runUpTo(t, env, IDClock), Warn, "could not read the reference time", "trust bundle")
	})
	t.Run("mqtt transport", func(t *testing.T) {
		env := envFor(cfg{endpoint: "mqtts://" + addr(srv), transport: "mqtt", bundle: bundle}.write(t))
		expect(t, runUpTo(t, env, IDClock), Ignore, "speaks MQTT", "")
	})
	t.Run("manual", func(t *testing.T) {
		env := envFor(cfg{manual: "HostName=hub.example.com;DeviceId=edge-m;SharedAccessKey=" + testKey}.write(t))
		expect(t, runUpTo(t, env, IDClock), Ignore, "does not provision through DPS", "")
	})
}

func TestProvisioningCheck(t *testing.T) {
	endpoint := "https://dps.example.com:8443"
	matching := func(t *testing.T, home string) *provisioning.Cache {
		t.Helper()
		c, err := config.Parse([]byte(fmt.Sprintf("homedir = %q\n[provisioning]\nsource = \"dps\"\nglobal_endpoint = %q\nid_scope = %q\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"edge-1\"\nsymmetric_key = { value = %q }\n", home, endpoint, testScope, testKey)))
		if err != nil {
			t.Fatal(err)
		}
		id, err := provisioning.IdentityOf(c)
		if err != nil {
			t.Fatal(err)
		}
		return &provisioning.Cache{Version: provisioning.CacheVersion, AssignedHub: "hub.example.com", DeviceID: "edge-1",
			RegistrationID: id.RegistrationID, IDScope: id.IDScope, Endpoint: id.Endpoint, Credential: id.Credential,
			ProvisionedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Substatus: "initialAssignment"}
	}
	tests := []struct {
		name     string
		prepare  func(t *testing.T, home string)
		status   Status
		msg, fix string
		cached   bool
	}{
		{"not provisioned", func(*testing.T, string) {}, Warn, "has not provisioned yet", "iotedge system reprovision", false},
		{"corrupt", func(t *testing.T, home string) {
			if err := os.MkdirAll(filepath.Dir(provisioning.CachePath(home)), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(provisioning.CachePath(home), []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, Warn, "unusable", "iotedge system reprovision", false},
		{"matching", func(t *testing.T, home string) {
			if err := provisioning.SaveCache(home, matching(t, home)); err != nil {
				t.Fatal(err)
			}
		}, Pass, `assigned to hub hub.example.com, device "edge-1", provisioned at 2026-01-02T03:04:05Z, substatus initialAssignment`, "", true},
		{"another scope", func(t *testing.T, home string) {
			c := matching(t, home)
			c.IDScope = "0ne000000FF"
			if err := provisioning.SaveCache(home, c); err != nil {
				t.Fatal(err)
			}
		}, Warn, `was made for another identity: id_scope is "` + testScope + `" in the configuration but "0ne000000FF" in the cache`, "Restart the iotedge daemon", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			tc.prepare(t, home)
			env := envFor(cfg{home: home, endpoint: endpoint}.write(t))
			expect(t, runUpTo(t, env, IDProvisioning), tc.status, tc.msg, tc.fix)
			if (env.Cache != nil) != tc.cached {
				t.Errorf("env.Cache set = %v, want %v", env.Cache != nil, tc.cached)
			}
		})
	}
	t.Run("manual", func(t *testing.T) {
		env := envFor(cfg{manual: "HostName=hub.example.com;DeviceId=edge-m;SharedAccessKey=" + testKey}.write(t))
		expect(t, runUpTo(t, env, IDProvisioning), Ignore, "manual provisioning", "")
	})
	t.Run("unreadable", func(t *testing.T) {
		if runtime.GOOS == "windows" || os.Geteuid() == 0 {
			t.Skip("file modes do not deny access here")
		}
		home := t.TempDir()
		if err := provisioning.SaveCache(home, matching(t, home)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(provisioning.CachePath(home), 0); err != nil {
			t.Fatal(err)
		}
		env := envFor(cfg{home: home, endpoint: endpoint}.write(t))
		expect(t, runUpTo(t, env, IDProvisioning), Fail, "permission denied", "as root")
	})
}

// silentListener accepts TCP connections and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
			close(done)
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestDPSCheck(t *testing.T) {
	ca := newTestPKI(t, "ca")
	bundle := ca.bundle(t)
	good := ca.server(t, "127.0.0.1")
	wrongName := ca.server(t, "dps.example.com")
	expired := ca.server(t, "127.0.0.1", pki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	other := newTestPKI(t, "other").bundle(t)
	silent := silentListener(t)
	closed := closedPort(t)
	tests := []struct {
		name, endpoint, bundle string
		timeout                time.Duration
		status                 Status
		msg, fix               string
	}{
		{"trusted", "https://" + addr(good), bundle, 0, Pass, "TLS handshake with the DPS endpoint " + addr(good) + " succeeded (server certificate CN=127.0.0.1)", ""},
		{"untrusted with a bundle", "https://" + addr(good), other, 0, Fail, "presented a certificate (CN=127.0.0.1, issued by CN=ca) that the trust bundle does not verify", "Add the CA certificate that issued the server's certificate to the trust bundle"},
		{"untrusted without a bundle", "https://" + addr(good), "", 0, Fail, "only the system's CAs are trusted", "--trust-bundle"},
		{"wrong host name", "https://" + addr(wrongName), bundle, 0, Fail, `is not valid for "127.0.0.1": it names dps.example.com`, "muster serve --hostname 127.0.0.1"},
		{"expired server certificate", "https://" + addr(expired), bundle, 0, Fail, "the certificate CN=127.0.0.1 presented by the DPS endpoint", "host-local-time"},
		{"not TLS", "https://" + addr(plain), bundle, 0, Fail, "does not speak TLS", "TLS port"},
		{"nothing listening", "https://" + closed, bundle, 0, Fail, "could not connect to the DPS endpoint " + closed, "outbound TCP port"},
		{"no answer", "https://" + silent, bundle, 300 * time.Millisecond, Fail, "did not complete a TLS handshake within 300ms", "outbound TCP port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := envFor(cfg{endpoint: tc.endpoint, bundle: tc.bundle}.write(t))
			if tc.timeout > 0 {
				env.Timeout = tc.timeout
			}
			expect(t, runUpTo(t, env, IDDPS), tc.status, tc.msg, tc.fix)
		})
	}
	t.Run("manual", func(t *testing.T) {
		env := envFor(cfg{manual: "HostName=hub.example.com;DeviceId=edge-m;SharedAccessKey=" + testKey}.write(t))
		expect(t, runUpTo(t, env, IDDPS), Ignore, "does not provision through DPS", "")
	})
}

func TestDPSCheckUnresolvableHost(t *testing.T) {
	// .invalid never resolves (RFC 6761); the resolver answers locally.
	env := envFor(cfg{endpoint: "https://dps.muster-test.invalid:8443", bundle: newTestPKI(t, "ca").bundle(t)}.write(t))
	o := runUpTo(t, env, IDDPS)
	if o.Status != Fail {
		t.Fatalf("status %v, want Fail (%s)", o.Status, o.Message)
	}
	// Some resolvers answer NXDOMAIN, sandboxes may fail the lookup other
	// ways; either way the message names the host.
	if !strings.Contains(o.Message, "dps.muster-test.invalid") {
		t.Errorf("message %q does not name the host", o.Message)
	}
}

func TestHubCheck(t *testing.T) {
	ca := newTestPKI(t, "ca")
	bundle := ca.bundle(t)
	hub := ca.server(t, "127.0.0.1")
	_, hubPort, err := net.SplitHostPort(addr(hub))
	if err != nil {
		t.Fatal(err)
	}
	cachedHub := func(hubName string) func(t *testing.T, home string) {
		return func(t *testing.T, home string) {
			c := &provisioning.Cache{Version: provisioning.CacheVersion, AssignedHub: hubName, DeviceID: "edge-1", RegistrationID: "edge-1",
				IDScope: testScope, Endpoint: "https://dps.example.com/", Credential: provisioning.FingerprintSymmetricKey + "00",
				ProvisionedAt: time.Now()}
			if err := provisioning.SaveCache(home, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name     string
		prepare  func(t *testing.T, home string)
		manual   string
		override string
		port     string
		cfgPort  string
		status   Status
		msg, fix string
	}{
		{"not provisioned", func(*testing.T, string) {}, "", "", "", "", Skip, "not provisioned yet", "--iothub-hostname"},
		{"cached hub with port", cachedHub(addr(hub)), "", "", "", "", Pass, "TLS handshake with the hub " + addr(hub) + " succeeded", ""},
		{"cached hub on the MQTT port", cachedHub("127.0.0.1"), "", "", hubPort, "", Pass, "the hub " + addr(hub), ""},
		{"cached hub on iothub.mqtt_port", cachedHub("127.0.0.1"), "", "", "", hubPort, Pass, "the hub " + addr(hub), ""},
		{"cached hub on the default port", cachedHub("127.0.0.1"), "", "", "", "", Fail, "the hub 127.0.0.1:" + DefaultHubPort, ""},
		{"cached hub unreachable", cachedHub(closedPort(t)), "", "", "", "", Fail, "could not connect to the hub", "outbound TCP port"},
		{"override", func(*testing.T, string) {}, "", addr(hub), "", "", Pass, "the hub " + addr(hub), ""},
		{"manual", func(*testing.T, string) {}, "HostName=127.0.0.1;DeviceId=edge-m;SharedAccessKey=" + testKey, "", hubPort, "", Pass, "the hub " + addr(hub), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			tc.prepare(t, home)
			c := cfg{home: home, endpoint: "https://dps.example.com", bundle: bundle, manual: tc.manual, hubMQTTPort: tc.cfgPort}
			env := envFor(c.write(t))
			env.HubHostname = tc.override
			if tc.port != "" {
				env.HubPort = tc.port
			}
			expect(t, runUpTo(t, env, IDHub), tc.status, tc.msg, tc.fix)
		})
	}
}

// TestDefaultAllPass runs every check against a healthy X.509 device.
func TestDefaultAllPass(t *testing.T) {
	ca := newTestPKI(t, "ca")
	dps := ca.server(t, "127.0.0.1")
	hub := ca.server(t, "127.0.0.1")
	cert, key := ca.device(t, "edge-x")
	home := t.TempDir()
	path := cfg{home: home, endpoint: "https://" + addr(dps), bundle: ca.bundle(t), x509Cert: cert, x509Key: key}.write(t)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := provisioning.IdentityOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := provisioning.SaveCache(home, &provisioning.Cache{Version: provisioning.CacheVersion, AssignedHub: addr(hub), DeviceID: "edge-x",
		RegistrationID: id.RegistrationID, IDScope: id.IDScope, Endpoint: id.Endpoint, Credential: id.Credential, ProvisionedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	r := Run(context.Background(), envFor(path), Default())
	for _, o := range r.Outcomes {
		if o.Status != Pass {
			t.Errorf("%s: %v: %s (fix: %s)", o.ID, o.Status, o.Message, o.Fix)
		}
	}
	if len(r.Outcomes) != len(Default()) || r.Failed(true) {
		t.Errorf("report %+v", r)
	}
}

// TestDefaultMissingConfigSkipsTheRest: without a configuration nothing
// else can run.
func TestDefaultMissingConfigSkipsTheRest(t *testing.T) {
	r := Run(context.Background(), envFor(filepath.Join(t.TempDir(), "none.toml")), Default())
	if got := r.Count(Fail); got != 1 {
		t.Errorf("%d failures, want 1", got)
	}
	if got := r.Count(Skip); got != len(Default())-1 {
		t.Errorf("%d skipped, want %d", got, len(Default())-1)
	}
}
