// Package instance owns the identity of one Muster deployment: its ID scope,
// its server CA and TLS certificate, and its shared access policies. The first
// start creates them in the store (so every instance sharing a database uses
// the same ones); later starts reuse them. It also writes the CA file devices
// must trust and the endpoints.json that scripts read.
package instance

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/access"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
)

// DPS and hub policy rights.
var (
	DPSRights   = []string{"ServiceConfig", "EnrollmentRead", "EnrollmentWrite", "DeviceConnect", "RegistrationStatusRead", "RegistrationStatusWrite"}
	hubPolicies = []struct {
		name   string
		rights []string
	}{
		{"iothubowner", []string{"RegistryRead", "RegistryWrite", "ServiceConnect", "DeviceConnect"}},
		{"service", []string{"ServiceConnect"}},
		{"registryRead", []string{"RegistryRead"}},
		{"registryReadWrite", []string{"RegistryRead", "RegistryWrite"}},
		{"device", []string{"DeviceConnect"}},
	}
)

// Setting IDs in the store.
const (
	settingIdentity = "identity"
	settingServer   = "serverCertificate"
)

// identity is the persistent part of an instance.
type identity struct {
	IDScope  string          `json:"idScope"`
	CACert   string          `json:"caCert"`
	CAKey    string          `json:"caKey"`
	Policies []access.Policy `json:"policies"`
	Created  time.Time       `json:"created"`
}

type serverCert struct {
	Hostnames []string `json:"hostnames"`
	Cert      string   `json:"cert"`
	Key       string   `json:"key"`
}

// Instance is a loaded deployment identity.
type Instance struct {
	IDScope   string
	Hostnames []string
	// TLSCertificate is the server certificate (with the CA in its chain).
	TLSCertificate tls.Certificate
	CA             *x509.Certificate
	CAFile         string
	policies       []access.Policy
}

// Open loads the instance identity from docs, creating it on first start,
// and makes sure the server certificate covers hostnames plus 127.0.0.1 and
// ::1. dataDir receives ca.pem.
func Open(ctx context.Context, docs store.Docs, dataDir string, hostnames []string, now time.Time) (*Instance, error) {
	id, err := loadOrCreate(ctx, docs, now)
	if err != nil {
		return nil, err
	}
	ca, err := pki.ParseCertificate([]byte(id.CACert))
	if err != nil {
		return nil, fmt.Errorf("stored server CA: %w", err)
	}
	caKey, err := pki.ParsePrivateKey([]byte(id.CAKey))
	if err != nil {
		return nil, fmt.Errorf("stored server CA key: %w", err)
	}
	issuer := &pki.Issued{Cert: ca, Key: caKey}
	sc, err := serverCertificate(ctx, docs, issuer, hostnames, now)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	abs, err := filepath.Abs(filepath.Join(dataDir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(abs, issuer.CertPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("write CA file: %w", err)
	}
	return &Instance{IDScope: id.IDScope, Hostnames: hostnames, TLSCertificate: sc, CA: ca, CAFile: abs, policies: id.Policies}, nil
}

func loadOrCreate(ctx context.Context, docs store.Docs, now time.Time) (*identity, error) {
	rec, err := docs.Get(ctx, store.KindSetting, settingIdentity)
	if err == nil {
		var id identity
		if err := json.Unmarshal(rec.Doc, &id); err != nil {
			return nil, fmt.Errorf("decode instance identity: %w", err)
		}
		return &id, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load instance identity: %w", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := &identity{IDScope: "0ne" + strings.ToUpper(hex.EncodeToString(b[:])), Created: now.UTC()}
	root, err := pki.NewRoot("Muster Server CA "+id.IDScope, pki.WithValidity(now.Add(-time.Hour), now.AddDate(20, 0, 0)))
	if err != nil {
		return nil, fmt.Errorf("create server CA: %w", err)
	}
	keyPEM, err := root.KeyPEM()
	if err != nil {
		return nil, err
	}
	id.CACert, id.CAKey = string(root.CertPEM()), string(keyPEM)
	newPolicy := func(name, realm string, rights []string) (access.Policy, error) {
		p, err := sas.GenerateKey()
		if err != nil {
			return access.Policy{}, err
		}
		s, err := sas.GenerateKey()
		if err != nil {
			return access.Policy{}, err
		}
		return access.Policy{Name: name, Realm: realm, PrimaryKey: p, SecondaryKey: s, Rights: rights}, nil
	}
	p, err := newPolicy("provisioningserviceowner", "dps", DPSRights)
	if err != nil {
		return nil, err
	}
	id.Policies = append(id.Policies, p)
	for _, hp := range hubPolicies {
		p, err := newPolicy(hp.name, "hub", hp.rights)
		if err != nil {
			return nil, err
		}
		id.Policies = append(id.Policies, p)
	}
	doc, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	if _, err := docs.Put(ctx, store.Record{Kind: store.KindSetting, ID: settingIdentity, Doc: doc}, store.Cond{IfNoneMatch: true}); err != nil {
		if errors.Is(err, store.ErrExists) { // another instance won the race
			return loadOrCreate(ctx, docs, now)
		}
		return nil, fmt.Errorf("store instance identity: %w", err)
	}
	return id, nil
}

func serverCertificate(ctx context.Context, docs store.Docs, ca *pki.Issued, hostnames []string, now time.Time) (tls.Certificate, error) {
	want := append([]string(nil), hostnames...)
	slices.Sort(want)
	rec, err := docs.Get(ctx, store.KindSetting, settingServer)
	if err == nil {
		var sc serverCert
		if json.Unmarshal(rec.Doc, &sc) == nil && slices.Equal(sc.Hostnames, want) {
			if c, err := tls.X509KeyPair([]byte(sc.Cert), []byte(sc.Key)); err == nil && c.Leaf != nil && now.Add(30*24*time.Hour).Before(c.Leaf.NotAfter) {
				return c, nil
			}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return tls.Certificate{}, fmt.Errorf("load server certificate: %w", err)
	}
	var dns []string
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	for _, h := range hostnames {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	leaf, err := ca.NewServer(hostnames[0], pki.WithDNSNames(dns...), pki.WithIPs(ips...), pki.WithValidity(now.Add(-time.Hour), now.AddDate(2, 0, 0)))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	keyPEM, err := leaf.KeyPEM()
	if err != nil {
		return tls.Certificate{}, err
	}
	chainPEM := append(leaf.CertPEM(), ca.CertPEM()...)
	doc, err := json.Marshal(serverCert{Hostnames: want, Cert: string(chainPEM), Key: string(keyPEM)})
	if err != nil {
		return tls.Certificate{}, err
	}
	if _, err := docs.Put(ctx, store.Record{Kind: store.KindSetting, ID: settingServer, Doc: doc}, store.Cond{}); err != nil {
		return tls.Certificate{}, fmt.Errorf("store server certificate: %w", err)
	}
	return tls.X509KeyPair(chainPEM, keyPEM)
}

// Policy returns a shared access policy by name (api.Policies).
func (in *Instance) Policy(name string) (access.Policy, bool) {
	for _, p := range in.policies {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return access.Policy{}, false
}

// ConnectionString returns HostName=…;SharedAccessKeyName=…;SharedAccessKey=…
// for a policy (primary key).
func (in *Instance) ConnectionString(policy string) string {
	p, _ := in.Policy(policy)
	return sas.ConnectionString{HostName: in.Hostnames[0], SharedAccessKeyName: p.Name, SharedAccessKey: p.PrimaryKey}.String()
}

// Endpoints is endpoints.json.
type Endpoints struct {
	IDScope                    string `json:"idScope"`
	DPSDeviceEndpoint          string `json:"dpsDeviceEndpoint"`
	DPSServiceConnectionString string `json:"dpsServiceConnectionString"`
	HubHostName                string `json:"hubHostName"`
	HubConnectionString        string `json:"hubConnectionString"`
	CACertFile                 string `json:"caCertFile"`
	HTTPSAddr                  string `json:"httpsAddr"`
	MQTTAddr                   string `json:"mqttAddr"`
}

// Endpoints describes the running instance given its bound listener addresses.
func (in *Instance) Endpoints(httpsAddr, mqttAddr net.Addr) Endpoints {
	host := in.Hostnames[0]
	port := func(a net.Addr) string {
		_, p, _ := net.SplitHostPort(a.String())
		return net.JoinHostPort(host, p)
	}
	return Endpoints{
		IDScope:                    in.IDScope,
		DPSDeviceEndpoint:          port(httpsAddr),
		DPSServiceConnectionString: in.ConnectionString("provisioningserviceowner"),
		HubHostName:                host,
		HubConnectionString:        in.ConnectionString("iothubowner"),
		CACertFile:                 in.CAFile,
		HTTPSAddr:                  port(httpsAddr),
		MQTTAddr:                   port(mqttAddr),
	}
}

// WriteEndpoints writes endpoints.json (0600: it holds keys).
func WriteEndpoints(dataDir string, e Endpoints) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dataDir, "endpoints.json"), append(b, '\n'), 0o600)
}

// ReadEndpoints reads endpoints.json from a data dir.
func ReadEndpoints(dataDir string) (*Endpoints, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "endpoints.json"))
	if err != nil {
		return nil, err
	}
	var e Endpoints
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dataDir, "endpoints.json"), err)
	}
	return &e, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
