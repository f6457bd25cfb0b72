package config

import (
	"net/url"
	"os"
	"path/filepath"
)

// Windows defaults, under %ProgramData% as the IoT Edge 1.1 Windows
// runtime laid them out.
const (
	defaultProgramData = `C:\ProgramData`
	defaultMobyURI     = "npipe://./pipe/docker_engine"
	exampleFileURI     = "file:///C:/secrets/device-id.pem"
)

// programData returns %ProgramData%, or C:\ProgramData when it is unset.
func programData() string {
	if d := os.Getenv("ProgramData"); d != "" {
		return d
	}
	return defaultProgramData
}

// DefaultHomedir returns the runtime's default state directory,
// %ProgramData%\iotedge.
func DefaultHomedir() string { return filepath.Join(programData(), "iotedge") }

// DefaultConfigPath returns where the daemon reads its configuration,
// %ProgramData%\iotedge\config.toml.
func DefaultConfigPath() string { return filepath.Join(programData(), "iotedge", "config.toml") }

// PathToFileURI renders an absolute path as a file URI (file:///C:/path,
// or file://server/share/path for a UNC path).
func PathToFileURI(p string) string { return windowsPathToFileURI(p) }

func fileURIPath(u *url.URL) (string, error) { return windowsFileURIPath(u) }
