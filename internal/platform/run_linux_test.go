package platform

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRunServiceLinux(t *testing.T) {
	errBoom := errors.New("boom")
	cases := []struct {
		name string
		// run is the service body; it may signal the process.
		run     func(ctx context.Context) error
		wantErr error
		wantLog []string // messages logged, in order
	}{
		{
			name: "SIGTERM cancels the context",
			run: func(ctx context.Context) error {
				if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
					return err
				}
				<-ctx.Done()
				return ctx.Err()
			},
			wantLog: []string{"service running", "service stopping", "service stopped"},
		},
		{
			name: "SIGINT cancels the context and nil is a clean stop",
			run: func(ctx context.Context) error {
				if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
					return err
				}
				<-ctx.Done()
				return nil
			},
			wantLog: []string{"service running", "service stopping", "service stopped"},
		},
		{
			name:    "run fails on its own",
			run:     func(context.Context) error { return errBoom },
			wantErr: errBoom,
			wantLog: []string{"service running", "service failed"},
		},
		{
			name:    "run returns on its own",
			run:     func(context.Context) error { return nil },
			wantLog: []string{"service running", "service stopped"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := listenNotify(t, false)
			var logBuf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logBuf, nil))
			err := RunService("iotedge", tc.run, log)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("RunService = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && !strings.HasPrefix(err.Error(), "run service iotedge: ") {
				t.Errorf("error %q does not name the service", err)
			}
			if diff := cmp.Diff([]string{Ready, Stopping}, l.receive(t, 2)); diff != "" {
				t.Errorf("notifications (-want +got):\n%s", diff)
			}
			l.empty(t)
			if diff := cmp.Diff(tc.wantLog, logMessages(t, logBuf.String())); diff != "" {
				t.Errorf("log messages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunServiceNotifyFailureIsLoggedNotFatal(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/nonexistent/notify.sock")
	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, nil))
	if err := RunService("iotedge", func(context.Context) error { return nil }, log); err != nil {
		t.Fatalf("RunService = %v, want nil", err)
	}
	want := []string{"notify the service manager", "service running", "notify the service manager", "service stopped"}
	if diff := cmp.Diff(want, logMessages(t, logBuf.String())); diff != "" {
		t.Errorf("log messages (-want +got):\n%s", diff)
	}
}
