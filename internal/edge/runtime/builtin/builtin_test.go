package builtin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// waitTimeout bounds every wait for a state; no test depends on speed.
const waitTimeout = 30 * time.Second

// other is the wrapped runtime: one process-like module, "sensor".
type other struct{ calls []string }

func (o *other) Create(_ context.Context, spec runtime.ModuleSpec) error {
	o.calls = append(o.calls, "create "+spec.Name)
	return nil
}
func (o *other) Start(_ context.Context, name string) error {
	o.calls = append(o.calls, "start "+name)
	return nil
}
func (o *other) Stop(_ context.Context, name string, _ time.Duration) error {
	o.calls = append(o.calls, "stop "+name)
	return nil
}
func (o *other) Remove(_ context.Context, name string) error {
	o.calls = append(o.calls, "remove "+name)
	return nil
}
func (o *other) List(context.Context) ([]runtime.ModuleState, error) {
	return []runtime.ModuleState{{Name: "sensor", State: runtime.StateRunning}}, nil
}
func (o *other) Inspect(_ context.Context, name string) (runtime.ModuleState, error) {
	if name == "sensor" {
		return runtime.ModuleState{Name: "sensor", State: runtime.StateRunning}, nil
	}
	return runtime.ModuleState{}, runtime.ErrNotFound
}
func (o *other) Logs(context.Context, string, runtime.LogOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("sensor line\n")), nil
}

// awaitState waits until the module is in st.
func awaitState(t *testing.T, r *Runtime, name string, st runtime.State) runtime.ModuleState {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ms, err := r.Inspect(context.Background(), name)
		if err == nil && ms.State == st {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("module %s did not reach %s: %+v %v", name, st, ms, err)
		}
		select {
		case <-r.Changes():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestBuiltinLifecycle(t *testing.T) {
	next := &other{}
	fail := make(chan error, 1)
	r, err := New(Options{Next: next, Dir: t.TempDir(), Modules: map[string]Func{
		"edgeHub": func(ctx context.Context, log *slog.Logger) error {
			log.Info("edge hub listening", "addr", "127.0.0.1:8883")
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-fail:
				return err
			}
		},
		"crash": func(context.Context, *slog.Logger) error { panic("boom") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(time.Second)
	ctx := context.Background()
	spec := runtime.ModuleSpec{Name: "edgeHub", Image: "mcr.microsoft.com/azureiotedge-hub:1.5", Env: map[string]string{"A": "1"}, RegistryAuth: &runtime.RegistryAuth{Password: "p"}}
	if err := r.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, spec); !errors.Is(err, runtime.ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	if err := r.Create(ctx, runtime.ModuleSpec{Name: "sensor"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "edgeHub"); err != nil {
		t.Fatal(err)
	}
	st := awaitState(t, r, "edgeHub", runtime.StateRunning)
	if st.StartedAt.IsZero() || st.Spec.Image != spec.Image || st.Spec.RegistryAuth != nil || st.ImageHash != ImageHash {
		t.Errorf("running state %+v", st)
	}
	all, err := r.List(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "edgeHub" || all[1].Name != "sensor" {
		t.Errorf("List = %+v, %v", all, err)
	}

	// The function's log is the module's log.
	deadline := time.Now().Add(waitTimeout)
	for {
		rc, err := r.Logs(ctx, "edgeHub", runtime.LogOptions{Tail: 1})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if strings.Contains(string(b), "edge hub listening") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs = %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A function that fails ends the module with exit code 1.
	fail <- errors.New("listen tcp 127.0.0.1:8883: address already in use")
	st = awaitState(t, r, "edgeHub", runtime.StateExited)
	if st.ExitCode != 1 || !strings.Contains(st.Description, "address already in use") || st.FinishedAt.IsZero() {
		t.Errorf("failed state %+v", st)
	}

	// A stopped module exits with 0.
	if err := r.Start(ctx, "edgeHub"); err != nil {
		t.Fatal(err)
	}
	awaitState(t, r, "edgeHub", runtime.StateRunning)
	if err := r.Stop(ctx, "edgeHub", waitTimeout); err != nil {
		t.Fatal(err)
	}
	if st := awaitState(t, r, "edgeHub", runtime.StateExited); st.ExitCode != 0 || st.Description != "" {
		t.Errorf("stopped state %+v", st)
	}

	// A panic is a failure, not the end of the runtime.
	if err := r.Create(ctx, runtime.ModuleSpec{Name: "crash"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	if st := awaitState(t, r, "crash", runtime.StateExited); st.ExitCode != 1 || !strings.Contains(st.Description, "panic: boom") {
		t.Errorf("crashed state %+v", st)
	}

	if err := r.Remove(ctx, "edgeHub"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.opts.Dir, "edgeHub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("logs left after Remove: %v", err)
	}
	if _, err := r.Inspect(ctx, "edgeHub"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect after Remove = %v", err)
	}
	if err := r.Start(ctx, "sensor"); err != nil {
		t.Fatal(err)
	}
	want := []string{"create sensor", "start sensor"}
	if strings.Join(next.calls, ",") != strings.Join(want, ",") {
		t.Errorf("wrapped runtime calls %v, want %v", next.calls, want)
	}
}

func TestNewNeedsNextAndDir(t *testing.T) {
	if _, err := New(Options{Dir: t.TempDir()}); err == nil {
		t.Error("New without Next succeeded")
	}
	if _, err := New(Options{Next: &other{}}); err == nil {
		t.Error("New without Dir succeeded")
	}
}
