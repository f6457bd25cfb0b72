package instance

import (
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store/memstore"
)

func TestOpenCreatesThenReuses(t *testing.T) {
	st := memstore.New(10)
	dir := t.TempDir()
	ctx := context.Background()
	now := time.Now()
	in, err := Open(ctx, st, dir, []string{"muster.example", "10.1.2.3"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^0ne[0-9A-F]{8}$`).MatchString(in.IDScope) {
		t.Fatalf("ID scope %q", in.IDScope)
	}
	leaf := in.TLSCertificate.Leaf
	if leaf == nil {
		t.Fatal("no parsed leaf")
	}
	for _, h := range []string{"muster.example"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("server certificate does not cover %s: %v", h, err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.1.2.3"} {
		if err := leaf.VerifyHostname(ip); err != nil {
			t.Errorf("server certificate does not cover %s: %v", ip, err)
		}
	}
	pool := x509.NewCertPool()
	pemBytes, err := os.ReadFile(in.CAFile)
	if err != nil || !filepath.IsAbs(in.CAFile) {
		t.Fatalf("CA file %q: %v", in.CAFile, err)
	}
	pool.AppendCertsFromPEM(pemBytes)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("server certificate does not chain to the CA file: %v", err)
	}
	want := map[string]string{"provisioningserviceowner": "dps", "iothubowner": "hub", "service": "hub", "registryRead": "hub", "registryReadWrite": "hub", "device": "hub"}
	for name, realm := range want {
		p, ok := in.Policy(name)
		if !ok || p.Realm != realm || p.PrimaryKey == p.SecondaryKey {
			t.Errorf("policy %s = %+v", name, p)
		}
		if _, err := sas.DecodeKey(p.PrimaryKey); err != nil {
			t.Errorf("policy %s key: %v", name, err)
		}
	}
	if p, _ := in.Policy("registryRead"); len(p.Rights) != 1 || p.Rights[0] != "RegistryRead" {
		t.Errorf("registryRead rights %v", p.Rights)
	}

	// a second start reuses everything; a new host name re-issues the server certificate only
	again, err := Open(ctx, st, dir, []string{"muster.example", "10.1.2.3"}, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if again.IDScope != in.IDScope || again.ConnectionString("iothubowner") != in.ConnectionString("iothubowner") ||
		!again.TLSCertificate.Leaf.Equal(leaf) {
		t.Fatal("a restart changed the instance identity or the server certificate")
	}
	moved, err := Open(ctx, st, dir, []string{"muster.example", "other.example"}, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if moved.IDScope != in.IDScope || moved.TLSCertificate.Leaf.Equal(leaf) || moved.TLSCertificate.Leaf.VerifyHostname("other.example") != nil {
		t.Fatal("a new host name must re-issue the server certificate under the same CA and scope")
	}
	if !moved.CA.Equal(in.CA) {
		t.Fatal("the CA changed")
	}
}

func TestEndpointsRoundTrip(t *testing.T) {
	st := memstore.New(10)
	dir := t.TempDir()
	in, err := Open(context.Background(), st, dir, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ep := in.Endpoints(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443}, &net.TCPAddr{IP: net.IPv6zero, Port: 8883})
	if ep.DPSDeviceEndpoint != "localhost:8443" || ep.HTTPSAddr != "localhost:8443" || ep.MQTTAddr != "localhost:8883" || ep.HubHostName != "localhost" {
		t.Fatalf("endpoints %+v", ep)
	}
	cs, err := sas.ParseConnectionString(ep.DPSServiceConnectionString)
	if err != nil || cs.HostName != "localhost" || cs.SharedAccessKeyName != "provisioningserviceowner" {
		t.Fatalf("DPS connection string %q: %v", ep.DPSServiceConnectionString, err)
	}
	if !strings.Contains(ep.HubConnectionString, "SharedAccessKeyName=iothubowner") {
		t.Fatalf("hub connection string %q", ep.HubConnectionString)
	}
	if err := WriteEndpoints(dir, ep); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "endpoints.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("endpoints.json mode %v %v", fi.Mode(), err)
	}
	got, err := ReadEndpoints(dir)
	if err != nil || *got != ep {
		t.Fatalf("read back %+v %v", got, err)
	}
}
