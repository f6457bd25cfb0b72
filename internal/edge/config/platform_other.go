//go:build !linux && !windows

package config

import "net/url"

// Defaults of other POSIX systems: the Linux layout.
const (
	linuxHomedir    = "/var/lib/aziot/edged"
	linuxConfigPath = "/etc/aziot/config.toml"
	defaultMobyURI  = "unix:///var/run/docker.sock"
	exampleFileURI  = "file:///var/secrets/device-id.pem"
)

// DefaultHomedir returns the runtime's default state directory,
// /var/lib/aziot/edged.
func DefaultHomedir() string { return linuxHomedir }

// DefaultConfigPath returns where the daemon reads its configuration,
// /etc/aziot/config.toml.
func DefaultConfigPath() string { return linuxConfigPath }

// PathToFileURI renders an absolute path as a file URI (file:///abs/path).
func PathToFileURI(p string) string { return unixPathToFileURI(p) }

func fileURIPath(u *url.URL) (string, error) { return unixFileURIPath(u) }
