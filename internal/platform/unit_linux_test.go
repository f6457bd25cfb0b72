package platform

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// unitConfig is the service configuration the unit tests render.
func unitConfig(exe string, args ...string) ServiceConfig {
	return ServiceConfig{Name: "iotedge", Description: "Muster IoT Edge runtime", ExePath: exe, Args: args}
}

// unitLines returns the lines of unit starting with prefix.
func unitLines(unit, prefix string) []string {
	var out []string
	for _, l := range strings.Split(unit, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func TestRenderUnit(t *testing.T) {
	cases := []struct {
		name        string
		cfg         ServiceConfig
		wantExec    string
		wantDescr   string
		wantErrLine string
	}{
		{
			name:      "installed binary",
			cfg:       unitConfig("/usr/local/bin/iotedge", "service", "run"),
			wantExec:  "ExecStart=/usr/local/bin/iotedge service run",
			wantDescr: "Description=Muster IoT Edge runtime",
		},
		{
			name:      "spaces are quoted",
			cfg:       unitConfig("/opt/muster edge/iotedge", "service", "run", "--config-file", "/etc/my config.toml"),
			wantExec:  `ExecStart="/opt/muster edge/iotedge" service run --config-file "/etc/my config.toml"`,
			wantDescr: "Description=Muster IoT Edge runtime",
		},
		{
			name:      "specifiers and variables stay literal",
			cfg:       unitConfig("/usr/bin/iotedge", "%n", "$HOME", "${X}"),
			wantExec:  "ExecStart=/usr/bin/iotedge %%n $$HOME $${X}",
			wantDescr: "Description=Muster IoT Edge runtime",
		},
		{
			name:      "quotes, backslashes, separators and empty words",
			cfg:       unitConfig("/usr/bin/iotedge", `a"b`, `c\d`, ";", "it's", ""),
			wantExec:  `ExecStart=/usr/bin/iotedge "a\"b" "c\\d" ";" "it's" ""`,
			wantDescr: "Description=Muster IoT Edge runtime",
		},
		{
			name: "description with a specifier; empty description keeps the template's",
			cfg: ServiceConfig{Name: "iotedge", Description: "100% edge", ExePath: "/usr/bin/iotedge",
				Args: []string{"service", "run"}},
			wantExec:  "ExecStart=/usr/bin/iotedge service run",
			wantDescr: "Description=100%% edge",
		},
		{
			name:      "template description",
			cfg:       ServiceConfig{Name: "iotedge", ExePath: "/usr/bin/iotedge"},
			wantExec:  "ExecStart=/usr/bin/iotedge",
			wantDescr: "Description=Muster IoT Edge runtime",
		},
		{
			name:        "a newline cannot add a directive",
			cfg:         unitConfig("/usr/bin/iotedge", "run\nExecStartPre=/bin/evil"),
			wantErrLine: `render systemd unit: service config: Args[0]: control character '\n' at byte 3`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderUnit(unitTemplate, tc.cfg)
			if tc.wantErrLine != "" {
				if err == nil || err.Error() != tc.wantErrLine {
					t.Fatalf("renderUnit error = %v, want %q", err, tc.wantErrLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{tc.wantExec}, unitLines(got, "ExecStart=")); diff != "" {
				t.Errorf("ExecStart (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{tc.wantDescr}, unitLines(got, "Description=")); diff != "" {
				t.Errorf("Description (-want +got):\n%s", diff)
			}
			// Every other line is the template's.
			tl, gl := strings.Split(unitTemplate, "\n"), strings.Split(got, "\n")
			if len(tl) != len(gl) {
				t.Fatalf("rendered unit has %d lines, template %d", len(gl), len(tl))
			}
			for i := range tl {
				if tl[i] != gl[i] && !strings.HasPrefix(tl[i], "ExecStart=") && !strings.HasPrefix(tl[i], "Description=") {
					t.Errorf("line %d changed: %q -> %q", i+1, tl[i], gl[i])
				}
			}
		})
	}
}

func TestRenderUnitTemplateErrors(t *testing.T) {
	cfg := unitConfig("/usr/bin/iotedge")
	cases := []struct {
		name, tmpl, want string
	}{
		{name: "no ExecStart", tmpl: "[Unit]\nDescription=x\n",
			want: "render systemd unit: template has 0 ExecStart lines, want 1"},
		{name: "two ExecStart", tmpl: "Description=x\nExecStart=/a\nExecStart=/b\n",
			want: "render systemd unit: template has 2 ExecStart lines, want 1"},
		{name: "neither", tmpl: "",
			want: "render systemd unit: template has 0 ExecStart lines, want 1\nrender systemd unit: template has 0 Description lines, want 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderUnit(tc.tmpl, cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("renderUnit error = %v, want %q", err, tc.want)
			}
		})
	}
}

// unquoteExec splits an ExecStart= value the way systemd does for the
// forms execWord produces: words separated by spaces, double quotes with
// \\ and \" escapes, then %% and $$ unescaped.
func unquoteExec(t *testing.T, v string) []string {
	t.Helper()
	var words []string
	for len(v) > 0 {
		if v[0] == ' ' {
			v = v[1:]
			continue
		}
		var w strings.Builder
		if v[0] == '"' {
			i := 1
			for ; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				w.WriteByte(v[i])
			}
			if i >= len(v) {
				t.Fatalf("unterminated quote in %q", v)
			}
			v = v[i+1:]
		} else {
			i := strings.IndexByte(v, ' ')
			if i < 0 {
				i = len(v)
			}
			w.WriteString(v[:i])
			v = v[i:]
		}
		words = append(words, strings.NewReplacer("%%", "%", "$$", "$").Replace(w.String()))
	}
	return words
}

// FuzzRenderUnit renders arbitrary arguments: the result is an error, or
// a unit with the template's lines whose ExecStart splits back into
// exactly the executable and the arguments.
func FuzzRenderUnit(f *testing.F) {
	f.Add("/usr/bin/iotedge", "service", "run")
	f.Add("/opt/a b/iotedge", `"quoted"`, `back\slash`)
	f.Add("/x", "%h$HOME;", "")
	f.Add("/x", "a\nExecStartPre=/bin/sh", "\\")
	f.Add("/x", `\"`, `'`)
	f.Fuzz(func(t *testing.T, exe, a1, a2 string) {
		cfg := unitConfig(exe, a1, a2)
		got, err := renderUnit(unitTemplate, cfg)
		if err != nil {
			if cfg.Validate() == nil {
				t.Fatalf("renderUnit rejected a valid config: %v", err)
			}
			return
		}
		if n, m := strings.Count(got, "\n"), strings.Count(unitTemplate, "\n"); n != m {
			t.Fatalf("rendered unit has %d newlines, template %d", n, m)
		}
		lines := unitLines(got, "ExecStart=")
		if len(lines) != 1 {
			t.Fatalf("rendered unit has ExecStart lines %q", lines)
		}
		if diff := cmp.Diff([]string{exe, a1, a2}, unquoteExec(t, strings.TrimPrefix(lines[0], "ExecStart="))); diff != "" {
			t.Fatalf("ExecStart %q does not split back (-want +got):\n%s", lines[0], diff)
		}
	})
}

// moduleFile reads a file relative to the module root.
func moduleFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeployUnitIsTheEmbeddedUnit(t *testing.T) {
	if diff := cmp.Diff(unitTemplate, string(moduleFile(t, "deploy/iotedge.service"))); diff != "" {
		t.Errorf("deploy/iotedge.service differs from internal/platform/iotedge.service; copy one onto the other (-embedded +deploy):\n%s", diff)
	}
}

// unitDirectives parses a unit file into section -> key -> values,
// failing on anything that is not a comment, a section header or a
// key=value line.
func unitDirectives(t *testing.T, unit string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for n, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			if out[section] != nil {
				t.Errorf("line %d: section [%s] repeated", n+1, section)
			}
			out[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d %q is not a key=value line in a section", n+1, line)
			}
			out[section][key] = append(out[section][key], value)
		}
	}
	return out
}

func TestUnitFileLint(t *testing.T) {
	d := unitDirectives(t, unitTemplate)
	want := map[string]map[string]string{
		"Unit": {
			"Description":           "Muster IoT Edge runtime",
			"Wants":                 "network-online.target",
			"After":                 "network-online.target docker.service",
			"StartLimitIntervalSec": "0",
		},
		"Service": {
			"Type":                    "notify",
			"NotifyAccess":            "main",
			"ExecStart":               "/usr/bin/iotedge service run",
			"Restart":                 "on-failure",
			"RestartSec":              "2s",
			"KillMode":                "mixed",
			"TimeoutStopSec":          "30s",
			"StateDirectory":          "aziot/edged",
			"StateDirectoryMode":      "0700",
			"UMask":                   "0077",
			"NoNewPrivileges":         "yes",
			"ProtectSystem":           "full",
			"ProtectHome":             "read-only",
			"PrivateTmp":              "yes",
			"ProtectKernelTunables":   "yes",
			"ProtectKernelModules":    "yes",
			"ProtectKernelLogs":       "yes",
			"ProtectControlGroups":    "yes",
			"ProtectClock":            "yes",
			"ProtectHostname":         "yes",
			"RestrictSUIDSGID":        "yes",
			"RestrictRealtime":        "yes",
			"RestrictNamespaces":      "yes",
			"LockPersonality":         "yes",
			"SystemCallArchitectures": "native",
			"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		},
		"Install": {"WantedBy": "multi-user.target"},
	}
	for section, keys := range want {
		for key, value := range keys {
			if diff := cmp.Diff([]string{value}, d[section][key]); diff != "" {
				t.Errorf("[%s] %s (-want +got):\n%s", section, key, diff)
			}
		}
	}
	// Options that would take from modules what they legitimately need on
	// an IoT device (serial and USB devices, capabilities, JIT runtimes).
	for _, key := range []string{"PrivateDevices", "DeviceAllow", "CapabilityBoundingSet", "MemoryDenyWriteExecute", "SystemCallFilter", "PrivateNetwork", "DynamicUser", "User"} {
		if v, ok := d["Service"][key]; ok {
			t.Errorf("[Service] %s=%v is set; deploy/README.md explains why it must not be", key, v)
		}
	}
}

// TestUnitFileVerifies runs systemd-analyze verify on the rendered unit
// when systemd-analyze is installed; it needs no running systemd.
func TestUnitFileVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; TestUnitFileLint checks the unit's directives")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// An executable under a directory with a space checks the quoting.
	spaced := filepath.Join(t.TempDir(), "muster edge")
	if err := os.Mkdir(spaced, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(spaced, "iotedge")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  ServiceConfig
	}{
		{"plain", unitConfig(exe, "service", "run")},
		{"quoted", unitConfig(filepath.Join(spaced, "iotedge"), "service", "run", "--config-file", "/etc/my config%.toml", `a"b\c;`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			unit, err := renderUnit(unitTemplate, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "iotedge.service")
			if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(analyze, "verify", path)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			var exitErr *exec.ExitError
			if err != nil && !errors.As(err, &exitErr) {
				t.Fatal(err)
			}
			if err != nil || stdout.Len() > 0 || stderr.Len() > 0 {
				t.Errorf("systemd-analyze verify: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
			}
		})
	}
}

// TestStopTimeoutsAgree keeps the Windows service's stop timeout equal to
// the unit's TimeoutStopSec, so the runtime has as long to stop its
// modules on either system.
func TestStopTimeoutsAgree(t *testing.T) {
	got := unitDirectives(t, unitTemplate)["Service"]["TimeoutStopSec"]
	want := []string{strconv.Itoa(int(serviceTiming().stopTimeout.Seconds())) + "s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TimeoutStopSec (-windows stop timeout +unit):\n%s", diff)
	}
}
