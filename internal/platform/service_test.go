package platform

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// absExe is an absolute executable path on the build machine's system.
func absExe(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("bin", "iotedge"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServiceConfigValidate(t *testing.T) {
	exe := absExe(t)
	valid := ServiceConfig{
		Name: "iotedge", DisplayName: "Muster IoT Edge", Description: "Runs modules",
		ExePath: exe, Args: []string{"service", "run", "--config-file", "/etc/aziot/config toml"},
		EventSource: "iotedged",
	}
	cases := []struct {
		name   string
		change func(c *ServiceConfig)
		want   []string // one line per problem, in order
	}{
		{name: "valid", change: func(*ServiceConfig) {}},
		{name: "no event source is fine", change: func(c *ServiceConfig) { c.EventSource = "" }},
		{name: "empty name", change: func(c *ServiceConfig) { c.Name = "" },
			want: []string{"service config: Name: empty"}},
		{name: "name with a slash", change: func(c *ServiceConfig) { c.Name = "a/b" },
			want: []string{`service config: Name: "a/b" has '/' at byte 1; use letters, digits, '.', '_' and '-'`}},
		{name: "name too long", change: func(c *ServiceConfig) { c.Name = strings.Repeat("a", 81) },
			want: []string{"service config: Name: 81 bytes, longer than 80"}},
		{name: "event source with a space", change: func(c *ServiceConfig) { c.EventSource = "iot edged" },
			want: []string{`service config: EventSource: "iot edged" has ' ' at byte 3; use letters, digits, '.', '_' and '-'`}},
		{name: "newline in description", change: func(c *ServiceConfig) { c.Description = "a\nExecStartPre=/bin/evil" },
			want: []string{`service config: Description: control character '\n' at byte 1`}},
		{name: "C1 control in display name", change: func(c *ServiceConfig) { c.DisplayName = "ab\u0085" },
			want: []string{`service config: DisplayName: control character '\u0085' at byte 2`}},
		{name: "empty exe", change: func(c *ServiceConfig) { c.ExePath = "" },
			want: []string{"service config: ExePath: empty"}},
		{name: "relative exe", change: func(c *ServiceConfig) { c.ExePath = "bin/iotedge" },
			want: []string{`service config: ExePath: "bin/iotedge" is not an absolute path`}},
		{name: "newline in exe", change: func(c *ServiceConfig) { c.ExePath = exe + "\n" },
			want: []string{`service config: ExePath: control character '\n' at byte ` + strconv.Itoa(len(exe))}},
		{name: "newline in an argument", change: func(c *ServiceConfig) { c.Args = []string{"ok", "x\ny"} },
			want: []string{`service config: Args[1]: control character '\n' at byte 1`}},
		{name: "invalid UTF-8 argument", change: func(c *ServiceConfig) { c.Args = []string{"\xff"} },
			want: []string{"service config: Args[0]: not valid UTF-8"}},
		{name: "every problem at once", change: func(c *ServiceConfig) {
			c.Name, c.Description, c.ExePath, c.Args = "", "\t", "x", []string{"\x00"}
		}, want: []string{
			"service config: Name: empty",
			`service config: Description: control character '\t' at byte 0`,
			`service config: ExePath: "x" is not an absolute path`,
			`service config: Args[0]: control character '\x00' at byte 0`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			c.Args = append([]string(nil), valid.Args...)
			tc.change(&c)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate() problems (-want +got):\n%s", diff)
			}
		})
	}
}
