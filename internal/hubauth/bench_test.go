package hubauth

import (
	"log/slog"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
)

// BenchmarkAuthenticate measures one accepted connection per credential
// kind over the in-memory store (registry read, trust anchors, HMAC or
// path validation).
func BenchmarkAuthenticate(b *testing.B) {
	now := time.Now().UTC().Truncate(time.Second)
	must := issuer(b)
	f := newFixture(b, now)
	f.auth.log = slog.New(slog.DiscardHandler)
	f.sasDevice("dev1", vectorKey, otherKey)
	ss := must(pki.NewSelfSignedDevice("ss1"))
	f.thumbprintDevice("ss1", pki.SHA1Thumbprint(ss.Cert), "")
	root := must(pki.NewRoot("Root"))
	inter := must(root.NewIntermediate("Intermediate"))
	f.registerCA("root", root, true)
	f.caDevice("ca1", "")
	leaf := must(inter.NewDevice("ca1"))

	benches := []struct {
		name string
		req  Request
	}{
		{"device key", Request{ClientID: "dev1", Username: nodeDeviceUsername, Password: sas.Sign(vectorHub+"/devices/dev1", key(b, vectorKey), "", now.Add(time.Hour))}},
		{"policy token", Request{ClientID: "dev1", Username: nodeDeviceUsername, Password: sas.Sign(vectorHub, key(b, policyKey), "device", now.Add(time.Hour))}},
		{"thumbprint", Request{ClientID: "ss1", Username: vectorHub + "/ss1/", Chain: chainOf(ss)}},
		{"CA chain", Request{ClientID: "ca1", Username: vectorHub + "/ca1/", Chain: chainOf(leaf, inter)}},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := f.auth.Authenticate(f.ctx(), bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
