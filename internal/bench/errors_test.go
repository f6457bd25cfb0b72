package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/muster-iot/muster/internal/client/dpsclient"
)

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestErrorKind(t *testing.T) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: err}}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"status error", fmt.Errorf("register: %w", &dpsclient.StatusError{Status: 401, ErrorCode: 401002}), "status_401"},
		{"throttled", &dpsclient.StatusError{Status: 429}, "status_429"},
		{"failed registration", fmt.Errorf("x: %w", &dpsclient.FailedError{Status: "failed", ErrorCode: 400209}), "final_failed"},
		{"disabled registration", &dpsclient.FailedError{Status: "Disabled"}, "final_disabled"},
		{"poll limit", fmt.Errorf("register: %w (60 follow-up requests)", dpsclient.ErrPollLimit), KindPollLimit},
		{"protocol", fmt.Errorf("%w: no operationId", dpsclient.ErrProtocol), KindProtocol},
		{"wrong device", fmt.Errorf("register: %w", ErrUnexpectedAssignment), KindWrongDevice},
		{"no client certificate", fmt.Errorf("read: %w", errNoClientCert), KindNoClientCert},
		{"unexpected answer", errUnexpectedAnswer, KindUnexpectedAnswer},
		{"context deadline", fmt.Errorf("PUT: %w", context.DeadlineExceeded), KindTimeout},
		{"connection deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), KindTimeout},
		{"MQTT response timeout", dpsclient.ErrResponseTimeout, KindTimeout},
		{"canceled", fmt.Errorf("PUT: %w", context.Canceled), KindCanceled},
		{"TLS alert", fmt.Errorf("handshake: %w", tls.AlertError(42)), KindTLS},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, KindTLS},
		{"record header", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, KindTLS},
		{"refused", opErr(syscall.ECONNREFUSED), KindRefused},
		{"no local port", opErr(syscall.EADDRNOTAVAIL), KindNoLocalPort},
		{"reset", opErr(syscall.ECONNRESET), KindReset},
		{"broken pipe", opErr(syscall.EPIPE), KindReset},
		{"EOF", fmt.Errorf("PUT: %w", io.EOF), KindReset},
		{"unexpected EOF", io.ErrUnexpectedEOF, KindReset},
		{"net timeout", fmt.Errorf("dial: %w", timeoutError{}), KindTimeout},
		{"other network error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route")}, KindNetwork},
		{"anything else", errors.New("boom"), KindOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorKind(tc.err); got != tc.want {
				t.Errorf("ErrorKind(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
