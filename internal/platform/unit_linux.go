package platform

import (
	_ "embed"
	"errors"
	"fmt"
	"strings"
)

// unitTemplate is the reviewed systemd unit, byte for byte the one in
// deploy/iotedge.service (a test keeps the two identical). InstallService
// writes it with its ExecStart= and Description= lines replaced.
//
//go:embed iotedge.service
var unitTemplate string

// unitFileName is the systemd unit file name of the service name.
func unitFileName(name string) string { return name + ".service" }

// renderUnit returns tmpl with its ExecStart= line running cfg.ExePath
// with cfg.Args and its Description= line set to cfg.Description (kept
// when empty). The template must hold exactly one of each; cfg must be
// valid, so no value can add a line.
func renderUnit(tmpl string, cfg ServiceConfig) (string, error) {
	if err := cfg.Validate(); err != nil {
		return "", fmt.Errorf("render systemd unit: %w", err)
	}
	words := make([]string, 0, 1+len(cfg.Args))
	words = append(words, execWord(cfg.ExePath))
	for _, a := range cfg.Args {
		words = append(words, execWord(a))
	}
	replace := map[string]string{"ExecStart=": "ExecStart=" + strings.Join(words, " ")}
	if cfg.Description != "" {
		replace["Description="] = "Description=" + strings.ReplaceAll(cfg.Description, "%", "%%")
	}
	lines := strings.Split(tmpl, "\n")
	seen := map[string]int{}
	for i, l := range lines {
		for _, key := range []string{"ExecStart=", "Description="} {
			if strings.HasPrefix(l, key) {
				seen[key]++
				if r, ok := replace[key]; ok {
					lines[i] = r
				}
			}
		}
	}
	var errs []error
	for _, key := range []string{"ExecStart=", "Description="} {
		if seen[key] != 1 {
			errs = append(errs, fmt.Errorf("render systemd unit: template has %d %s lines, want 1", seen[key], strings.TrimSuffix(key, "=")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}

// execWord renders one word of an ExecStart= command line: '%' and '$'
// doubled so that neither specifiers nor environment variables expand,
// and double-quoted (with '\' and '"' escaped) when it is empty or holds
// whitespace, quotes, a backslash or a ';', so that it stays one literal
// word.
func execWord(w string) string {
	esc := strings.NewReplacer("%", "%%", "$", "$$").Replace(w)
	if w != "" && !strings.ContainsAny(w, " \t\"'\\;") {
		return esc
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(esc) + `"`
}

// showProperties are the properties systemd.show asks `systemctl show`
// for.
const showProperties = "LoadState,ActiveState,SubState,FragmentPath"
