package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/muster-iot/muster/internal/bench"
	"github.com/muster-iot/muster/internal/config"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/pki"
)

// newBenchCmd builds `muster bench`.
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a running server against this machine's ceilings",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBenchRegisterCmd())
	cmd.AddCommand(newBenchHubCmd())
	return cmd
}

// benchRegisterFlags are the settings of `muster bench register`.
type benchRegisterFlags struct {
	mode           string
	devices        int
	concurrency    int
	duration       time.Duration
	warmup         time.Duration
	ceilingWindow  time.Duration
	rounds         int
	timeout        time.Duration
	noCeilings     bool
	keepGroups     bool
	quiet          bool
	idScope        string
	deviceEndpoint string
	targets        []string
}

// newBenchRegisterCmd builds `muster bench register`.
func newBenchRegisterCmd() *cobra.Command {
	f := benchRegisterFlags{
		mode: "both", concurrency: bench.DefaultConcurrency, duration: bench.DefaultDuration,
		warmup: bench.DefaultWarmup, timeout: bench.DefaultTimeout, rounds: bench.DefaultRounds,
	}
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register many distinct devices against a running server; compare with the bare TLS/HMAC ceilings",
		Long: `Register many distinct devices against a running server in a closed loop and
report registrations per second, the p50/p99 latency of a complete
registration (register request plus poll, ending in a final "assigned"
answer) and the errors by kind.

  symmetric  symmetric-key group devices over HTTPS keep-alive: the bench
             creates the enrollment group bench-sk-<random> and derives the
             device keys before the measurement;
  x509       X.509 group devices, each with a fresh mutual-TLS handshake: the
             bench creates a root and an intermediate CA, the group
             bench-x509-<random> anchored at the intermediate, and issues one
             device certificate per device before the measurement (devices
             present leaf + intermediate).

The device client polls at once after the register answer instead of waiting
for its Retry-After, so the measurement is the server's work. Each mode runs
--warmup, then a measured window of --duration (in rounds, as below), or until
its --devices are used up, whichever comes first.

The same process measures each mode's bare ceiling on loopback with the same
concurrency and the same client: an HTTPS keep-alive server that only
verifies the SAS token's HMAC with a derived key (symmetric), and a TLS server
that only completes mutual-TLS handshakes (x509). The two alternate in
--rounds rounds (default ` + strconv.Itoa(bench.DefaultRounds) + `): --duration and --ceiling-duration are split
between the rounds, each window after its own --warmup, so that both rates
sample the same stretches of a machine whose speed drifts; the rates are the
rounds' totals. The ratios of registrations per second to the ceilings are
compared with the targets (>= ` + strconv.FormatFloat(bench.TargetSymmetricRatio, 'f', -1, 64) + ` symmetric, >= ` + strconv.FormatFloat(bench.TargetX509Ratio, 'f', -1, 64) + ` x509).
The enrollment groups are deleted at the end unless --keep-groups.

The server is found like the other commands find it (--data-dir's
endpoints.json, or --connection-string, --server and --ca-file); the device
side also needs --id-scope (and --device-endpoint when it differs from
--server) unless endpoints.json supplies them.`,
		Example: `  muster --data-dir ./muster-data bench register --mode symmetric --duration 10s
  muster -o json bench register --mode x509 --devices 5000 --concurrency 32`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchRegister(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "mode", f.mode, "devices to register: symmetric, x509 or both")
	fl.IntVar(&f.devices, "devices", 0, fmt.Sprintf("distinct devices per mode, warm-up included (default %d symmetric, %d x509)", bench.DefaultSymmetricDevices, bench.DefaultX509Devices))
	fl.IntVar(&f.concurrency, "concurrency", f.concurrency, fmt.Sprintf("registrations in flight (1..%d)", bench.MaxConcurrency))
	fl.DurationVar(&f.duration, "duration", f.duration, "measured window of each mode")
	fl.DurationVar(&f.warmup, "warmup", f.warmup, "warm-up before each measured window")
	fl.DurationVar(&f.ceilingWindow, "ceiling-duration", 0, "measured window of each ceiling (default: --duration)")
	fl.IntVar(&f.rounds, "rounds", f.rounds, fmt.Sprintf("alternate registrations and ceiling in this many rounds, splitting both windows (1..%d; 1: one window each)", bench.MaxRounds))
	fl.DurationVar(&f.timeout, "timeout", f.timeout, "time limit of one registration")
	fl.BoolVar(&f.noCeilings, "no-ceilings", false, "skip the bare ceiling measurements")
	fl.BoolVar(&f.keepGroups, "keep-groups", false, "keep the enrollment groups the bench creates")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress lines on stderr")
	fl.StringVar(&f.idScope, "id-scope", "", "ID scope of the server (default: from endpoints.json)")
	fl.StringVar(&f.deviceEndpoint, "device-endpoint", "", "DPS device endpoint host:port (default: from endpoints.json, else --server)")
	fl.StringArrayVar(&f.targets, "target", nil, "DPS device endpoint host:port of one instance (repeatable): devices are spread round-robin over the instances of one service sharing a database; replaces --device-endpoint")
	return cmd
}

func runBenchRegister(cmd *cobra.Command, f benchRegisterFlags) error {
	c := benchCLI(cmd)
	if c.output != outputTable && c.output != outputJSON {
		return fmt.Errorf("--output %q: must be %s or %s", c.output, outputTable, outputJSON)
	}
	modes, err := bench.ParseModes(f.mode)
	if err != nil {
		return fmt.Errorf("--mode: %w", err)
	}
	cfg := bench.Config{
		Modes: modes, Devices: f.devices, Concurrency: f.concurrency, Warmup: f.warmup, Duration: f.duration,
		CeilingDuration: f.ceilingWindow, Rounds: f.rounds, SkipCeilings: f.noCeilings, Timeout: f.timeout, KeepGroups: f.keepGroups,
	}
	if f.rounds < 1 {
		return fmt.Errorf("--rounds %d: must be at least 1", f.rounds)
	}
	if f.devices == 0 && cmd.Flags().Changed("devices") {
		return errors.New("--devices 0: must be at least 1")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if len(f.targets) > 0 && f.deviceEndpoint != "" {
		return errors.New("--target and --device-endpoint: give one or the other")
	}
	for _, t := range f.targets {
		if strings.TrimSpace(t) == "" {
			return errors.New("--target: empty address; give host:port")
		}
	}
	srv, err := c.benchServer(f.idScope, f.deviceEndpoint)
	if err != nil {
		return err
	}
	if len(f.targets) > 0 {
		srv.DeviceEndpoint, srv.MoreDeviceEndpoints = f.targets[0], f.targets[1:]
	}
	if !f.quiet {
		cfg.Progress = c.stderr
	}
	rep, runErr := bench.Run(cmd.Context(), srv, cfg)
	if rep != nil {
		if err := c.emit(rep, func(w io.Writer) { benchTable(w, rep) }); err != nil {
			return err
		}
	}
	if runErr != nil {
		return fmt.Errorf("bench register: %w", runErr)
	}
	return nil
}

// benchCLI returns the root settings the bench command runs with: the
// root's persistent flags when it is part of the muster command tree, else
// (run on its own) the environment and the defaults.
func benchCLI(cmd *cobra.Command) *cli {
	c := &cli{
		stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), lookupEnv: os.LookupEnv,
		dataDir: config.Defaults().DataDir, output: outputTable,
	}
	flags := cmd.Root().PersistentFlags()
	if flags.Lookup("data-dir") == nil {
		flags = pflag.NewFlagSet("muster", pflag.ContinueOnError)
	}
	c.flags = flags
	for name, dst := range map[string]*string{
		"data-dir": &c.dataDir, "connection-string": &c.connectionString, "server": &c.server,
		"ca-file": &c.caFile, "output": &c.output,
	} {
		if fl := flags.Lookup(name); fl != nil {
			*dst = fl.Value.String()
		}
	}
	return c
}

// benchServer resolves the server under test: the service API as every
// operator command resolves it, and the device side (ID scope, device
// endpoint) from the flags, else from endpoints.json when it describes the
// same server, else (endpoint only) the service API's address.
func (c *cli) benchServer(idScope, deviceEndpoint string) (bench.Server, error) {
	t, err := c.resolveTarget()
	if err != nil {
		return bench.Server{}, err
	}
	svc, err := c.service()
	if err != nil {
		return bench.Server{}, err
	}
	srv := bench.Server{Service: svc, IDScope: idScope, DeviceEndpoint: deviceEndpoint}
	if t.caFile != "" {
		pem, err := readFlagFile("--ca-file", t.caFile)
		if err != nil {
			return bench.Server{}, err
		}
		certs, err := pki.ParseCertificates(pem)
		if err != nil {
			return bench.Server{}, fmt.Errorf("--ca-file %s: %w", t.caFile, err)
		}
		srv.RootCAs = x509.NewCertPool()
		for _, cert := range certs {
			srv.RootCAs.AddCert(cert)
		}
	}
	if srv.IDScope == "" || srv.DeviceEndpoint == "" {
		dataDir := c.setting("data-dir", c.dataDir, envDataDir)
		if dataDir == "" {
			dataDir = c.dataDir
		}
		ep, err := instance.ReadEndpoints(dataDir)
		switch {
		case err == nil && sameHost(t.connectionString, ep.DPSServiceConnectionString):
			if srv.IDScope == "" {
				srv.IDScope = ep.IDScope
			}
			if srv.DeviceEndpoint == "" {
				srv.DeviceEndpoint = ep.DPSDeviceEndpoint
			}
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return bench.Server{}, fmt.Errorf("read endpoints.json in %s: %w", dataDir, err)
		}
	}
	if srv.DeviceEndpoint == "" {
		srv.DeviceEndpoint = svc.Server()
	}
	if srv.IDScope == "" {
		return bench.Server{}, fmt.Errorf("no ID scope: pass --id-scope, or point --data-dir (%s) at the data directory of the running \"muster serve\"", envDataDir)
	}
	return srv, nil
}

// benchTable prints a report as one row per mode, then the errors.
func benchTable(w io.Writer, rep *bench.Report) {
	fmt.Fprintf(w, "Load generator:\t%d CPUs (GOMAXPROCS %d), %s %s/%s\n",
		rep.Machine.NumCPU, rep.Machine.GOMAXPROCS, rep.Machine.GoVersion, rep.Machine.OS, rep.Machine.Arch)
	fmt.Fprintf(w, "Load:\tconcurrency %d, warm-up %gs, window %gs", rep.Concurrency, rep.WarmupSeconds, rep.DurationSeconds)
	if rep.Rounds > 1 {
		fmt.Fprintf(w, " in %d rounds alternating with the ceiling (each after its warm-up)", rep.Rounds)
	}
	fmt.Fprint(w, "\n\n")
	row(w, "MODE", "DEVICES", "ASSIGNED", "ERRORS", "WINDOW", "REG/S", "P50", "P99", "CEILING", "CEILING/S", "RATIO", "TARGET")
	for _, m := range rep.Modes {
		cells := []string{
			m.Mode, strconv.Itoa(m.Devices), strconv.Itoa(m.Assigned), strconv.Itoa(m.Errors),
			fmt.Sprintf("%.1fs", m.Window.Seconds), fmt.Sprintf("%.0f", m.Window.RatePerSecond),
			fmt.Sprintf("%.1fms", m.Window.LatencyMs.P50), fmt.Sprintf("%.1fms", m.Window.LatencyMs.P99),
		}
		if ce := m.Ceiling; ce != nil {
			verdict := "missed"
			if ce.MeetsTarget {
				verdict = "met"
			}
			cells = append(cells, ce.Name, fmt.Sprintf("%.0f %s", ce.Window.RatePerSecond, ce.Unit),
				fmt.Sprintf("%.3f", ce.Ratio), fmt.Sprintf(">= %g %s", ce.Target, verdict))
		} else {
			cells = append(cells, "", "", "", "")
		}
		row(w, cells...)
	}
	first := true
	for _, m := range rep.Modes {
		if m.LoadGeneratorCPUMicros == 0 {
			continue
		}
		if first {
			fmt.Fprintln(w)
			first = false
		}
		line := fmt.Sprintf("%.0f µs per registration (device side)", m.LoadGeneratorCPUMicros)
		if ce := m.Ceiling; ce != nil && ce.CPUMicros > 0 {
			line += fmt.Sprintf("; %s: %.0f µs per operation (client and bare server)", ce.Name, ce.CPUMicros)
		}
		fmt.Fprintf(w, "CPU of the bench, %s:\t%s\n", m.Mode, line)
	}
	for _, m := range rep.Modes {
		if m.Window.MachineCPUBusyPercent == 0 {
			continue
		}
		line := fmt.Sprintf("%.0f%% in the registrations' window", m.Window.MachineCPUBusyPercent)
		if ce := m.Ceiling; ce != nil && ce.Window.MachineCPUBusyPercent > 0 {
			line += fmt.Sprintf(", %.0f%% in the ceiling's", ce.Window.MachineCPUBusyPercent)
		}
		fmt.Fprintf(w, "Machine CPU busy, %s:\t%s (below ~95%%: the load did not saturate the CPUs)\n", m.Mode, line)
	}
	for _, m := range rep.Modes {
		benchErrors(w, m.Mode+" registrations", m.ErrorsByKind, m.ErrorSamples)
		if m.Ceiling != nil {
			benchErrors(w, m.Mode+" "+m.Ceiling.Name, m.Ceiling.ErrorsByKind, m.Ceiling.ErrorSamples)
		}
	}
}

func benchErrors(w io.Writer, what string, byKind map[string]int, samples map[string]string) {
	if len(byKind) == 0 {
		return
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = k + " " + strconv.Itoa(byKind[k])
	}
	fmt.Fprintf(w, "\nErrors of %s:\t%s\n", what, strings.Join(parts, ", "))
	for _, k := range kinds {
		if s := samples[k]; s != "" {
			fmt.Fprintf(w, "  %s, e.g.:\t%s\n", k, oneLine(s))
		}
	}
}
