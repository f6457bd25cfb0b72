package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
	"github.com/muster-iot/muster/internal/edge/runtime/process"
)

// helperEnv switches the test binary into module mode.
const helperEnv = "MUSTER_SUPERVISOR_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helperMain prints "run <module>" and then either exits with the code
// given after "exit" or sleeps until killed ("sleep").
func helperMain(args []string) int {
	fmt.Println("run", os.Getenv("IOTEDGE_MODULEID"))
	if len(args) == 2 && args[0] == "exit" {
		n, _ := strconv.Atoi(args[1])
		return n
	}
	for {
		time.Sleep(time.Hour)
	}
}

// processDoc is a deployment whose modules are the test binary.
func processDoc(t *testing.T, exe string) []byte {
	t.Helper()
	module := func(order int, policy string, cmd ...string) map[string]any {
		opts, _ := json.Marshal(map[string]any{"Cmd": cmd})
		return map[string]any{
			"type": "process", "status": "running", "restartPolicy": policy, "startupOrder": order,
			"settings": map[string]any{"image": exe, "createOptions": string(opts)},
			"env":      map[string]any{helperEnv: map[string]any{"value": "1"}},
		}
	}
	doc := map[string]any{
		"$version":      1,
		"schemaVersion": "1.1",
		"runtime":       map[string]any{"type": "process"},
		"systemModules": map[string]any{
			"edgeAgent": map[string]any{"type": "process", "settings": map[string]any{"image": exe}},
			"edgeHub":   module(0, "always", "sleep"),
		},
		"modules": map[string]any{
			"crashy": module(1, "on-failure", "exit", "2"),
			"steady": module(1, "always", "sleep"),
		},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProcessRuntimeEndToEnd drives real child processes: a module that
// keeps failing is restarted with back-off until the restart limit, while
// the others run. Back-off here is milliseconds long and waits are
// bounded; the exact timing is covered by the synctest tests.
func TestProcessRuntimeEndToEnd(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := process.New(process.Options{Dir: t.TempDir(), StopGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			t.Errorf("close runtime: %v", err)
		}
	}()
	sup, err := New(Options{
		Runtime:      rt,
		Env:          testEnv,
		Backoff:      reconcile.Backoff{Unit: 20 * time.Millisecond, Max: 80 * time.Millisecond, MaxRestarts: 3, StableAfter: time.Minute},
		PollInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.SetDesired(processDoc(t, exe)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	}()

	deadline := time.Now().Add(30 * time.Second)
	var r reconcile.Reported
	for {
		var ok bool
		r, ok = sup.Reported()
		if ok {
			c := r.Modules["crashy"]
			if c.RuntimeStatus == reconcile.RuntimeFailed && c.RestartCount == 3 && r.Modules["steady"].RuntimeStatus == reconcile.RuntimeRunning {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(r, "", "  ")
			t.Fatalf("crashy never gave up after 3 restarts; last report:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	crashy := r.Modules["crashy"]
	if crashy.ExitCode != 2 || !strings.Contains(crashy.StatusDescription, "not restarted again") || r.LastDesiredStatus.Code != reconcile.CodeOK {
		t.Errorf("crashy %+v, status %+v", crashy, r.LastDesiredStatus)
	}
	if hub := r.SystemModules.EdgeHub; hub == nil || hub.RuntimeStatus != reconcile.RuntimeRunning {
		t.Errorf("edgeHub %+v", hub)
	}
	rc, err := rt.Logs(context.Background(), "crashy", runtime.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "run crashy\n"); got != 4 {
		t.Errorf("crashy ran %d times, want 4 (1 start + 3 restarts); logs %q", got, b)
	}
}
