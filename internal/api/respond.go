package api

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/fastjson"
	"github.com/muster-iot/muster/internal/provision"
)

// Response header names.
const (
	headerRequestID    = "X-Ms-Request-Id" // canonical, so Header.Set and Get need not allocate it; on the wire either way
	headerErrorCode    = "x-ms-error-code"
	headerContinuation = "x-ms-continuation"
	headerItemType     = "x-ms-item-type"
	headerMaxItemCount = "x-ms-max-item-count"
	headerRetryAfter   = "Retry-After"
	contentTypeJSON    = "application/json; charset=utf-8"
)

// Error codes of errors this package raises itself (first three digits are
// the HTTP status, as the DPS clients expect).
const (
	codeBadRequest       = 400004
	codeUnauthorized     = 401002
	codeNotFound         = 404201 // registrations and enrollments
	codeNotFoundOther    = 404202 // groups, certificates, unknown routes
	codeMethodNotAllowed = 405001
	codeConflict         = 409001
	codePrecondition     = 412002
	codeTooLarge         = 413001
	codeInternal         = 500000
)

// httpError is an error answered with a given status and a message that is
// safe to show the caller; err, when set, is the cause for the log only.
type httpError struct {
	status  int
	code    int
	message string
	err     error
}

func (e *httpError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%d (%d) %s: %v", e.status, e.code, e.message, e.err)
	}
	return fmt.Sprintf("%d (%d) %s", e.status, e.code, e.message)
}

func (e *httpError) Unwrap() error { return e.err }

// badRequest returns a 400 whose message the caller sees.
func badRequest(format string, args ...any) *httpError {
	return &httpError{status: http.StatusBadRequest, code: codeBadRequest, message: fmt.Sprintf(format, args...)}
}

// unauthorized is the one answer to every failed service authorisation; the
// precise reason is in err and goes to the log only.
func unauthorized(err error) *httpError {
	return &httpError{status: http.StatusUnauthorized, code: codeUnauthorized, message: "Unauthorized", err: err}
}

// resource describes what a route addresses, for error messages and codes.
type resource struct {
	noun     string // "enrollment", "enrollment group", …
	notFound int    // errorCode of a 404
}

// newTrackingID returns a random UUID (version 4).
func newTrackingID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read crashes the program instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// trackingID returns the request ID the router put on the response.
func trackingID(w http.ResponseWriter) string { return w.Header().Get(headerRequestID) }

// writeJSON answers with a status and a JSON body.
func (a *API) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := marshalResponse(v)
	if err != nil {
		a.fail(w, r, resource{}, fmt.Errorf("encode %T response: %w", v, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client went away
}

// marshalResponse returns json.Marshal(v); the register and poll answers
// are written without reflection when they allow it (see fastjson).
func marshalResponse(v any) ([]byte, error) {
	if op, ok := v.(*provision.OperationStatus); ok {
		var s fastjson.Scratch
		if b, ok := op.AppendJSON(s[:0]); ok {
			return bytes.Clone(b), nil
		}
	}
	return json.Marshal(v)
}

// writeNoContent answers 204.
func writeNoContent(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

// classify maps an error to what the caller is told: the status, errorCode,
// message and Retry-After seconds.
func classify(res resource, err error) (status, code int, message string, retryAfter int) {
	var (
		pe *provision.Error
		he *httpError
		ve *enroll.ValidationError
		me *http.MaxBytesError
	)
	noun := res.noun
	if noun == "" {
		noun = "resource"
	}
	notFound := res.notFound
	if notFound == 0 {
		notFound = codeNotFoundOther
	}
	switch {
	case errors.As(err, &pe):
		return pe.Status, pe.Code, pe.Message, pe.RetryAfter
	case errors.As(err, &he):
		return he.status, he.code, he.message, 0
	case errors.As(err, &me):
		return http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("request body is larger than the %d-byte limit", me.Limit), 0
	case errors.As(err, &ve):
		return http.StatusBadRequest, codeBadRequest, ve.Error(), 0
	case errors.Is(err, enroll.ErrNotFound):
		return http.StatusNotFound, notFound, fmt.Sprintf("the %s does not exist", noun), 0
	case errors.Is(err, enroll.ErrPrecondition):
		return http.StatusPreconditionFailed, codePrecondition,
			fmt.Sprintf("If-Match does not match the current etag of the %s", noun), 0
	case errors.Is(err, enroll.ErrConflict):
		return http.StatusConflict, codeConflict, fmt.Sprintf("the %s already exists", noun), 0
	}
	return http.StatusInternalServerError, codeInternal, "internal error; quote the trackingId to the operator", 0
}

// fail renders err as a ProvisioningServiceErrorDetails body and logs it:
// server errors with their cause at error level, refusals at debug level.
func (a *API) fail(w http.ResponseWriter, r *http.Request, res resource, err error) {
	status, code, message, retryAfter := classify(res, err)
	id := trackingID(w)
	// Server errors are the operator's to fix; refused service tokens are
	// worth seeing; the rest (device refusals are logged by the Registrar,
	// with the attempt log) are debug detail.
	level := slog.LevelDebug
	var he *httpError
	switch {
	case status >= 500:
		level = slog.LevelError
	case errors.As(err, &he) && he.status == http.StatusUnauthorized:
		level = slog.LevelInfo
	}
	a.log.Log(r.Context(), level, "request refused", "trackingId", id, "method", r.Method,
		"path", r.URL.Path, "status", status, "errorCode", code, "err", err)
	body := provision.ErrorBody{ErrorCode: code, TrackingID: id, Message: message, TimestampUTC: a.now().UTC()}
	h := w.Header()
	h.Set(headerErrorCode, strconv.Itoa(code))
	if retryAfter > 0 {
		h.Set(headerRetryAfter, strconv.Itoa(retryAfter))
	}
	payload, merr := json.Marshal(body)
	if merr != nil { // cannot happen for this struct; answer without a body rather than loop
		a.log.Error("encode error body", "trackingId", id, "err", merr)
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Content-Length", strconv.Itoa(len(payload)))
	w.WriteHeader(status)
	_, _ = w.Write(payload)
}
