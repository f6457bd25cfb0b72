package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
)

// cli holds the root's settings and output streams; every operator
// command is a method on it.
type cli struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	flags          *pflag.FlagSet // the root's persistent flags

	dataDir          string
	connectionString string
	server           string
	caFile           string
	output           string
}

// setting returns a root setting by precedence: the flag when given, else
// the environment variable when set and not empty, else "".
func (c *cli) setting(flag, value, env string) string {
	if f := c.flags.Lookup(flag); f != nil && f.Changed {
		return value
	}
	if v, ok := c.lookupEnv(env); ok && v != "" {
		return v
	}
	return ""
}

// target says where the service API is and how to trust it.
type target struct {
	connectionString string
	server           string
	caFile           string
}

// resolveTarget applies flag > env > endpoints.json to the connection
// string, the server address and the CA file. endpoints.json describes one
// local server, so its address and CA file are used only together with a
// connection string for the same host name.
func (c *cli) resolveTarget() (target, error) {
	t := target{
		connectionString: c.setting("connection-string", c.connectionString, envConnectionString),
		server:           c.setting("server", c.server, envServer),
		caFile:           c.setting("ca-file", c.caFile, envCAFile),
	}
	return c.completeFromEndpoints(t, dpsRealm())
}

// serviceRealm says where one service's connection string comes from.
type serviceRealm struct {
	what, flag, env, key string // "DPS", "connection-string", its env var, its endpoints.json key
	fromEndpoints        func(*instance.Endpoints) string
}

func dpsRealm() serviceRealm {
	return serviceRealm{what: "DPS", flag: "connection-string", env: envConnectionString, key: "dpsServiceConnectionString",
		fromEndpoints: func(ep *instance.Endpoints) string { return ep.DPSServiceConnectionString }}
}

// completeFromEndpoints fills what t lacks from the endpoints.json of
// --data-dir: the realm's connection string, and the server address and CA
// file when the connection string names that local server's host.
func (c *cli) completeFromEndpoints(t target, r serviceRealm) (target, error) {
	if t.connectionString != "" && t.server != "" && t.caFile != "" {
		return t, nil
	}
	dataDir := c.setting("data-dir", c.dataDir, envDataDir)
	if dataDir == "" {
		dataDir = c.dataDir
	}
	path := filepath.Join(dataDir, "endpoints.json")
	ep, err := instance.ReadEndpoints(dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && t.connectionString == "":
		return t, fmt.Errorf("no %s connection string: pass --%s, set %s, or point --data-dir (%s) at the data directory of a running \"muster serve\" (%s does not exist)",
			r.what, r.flag, r.env, envDataDir, path)
	case errors.Is(err, fs.ErrNotExist):
		return t, nil
	case err != nil:
		return t, fmt.Errorf("read %s: %w", path, err)
	}
	local := r.fromEndpoints(ep)
	if t.connectionString == "" {
		if local == "" {
			return t, fmt.Errorf("%s has no %s; pass --%s", path, r.key, r.flag)
		}
		t.connectionString = local
	}
	if !sameHost(t.connectionString, local) {
		return t, nil
	}
	if t.server == "" {
		t.server = ep.HTTPSAddr
	}
	if t.caFile == "" {
		t.caFile = ep.CACertFile
	}
	return t, nil
}

// sameHost reports whether two connection strings name the same host.
func sameHost(a, b string) bool {
	ca, errA := sas.ParseConnectionString(a)
	cb, errB := sas.ParseConnectionString(b)
	return errA == nil && errB == nil && strings.EqualFold(ca.HostName, cb.HostName)
}

// service returns a client of the service API the settings point at.
func (c *cli) service() (*dpsservice.Client, error) {
	t, err := c.resolveTarget()
	if err != nil {
		return nil, err
	}
	opts := dpsservice.Options{ConnectionString: t.connectionString, Server: t.server}
	if t.caFile != "" {
		pem, err := readFlagFile("--ca-file", t.caFile)
		if err != nil {
			return nil, err
		}
		certs, err := pki.ParseCertificates(pem)
		if err != nil {
			return nil, fmt.Errorf("--ca-file %s: %w", t.caFile, err)
		}
		opts.RootCAs = x509.NewCertPool()
		for _, cert := range certs {
			opts.RootCAs.AddCert(cert)
		}
	}
	cl, err := dpsservice.New(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to the service API: %w", err)
	}
	return cl, nil
}

// readFlagFile reads the file a flag names, with an error naming the flag,
// the path and the cause.
func readFlagFile(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("read %s %s: %w", flag, path, err)
	}
	return b, nil
}
