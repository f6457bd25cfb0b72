package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/muster-iot/muster/internal/client/dpsclient"
)

// ErrUnexpectedAssignment means an "assigned" answer named another device
// than the one that registered.
var ErrUnexpectedAssignment = errors.New("assigned answer names another device")

// Error kinds that ErrorKind returns besides "status_<HTTP status>" and
// "final_<operation status>".
const (
	KindTimeout          = "timeout"
	KindCanceled         = "canceled"
	KindPollLimit        = "poll_limit"
	KindProtocol         = "protocol"
	KindWrongDevice      = "wrong_device"
	KindTLS              = "tls"
	KindRefused          = "connection_refused"
	KindReset            = "connection_reset"
	KindNoLocalPort      = "no_local_port"
	KindNetwork          = "network"
	KindNoClientCert     = "no_client_certificate"
	KindUnexpectedAnswer = "unexpected_answer"
	KindOther            = "other"
)

// ErrorKind names the kind of a failed registration or ceiling operation,
// for error counts: "status_<code>" for an error status the server answered
// (e.g. status_401, status_429), "final_<status>" for a registration that
// ended in another final status than assigned (final_failed,
// final_disabled), or one of the Kind constants.
func ErrorKind(err error) string {
	var (
		se      *dpsclient.StatusError
		fe      *dpsclient.FailedError
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		alert   tls.AlertError
		recErr  tls.RecordHeaderError
		netErr  net.Error
		opErr   *net.OpError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return "status_" + strconv.Itoa(se.Status)
	case errors.As(err, &fe):
		return "final_" + strings.ToLower(fe.Status)
	case errors.Is(err, dpsclient.ErrPollLimit):
		return KindPollLimit
	case errors.Is(err, dpsclient.ErrProtocol):
		return KindProtocol
	case errors.Is(err, ErrUnexpectedAssignment):
		return KindWrongDevice
	case errors.Is(err, errNoClientCert):
		return KindNoClientCert
	case errors.Is(err, errUnexpectedAnswer):
		return KindUnexpectedAnswer
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, dpsclient.ErrResponseTimeout):
		return KindTimeout
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &alert), errors.As(err, &recErr):
		return KindTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return KindNoLocalPort
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return KindReset
	case errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	case errors.As(err, &opErr):
		return KindNetwork
	}
	return KindOther
}
