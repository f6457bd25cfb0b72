package supervisor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
)

var testEnv = reconcile.EdgeEnv{DeviceID: "edge-01", IoTHubHostName: "hub.example.net", WorkloadURI: "unix:///run/workload.sock"}

// harness runs a Supervisor over a fake runtime inside a synctest bubble.
type harness struct {
	t    *testing.T
	fake *fakeRuntime
	sup  *Supervisor

	mu      sync.Mutex
	reports []reconcile.Reported

	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, fake *fakeRuntime, mod func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, fake: fake, done: make(chan error, 1)}
	opts := Options{
		Runtime:  fake,
		Env:      testEnv,
		Platform: reconcile.HostPlatform("linux", "amd64", "0.4.0"),
		OnReport: func(r reconcile.Reported) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.reports = append(h.reports, r)
		},
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.sup = s
	return h
}

// run starts the loop; stop ends it and checks it returned ctx.Err().
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.sup.Run(ctx) }()
}

func (h *harness) stop() {
	h.cancel()
	if err := <-h.done; !errors.Is(err, context.Canceled) {
		h.t.Errorf("Run returned %v, want context.Canceled", err)
	}
}

func (h *harness) setDesired(doc []byte) error {
	err := h.sup.SetDesired(doc)
	synctest.Wait()
	return err
}

func (h *harness) reported() reconcile.Reported {
	h.t.Helper()
	r, ok := h.sup.Reported()
	if !ok {
		h.t.Fatal("nothing reported yet")
	}
	return r
}

func (h *harness) reportCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.reports)
}

// module returns the reported state of a custom module.
func (h *harness) module(name string) reconcile.ReportedModule {
	h.t.Helper()
	r := h.reported()
	m, ok := r.Modules[name]
	if !ok {
		h.t.Fatalf("module %s not reported (have %v)", name, r.Modules)
	}
	return m
}

func TestStartupOrderGroups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setBehaviour("edgeHub", behaviour{startDelay: 2950 * time.Millisecond})
		f.setBehaviour("a", behaviour{startDelay: 1050 * time.Millisecond})
		f.setBehaviour("b", behaviour{startDelay: 2050 * time.Millisecond})
		h := newHarness(t, f, nil)
		if err := h.sup.SetDesired(deploymentDoc(t, 3,
			moduleDoc{name: "a", order: 1}, moduleDoc{name: "b", order: 1},
			moduleDoc{name: "c", order: 2}, moduleDoc{name: "d", order: 2})); err != nil {
			t.Fatal(err)
		}
		h.run()
		time.Sleep(time.Minute)
		want := []call{
			{0, "create edgeHub"}, {0, "create a"}, {0, "create b"}, {0, "create c"}, {0, "create d"},
			{0, "start edgeHub"},
			// edgeHub runs at 2.95 s, seen at the 3.0 s poll.
			{3 * time.Second, "start a"}, {3 * time.Second, "start b"},
			// b, the slower of the group, runs at 5.05 s, seen at 5.1 s.
			{5100 * time.Millisecond, "start c"}, {5100 * time.Millisecond, "start d"},
		}
		if diff := cmp.Diff(want, f.history()); diff != "" {
			t.Errorf("runtime calls (-want +got):\n%s", diff)
		}
		r := h.reported()
		if r.LastDesiredVersion != 3 || r.LastDesiredStatus.Code != reconcile.CodeOK {
			t.Errorf("lastDesired %d %+v", r.LastDesiredVersion, r.LastDesiredStatus)
		}
		for _, name := range []string{"a", "b", "c", "d"} {
			if st := h.module(name).RuntimeStatus; st != reconcile.RuntimeRunning {
				t.Errorf("module %s is %s", name, st)
			}
		}
		if st := r.SystemModules.EdgeHub.RuntimeStatus; st != reconcile.RuntimeRunning {
			t.Errorf("edgeHub is %s", st)
		}
		h.stop()
	})
}

func TestRestartBackoffTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setBehaviour("crashy", behaviour{exitAfter: time.Second, exitCode: 1})
		h := newHarness(t, f, nil)
		if err := h.sup.SetDesired(deploymentDoc(t, 1, moduleDoc{name: "crashy", order: 1})); err != nil {
			t.Fatal(err)
		}
		h.run()

		time.Sleep(5 * time.Second)
		m := h.module("crashy")
		if m.RuntimeStatus != reconcile.RuntimeBackoff || m.RestartCount != 0 || m.ExitCode != 1 {
			t.Errorf("at 5 s: %s restartCount %d exit %d, want backoff 0 1", m.RuntimeStatus, m.RestartCount, m.ExitCode)
		}

		time.Sleep(11 * time.Minute)
		var got []time.Duration
		for _, c := range f.history("start crashy") {
			got = append(got, c.At)
		}
		// Run n lasts 1 s; restart n waits 10 s·2^(n-1), capped at 300 s,
		// after the exit: starts at 0, 11, 32, 73, 154, 315 and 616 s.
		want := []time.Duration{0, 11 * time.Second, 32 * time.Second, 73 * time.Second, 154 * time.Second, 315 * time.Second, 616 * time.Second}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("start times (-want +got):\n%s", diff)
		}
		m = h.module("crashy")
		if m.RestartCount != 6 || m.LastRestartTimeUtc.IsZero() {
			t.Errorf("restartCount %d lastRestart %v, want 6 and set", m.RestartCount, m.LastRestartTimeUtc)
		}
		h.stop()
	})
}

func TestGiveUpAndStableReset(t *testing.T) {
	backoff := reconcile.Backoff{Unit: time.Second, Max: 4 * time.Second, MaxRestarts: 3, StableAfter: time.Minute}
	t.Run("gives up after MaxRestarts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFake()
			f.setBehaviour("crashy", behaviour{exitAfter: time.Second, exitCode: 2})
			h := newHarness(t, f, func(o *Options) { o.Backoff = backoff })
			h.sup.SetDesired(deploymentDoc(t, 1, moduleDoc{name: "crashy", order: 1, policy: "on-failure"}))
			h.run()
			time.Sleep(10 * time.Minute)
			if n := len(f.history("start crashy")); n != 4 {
				t.Errorf("%d starts, want 1 + 3 restarts", n)
			}
			m := h.module("crashy")
			if m.RuntimeStatus != reconcile.RuntimeFailed || m.RestartCount != 3 || !strings.Contains(m.StatusDescription, "not restarted again") {
				t.Errorf("module %s %q restartCount %d", m.RuntimeStatus, m.StatusDescription, m.RestartCount)
			}
			h.stop()
		})
	})
	t.Run("stable run resets the count", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFake()
			f.setBehaviour("flaky", behaviour{exitAfter: time.Second, exitCode: 2, exitRuns: 2})
			h := newHarness(t, f, func(o *Options) { o.Backoff = backoff })
			h.sup.SetDesired(deploymentDoc(t, 1, moduleDoc{name: "flaky", order: 1}))
			h.run()
			// Starts at 0, 2 (1 s cool-off), 5 (2 s); the third run stays up.
			time.Sleep(30 * time.Second)
			if m := h.module("flaky"); m.RuntimeStatus != reconcile.RuntimeRunning || m.RestartCount != 2 {
				t.Errorf("while recovering: %s restartCount %d, want running 2", m.RuntimeStatus, m.RestartCount)
			}
			time.Sleep(time.Minute)
			if m := h.module("flaky"); m.RestartCount != 0 {
				t.Errorf("after a stable minute: restartCount %d, want 0", m.RestartCount)
			}
			h.stop()
		})
	})
}

func TestDesiredStatusChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		h := newHarness(t, f, nil)
		h.sup.SetDesired(deploymentDoc(t, 1, moduleDoc{name: "m", order: 1}))
		h.run()
		time.Sleep(time.Second)
		if err := h.setDesired(deploymentDoc(t, 2, moduleDoc{name: "m", order: 1, status: "stopped"})); err != nil {
			t.Fatal(err)
		}
		if got := len(f.history("stop m")); got != 1 {
			t.Fatalf("%d stops, want 1", got)
		}
		time.Sleep(5 * time.Minute)
		m := h.module("m")
		if m.RuntimeStatus != reconcile.RuntimeStopped || m.Status != reconcile.StatusStopped {
			t.Errorf("stopped module reported %s (desired %s)", m.RuntimeStatus, m.Status)
		}
		if got := len(f.history("start m")); got != 1 {
			t.Errorf("stopped module was started again (%d starts)", got)
		}
		if err := h.setDesired(deploymentDoc(t, 3, moduleDoc{name: "m", order: 1})); err != nil {
			t.Fatal(err)
		}
		m = h.module("m")
		if m.RuntimeStatus != reconcile.RuntimeRunning || m.RestartCount != 0 {
			t.Errorf("after desired running: %s restartCount %d", m.RuntimeStatus, m.RestartCount)
		}
		if got := len(f.history("start m")); got != 2 {
			t.Errorf("%d starts, want 2", got)
		}
		h.stop()
	})
}

func TestInvalidDesiredKeepsTheDeployment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		h := newHarness(t, f, nil)
		h.sup.SetDesired(deploymentDoc(t, 3, moduleDoc{name: "a", order: 1}, moduleDoc{name: "b", order: 1}))
		h.run()
		synctest.Wait()

		bad := strings.Replace(string(deploymentDoc(t, 4, moduleDoc{name: "a", order: 1})), `"schemaVersion":"1.1"`, `"schemaVersion":"2.0"`, 1)
		err := h.setDesired([]byte(bad))
		if !errors.Is(err, reconcile.ErrInvalidDesired) {
			t.Fatalf("SetDesired = %v, want ErrInvalidDesired", err)
		}
		r := h.reported()
		if r.LastDesiredVersion != 4 || r.LastDesiredStatus.Code != reconcile.CodeBadSchemaVersion || !strings.Contains(r.LastDesiredStatus.Description, "schemaVersion") {
			t.Errorf("lastDesired %d %+v", r.LastDesiredVersion, r.LastDesiredStatus)
		}
		if calls := f.history("stop", "remove"); len(calls) != 0 {
			t.Errorf("destructive calls after an invalid deployment: %v", calls)
		}
		if _, ok := r.Modules["b"]; !ok {
			t.Error("module b no longer reported")
		}

		if err := h.setDesired(deploymentDoc(t, 5, moduleDoc{name: "a", order: 1})); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]call{{0, "stop b"}, {0, "remove b"}}, f.history("stop", "remove")); diff != "" {
			t.Errorf("calls after the next valid deployment (-want +got):\n%s", diff)
		}
		r = h.reported()
		if _, ok := r.Modules["b"]; ok || r.LastDesiredVersion != 5 || r.LastDesiredStatus.Code != reconcile.CodeOK {
			t.Errorf("after valid v5: modules %v, lastDesired %d %+v", r.Modules, r.LastDesiredVersion, r.LastDesiredStatus)
		}
		h.stop()
	})
}

func TestApplyFailureIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setCreateFailure("a", errors.New("image pull failed: unauthorized"))
		h := newHarness(t, f, nil)
		h.sup.SetDesired(deploymentDoc(t, 7, moduleDoc{name: "a", order: 1}, moduleDoc{name: "b", order: 1}))
		h.run()
		synctest.Wait()
		r := h.reported()
		if r.LastDesiredStatus.Code != reconcile.CodeApplyFailed || !strings.Contains(r.LastDesiredStatus.Description, "create module a: image pull failed") {
			t.Errorf("lastDesiredStatus %+v", r.LastDesiredStatus)
		}
		if got := len(f.history("start a")); got != 0 {
			t.Errorf("module a started %d times after its create failed", got)
		}
		if st := h.module("b").RuntimeStatus; st != reconcile.RuntimeRunning {
			t.Errorf("b is %s: one failure must not stop the rest of the plan", st)
		}
		f.setCreateFailure("a", nil)
		time.Sleep(DefaultPollInterval)
		synctest.Wait()
		r = h.reported()
		if r.LastDesiredStatus.Code != reconcile.CodeOK || h.module("a").RuntimeStatus != reconcile.RuntimeRunning {
			t.Errorf("after the retry: %+v, a %s", r.LastDesiredStatus, h.module("a").RuntimeStatus)
		}
		h.stop()
	})
}

func TestRestartModule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		h := newHarness(t, f, nil)
		h.sup.SetDesired(deploymentDoc(t, 1, moduleDoc{name: "m", order: 1}))
		h.run()
		time.Sleep(time.Minute)
		if err := h.sup.RestartModule(context.Background(), "m"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if diff := cmp.Diff([]call{{0, "start m"}, {time.Minute, "stop m"}, {time.Minute, "start m"}}, f.history("start m", "stop m")); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		m := h.module("m")
		if m.RestartCount != 0 || m.LastRestartTimeUtc.IsZero() || m.RuntimeStatus != reconcile.RuntimeRunning {
			t.Errorf("after RestartModule: %+v", m)
		}
		if err := h.sup.RestartModule(context.Background(), "nope"); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("RestartModule(nope) = %v, want ErrNotFound", err)
		}
		if err := h.sup.RestartModule(context.Background(), reconcile.EdgeAgent); err == nil {
			t.Error("RestartModule(edgeAgent) succeeded")
		}
		h.stop()
	})
}

func TestReportsOnlyOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		h := newHarness(t, f, nil)
		h.sup.SetDesired(deploymentDoc(t, 1, moduleDoc{name: "m", order: 1}))
		h.run()
		synctest.Wait()
		first := h.reportCount()
		if first == 0 {
			t.Fatal("no report after the first pass")
		}
		time.Sleep(10 * DefaultPollInterval)
		if got := h.reportCount(); got != first {
			t.Errorf("%d reports while nothing changed, want %d", got, first)
		}
		h.setDesired(deploymentDoc(t, 2, moduleDoc{name: "m", order: 1}))
		if got := h.reportCount(); got != first+1 {
			t.Errorf("%d reports after a new desired version, want %d", got, first+1)
		}
		h.stop()
	})
}

func TestNewRequiresRuntime(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a runtime succeeded")
	}
}

// A new environment (another hub after reprovisioning, a module's new
// connection string) recreates the modules it changes.
func TestSetEnvRecreatesChangedModules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		h := newHarness(t, f, nil)
		h.sup.SetDesired(deploymentDoc(t, 1, moduleDoc{name: "m", order: 1}))
		h.run()
		time.Sleep(time.Minute)
		env := testEnv
		env.ModuleEnv = map[string]map[string]string{"m": {"EdgeHubConnectionString": "HostName=hub.example.net;DeviceId=edge-01;ModuleId=m;SharedAccessKey=a2V5"}}
		h.sup.SetEnv(env)
		synctest.Wait()
		want := []call{{0, "create m"}, {0, "start m"}, {time.Minute, "stop m"}, {time.Minute, "remove m"}, {time.Minute, "create m"}, {time.Minute, "start m"}}
		if diff := cmp.Diff(want, f.history("create m", "start m", "stop m", "remove m")); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		st, err := f.Inspect(context.Background(), "m")
		if err != nil || st.Spec.Env["EdgeHubConnectionString"] == "" {
			t.Errorf("module m after SetEnv: %+v, %v", st.Spec.Env, err)
		}
		if _, ok := h.module("m").Env["EdgeHubConnectionString"]; ok {
			t.Error("the connection string is reported")
		}
		h.stop()
	})
}
