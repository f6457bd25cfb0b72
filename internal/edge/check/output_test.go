package check

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sampleReport has one check of every status, in two sections.
func sampleReport() *Report {
	return &Report{
		Time:       time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC),
		ConfigPath: "/etc/aziot/config.toml",
		Version:    "1.2.3",
		Outcomes: []Outcome{
			{ID: IDConfig, Description: "configuration file is well-formed", Section: SectionConfiguration,
				Result: Result{Status: Pass, Message: "/etc/aziot/config.toml: provisioning through DPS"}},
			{ID: IDExpiry, Description: "production readiness: identity certificates expiry", Section: SectionConfiguration,
				Result: Result{Status: Warn, Message: "the identity certificate CN=edge-1 expires on 2026-05-20T00:00:00Z, in 13 days", Fix: "Renew the identity certificate."}},
			{ID: IDClock, Description: "host time is close to reference time", Section: SectionConfiguration,
				Result: Result{Status: Ignore, Message: "no HTTPS reference"}},
			{ID: IDDPS, Description: "host can connect to and perform TLS handshake with DPS endpoint", Section: SectionConnectivity,
				Result: Result{Status: Fail, Message: "the DPS endpoint dps:443 presented a certificate\nthat the trust bundle does not verify", Fix: "Set trust_bundle_cert."}},
			{ID: IDHub, Description: "host can connect to and perform TLS handshake with iothub MQTT port", Section: SectionConnectivity,
				Result: Result{Status: Skip, Message: "skipped because check host-connect-dps-endpoint did not succeed"}},
		},
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
// The golden files spell the platform GOOS/GOARCH.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	platform := []byte(`"id":"` + runtime.GOOS + `","arch":"` + runtime.GOARCH + `"`)
	placeholder := []byte(`"id":"GOOS","arch":"GOARCH"`)
	if *update {
		if err := os.WriteFile(path, bytes.ReplaceAll(got, platform, placeholder), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	want = bytes.ReplaceAll(want, placeholder, platform)
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestWriteTextGolden(t *testing.T) {
	tests := []struct {
		name    string
		verbose bool
	}{
		{"report.txt", false},
		{"report_verbose.txt", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := sampleReport().WriteText(&b, tc.verbose); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b.Bytes())
		})
	}
}

func TestWriteJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())
	// The shape scripts rely on: checks.<id>.result.result.
	var doc struct {
		Checks map[string]struct {
			Result struct {
				Result  string   `json:"result"`
				Details []string `json:"details"`
			} `json:"result"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for id, c := range doc.Checks {
		got[id] = c.Result.Result
	}
	want := map[string]string{IDConfig: "ok", IDExpiry: "warning", IDClock: "ignored", IDDPS: "error", IDHub: "skipped"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if d := doc.Checks[IDDPS].Result.Details; len(d) != 2 {
		t.Errorf("a two-line message gave details %q, want two lines", d)
	}
}

func TestWriteTextSummaryOnlyPasses(t *testing.T) {
	r := &Report{Outcomes: []Outcome{{ID: "a", Description: "a works", Section: SectionConfiguration, Result: Result{Status: Pass, Message: "hidden"}}}}
	var b bytes.Buffer
	if err := r.WriteText(&b, false); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"Configuration checks",
		"--------------------",
		"\u221a a works - OK",
		"",
		"1 check(s) succeeded.",
		"",
	}, "\n")
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
