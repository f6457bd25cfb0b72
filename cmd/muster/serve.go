package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/muster-iot/muster/internal/api"
	"github.com/muster-iot/muster/internal/config"
	"github.com/muster-iot/muster/internal/enroll"
	hubcore "github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/hubclient"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/mqtt"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/rollout"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/telemetry"
	"github.com/muster-iot/muster/internal/webhook"
)

// newServeCmd builds `muster serve`.
func newServeCmd() *cobra.Command {
	var (
		configFile string
		flagCfg    = config.Defaults()
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the provisioning service and hub (embedded SQLite store by default)",
		Long: `Run Muster: the DPS device and service APIs and the hub on one HTTPS listener,
DPS-over-MQTT and the hub's MQTT on one MQTTS listener.

Settings come from defaults, then --config (TOML), then environment variables
(` + strings.Join(config.EnvNames(), ", ") + `), then flags.
The first start initialises the data directory; later starts reuse it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Defaults()
			if configFile != "" {
				if err := cfg.LoadFile(configFile); err != nil {
					return err
				}
			}
			if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
				return err
			}
			fl := cmd.Flags()
			if fl.Changed("data-dir") {
				cfg.DataDir = flagCfg.DataDir
			}
			if fl.Changed("https-addr") {
				cfg.HTTPSAddr = flagCfg.HTTPSAddr
			}
			if fl.Changed("mqtt-addr") {
				cfg.MQTTAddr = flagCfg.MQTTAddr
			}
			if fl.Changed("hostname") {
				cfg.Hostnames = flagCfg.Hostnames
			}
			if fl.Changed("log-level") {
				cfg.LogLevel = flagCfg.LogLevel
			}
			if fl.Changed("log-format") {
				cfg.LogFormat = flagCfg.LogFormat
			}
			if fl.Changed("store") {
				cfg.Store = flagCfg.Store
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			return serve(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr(), nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "TOML configuration file")
	f.StringVar(&flagCfg.DataDir, "data-dir", flagCfg.DataDir, "data directory (store, CA, endpoints.json)")
	f.StringVar(&flagCfg.HTTPSAddr, "https-addr", flagCfg.HTTPSAddr, "HTTPS listen address (DPS device and service APIs, hub API)")
	f.StringVar(&flagCfg.MQTTAddr, "mqtt-addr", flagCfg.MQTTAddr, "MQTTS listen address (DPS over MQTT, hub MQTT)")
	f.StringArrayVar(&flagCfg.Hostnames, "hostname", flagCfg.Hostnames, "host name devices use (repeatable; the first names the hub)")
	f.StringVar(&flagCfg.LogLevel, "log-level", flagCfg.LogLevel, "debug, info, warn or error")
	f.StringVar(&flagCfg.LogFormat, "log-format", flagCfg.LogFormat, "text or json")
	f.StringVar(&flagCfg.Store, "store", flagCfg.Store, "store: sqlite:PATH (default: <data-dir>/muster.db) or a postgres://user@host/db URL shared by several instances")
	return cmd
}

func newLogger(w io.Writer, cfg config.Server) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the server until ctx ends. ready, when not nil, receives the
// endpoints once both listeners accept connections.
func serve(ctx context.Context, cfg config.Server, stdout, stderr io.Writer, ready func(instance.Endpoints)) error {
	log := newLogger(stderr, cfg)
	now := time.Now
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()

	inst, err := instance.Open(ctx, st, cfg.DataDir, cfg.Hostnames, now())
	if err != nil {
		return err
	}
	// The registry and the provisioning service write through docs, so that
	// the deployment engine sees every identity and twin change.
	docs := rollout.NewObservedDocs(st)
	hub := registry.New(cfg.Hostnames[0], docs, now)
	hubs := []provision.LinkedHub{{Hub: hub, Weight: cfg.HubWeight, ApplyAllocationPolicy: cfg.HubApplyAllocationPolicy}}
	for i, lh := range cfg.LinkedHubs {
		remote, err := linkedHubClient(lh)
		if err != nil {
			return fmt.Errorf("linked_hub[%d]: %w", i, err)
		}
		hubs = append(hubs, provision.LinkedHub{Hub: remote, Weight: lh.EffectiveWeight(), ApplyAllocationPolicy: lh.AppliesAllocationPolicy()})
	}
	linkedNames := func() []string {
		out := make([]string, len(hubs))
		for i, h := range hubs {
			out[i] = h.Hub.HostName()
		}
		return out
	}
	enrollments := enroll.NewService(st, enroll.ServiceOptions{LinkedHubs: linkedNames, Now: now})

	webhookHTTP, err := webhookHTTPClient(cfg)
	if err != nil {
		return err
	}
	prov, err := provision.New(provision.Options{
		IDScope: inst.IDScope, Docs: docs, Attempts: st, Enrollments: enrollments, Hubs: hubs,
		Allocator: webhook.New(webhookHTTP), Logger: log.With("component", "provision"), Now: now,
		WebhookTimeout: cfg.WebhookTimeout.Duration,
		// Only an instance that owns its store may answer a registration
		// before its commit: a poll cannot reach another instance.
		AnswerBeforeCommit: sharedChanges(st) == nil,
	})
	if err != nil {
		return err
	}
	events, err := telemetry.NewEndpoint(st, telemetry.Options{Now: now, Logger: log.With("component", "telemetry")})
	if err != nil {
		return err
	}
	hubAuth, err := hubauth.New(hubauth.Options{
		HubHostName: hub.HostName(), Identities: hubauth.NewRegistryIdentities(hub),
		Anchors: hubauth.NewEnrollmentAnchors(enrollments), Policies: inst, Attempts: st, Now: now,
		Logger: log.With("component", "hubauth"),
	})
	if err != nil {
		return err
	}
	hubSvc, err := hubcore.New(hubcore.Options{Registry: hub, Auth: hubAuth, Telemetry: events, Now: now, Logger: log.With("component", "hub"), Changes: sharedChanges(st)})
	if err != nil {
		return err
	}
	if err := hubSvc.PrepareChanges(ctx); err != nil { // before any connection, so that none misses a change
		return err
	}
	configurations, deployer, err := newDeployments(hub, hubSvc, st, docs, now, log.With("component", "deploy"))
	if err != nil {
		return err
	}
	hubRealm, err := mqtt.NewHubRealm(hubSvc, log.With("component", "mqtt"))
	if err != nil {
		return err
	}
	broker, err := mqtt.New(mqtt.Options{Logger: log.With("component", "mqtt"), DPS: prov, Now: now, HubRealm: hubRealm})
	if err != nil {
		return err
	}
	defer broker.Close()
	a, err := api.New(api.Options{
		Logger: log.With("component", "api"), IDScope: inst.IDScope,
		Registrar: prov, Registrations: registrations{enrollments, prov}, Enrollments: enrollments,
		Policies: inst, ServiceHostNames: cfg.Hostnames, Now: now,
	})
	if err != nil {
		return err
	}
	if err := a.MountHub(hubSvc); err != nil {
		return err
	}
	if err := a.MountHubModules(hub, hubSvc, hubAuth); err != nil {
		return err
	}
	if err := a.MountHubModuleTwins(hubSvc); err != nil {
		return err
	}
	if err := a.MountHubQuery(hub.HostName(), st); err != nil {
		return err
	}
	if err := a.MountHubConfigurations(configurations, deployer); err != nil {
		return err
	}
	if err := a.MountHubMessaging(hubSvc); err != nil {
		return err
	}
	if err := a.MountTelemetry(hub.HostName(), events); err != nil {
		return err
	}
	a.Handle(http.MethodGet, "/$iothub/websocket", broker.WebSocketHandler())

	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{inst.TLSCertificate},
		ClientAuth:   tls.RequestClientCert, // device certificates are verified per enrollment in attest
		MinVersion:   tls.VersionTLS12,
	}
	httpsLn, err := net.Listen("tcp", cfg.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("listen https %s: %w", cfg.HTTPSAddr, err)
	}
	mqttLn, err := net.Listen("tcp", cfg.MQTTAddr)
	if err != nil {
		httpsLn.Close()
		return fmt.Errorf("listen mqtt %s: %w", cfg.MQTTAddr, err)
	}
	httpTLS := tlsCfg.Clone()
	httpTLS.NextProtos = []string{"http/1.1"}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelDebug),
	}
	ep := inst.Endpoints(httpsLn.Addr(), mqttLn.Addr())
	if err := instance.WriteEndpoints(cfg.DataDir, ep); err != nil {
		httpsLn.Close()
		mqttLn.Close()
		return fmt.Errorf("write endpoints.json: %w", err)
	}
	fmt.Fprintf(stdout, "Muster is running.\n  ID scope:            %s\n  DPS device endpoint: %s\n  HTTPS (APIs):        %s (listening on %s)\n  MQTTS:               %s (listening on %s)\n  Hub host name:       %s\n  CA certificate:      %s\n  Connection strings:  %s\n",
		ep.IDScope, ep.DPSDeviceEndpoint, ep.HTTPSAddr, httpsLn.Addr(), ep.MQTTAddr, mqttLn.Addr(), ep.HubHostName, ep.CACertFile,
		filepath.Join(cfg.DataDir, "endpoints.json"))
	log.Info("muster started", "idScope", ep.IDScope, "https", httpsLn.Addr().String(), "mqtt", mqttLn.Addr().String(), "dataDir", cfg.DataDir)
	if ready != nil {
		ready(ep)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(tls.NewListener(httpsLn, httpTLS)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("https: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := broker.Serve(tls.NewListener(mqttLn, tlsCfg)); err != nil && gctx.Err() == nil {
			return fmt.Errorf("mqtt: %w", err)
		}
		return nil
	})
	g.Go(func() error { return events.RunRetention(gctx) })
	g.Go(func() error { return deployer.Run(gctx) })
	g.Go(func() error { return hubSvc.Run(gctx) }) // presence writes, C2D expiry
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		broker.Close()
		return err
	})
	err = g.Wait()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if derr := prov.Drain(dctx); derr != nil {
		log.Error("stop", "err", derr)
	}
	log.Info("stopped")
	return err
}

// registrations joins the enrollment service's registration records and
// the provisioning service's attempt log for the API.
type registrations struct {
	*enroll.Service
	prov *provision.Service
}

// Attempts returns a registration's attempt log.
func (r registrations) Attempts(ctx context.Context, registrationID string, limit int) ([]store.Attempt, error) {
	return r.prov.Attempts(ctx, registrationID, limit)
}

// linkedHubClient is the service API client of a remote linked hub.
func linkedHubClient(lh config.LinkedHub) (*hubclient.Client, error) {
	var roots *x509.CertPool
	if lh.CAFile != "" {
		pem, err := os.ReadFile(lh.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate found", lh.CAFile)
		}
	}
	return hubclient.New(hubclient.Options{ConnectionString: lh.ConnectionString, Address: lh.Address, RootCAs: roots})
}

func webhookHTTPClient(cfg config.Server) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.WebhookCAFile != "" {
		pem, err := os.ReadFile(cfg.WebhookCAFile)
		if err != nil {
			return nil, fmt.Errorf("webhook_ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("webhook_ca_file %s: no PEM certificate found", cfg.WebhookCAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}
