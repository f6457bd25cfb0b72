package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/provision"
)

// deviceRegistration is the DeviceRegistration body of the device API.
// Unknown fields (csr, clientCertificateCsr, …) are ignored.
type deviceRegistration struct {
	RegistrationID string
	Payload        json.RawMessage // nil when absent or null
	HasTPM         bool
}

// tpmBody is the tpm object of a DeviceRegistration.
type tpmBody struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey"`
}

// decodeDeviceRegistration parses a DeviceRegistration body. An empty body
// (or JSON null) is an empty registration; anything else must be one JSON
// object whose registrationId, if present, is a string or null and whose
// tpm, if present, is an object or null.
func decodeDeviceRegistration(data []byte) (deviceRegistration, error) {
	var out deviceRegistration
	if len(bytes.TrimSpace(data)) == 0 {
		return out, nil
	}
	var raw struct {
		RegistrationID *string          `json:"registrationId"`
		Payload        json.RawMessage  `json:"payload"`
		TPM            *json.RawMessage `json:"tpm"`
	}
	if err := unmarshalStrict(data, &raw); err != nil {
		return out, err
	}
	if raw.RegistrationID != nil {
		out.RegistrationID = *raw.RegistrationID
	}
	if p := bytes.TrimSpace(raw.Payload); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		out.Payload = append(json.RawMessage(nil), p...)
	}
	if raw.TPM != nil && !bytes.Equal(bytes.TrimSpace(*raw.TPM), []byte("null")) {
		var t tpmBody
		if err := json.Unmarshal(*raw.TPM, &t); err != nil {
			return deviceRegistration{}, badRequest("request body field tpm must be an object with string endorsementKey and storageRootKey")
		}
		out.HasTPM = true
	}
	return out, nil
}

// unmarshalStrict decodes exactly one JSON value into v and turns decoding
// errors into 400s that name the offending field or offset.
func unmarshalStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("request body has data after its JSON value (at offset %d)", dec.InputOffset())
	}
	return nil
}

// jsonError describes a JSON decoding error safely.
func jsonError(err error) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	msg := "request body is not valid JSON"
	switch {
	case errors.As(err, &se):
		msg = fmt.Sprintf("request body is not valid JSON (offset %d: %s)", se.Offset, se.Error())
	case errors.As(err, &te) && te.Field == "":
		msg = fmt.Sprintf("request body must be %s, not %s", jsonKind(te.Type), article(te.Value))
	case errors.As(err, &te):
		msg = fmt.Sprintf("request body field %s must be %s, not %s", te.Field, jsonKind(te.Type), article(te.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		msg = "request body is truncated JSON"
	}
	return &httpError{status: http.StatusBadRequest, code: codeBadRequest, message: msg, err: err}
}

// jsonKind names the JSON type a Go type decodes from, with an article.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// article prefixes a JSON value description ("array", "number 5") with a or an.
func article(v string) string {
	if v != "" && strings.ContainsRune("aeiou", rune(v[0])) {
		return "an " + v
	}
	return "a " + v
}

// readBody reads a request body within the size limit prepare installed.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var me *http.MaxBytesError
		if errors.As(err, &me) {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		return nil, &httpError{status: http.StatusBadRequest, code: codeBadRequest,
			message: "request body could not be read", err: fmt.Errorf("read request body: %w", err)}
	}
	return data, nil
}

// deviceRequest builds the RegisterRequest common to the device routes.
func deviceRequest(r *http.Request) provision.RegisterRequest {
	req := provision.RegisterRequest{
		IDScope:        r.PathValue("idScope"),
		RegistrationID: r.PathValue("registrationId"),
		SAS:            strings.TrimSpace(r.Header.Get("Authorization")),
		Protocol:       "https",
		RemoteAddr:     r.RemoteAddr,
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.Chain = r.TLS.PeerCertificates
	}
	return req
}

// withBody adds a DeviceRegistration body to a request, checking that its
// registrationId, if any, names the path's registration ID.
func withBody(r *http.Request, req *provision.RegisterRequest) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	body, err := decodeDeviceRegistration(data)
	if err != nil {
		return err
	}
	if body.RegistrationID != "" && !strings.EqualFold(body.RegistrationID, req.RegistrationID) {
		return badRequest("registrationId %q in the body does not match %q in the request path", body.RegistrationID, req.RegistrationID)
	}
	req.BodyRegistrationID, req.Payload, req.HasTPM = body.RegistrationID, body.Payload, body.HasTPM
	return nil
}

// register is PUT /{idScope}/registrations/{registrationId}/register.
func (a *API) register(w http.ResponseWriter, r *http.Request) error {
	req := deviceRequest(r)
	if v := r.URL.Query().Get("forceRegistration"); v != "" {
		force, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("forceRegistration %.32q is not true or false", v)
		}
		req.Force = force
	}
	if err := withBody(r, &req); err != nil {
		return err
	}
	op, err := a.registrar.Register(r.Context(), req)
	if err != nil {
		return err
	}
	if op == nil {
		return errors.New("registrar returned neither an operation nor an error")
	}
	status := op.HTTPStatus()
	if status == http.StatusAccepted {
		w.Header().Set("Location", registerLocation(r))
	}
	return a.writeOperation(w, r, status, op)
}

// registerLocation is the absolute URL of a register request (spec §2.4).
func registerLocation(r *http.Request) string {
	u := url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
	return u.String()
}

// writeOperation answers with an operation status, adding Retry-After to 202s.
func (a *API) writeOperation(w http.ResponseWriter, r *http.Request, status int, op *provision.OperationStatus) error {
	if status == http.StatusAccepted {
		w.Header().Set(headerRetryAfter, strconv.Itoa(provision.RetryAfterSeconds))
	}
	a.writeJSON(w, r, status, op)
	return nil
}

// operationStatus is GET /{idScope}/registrations/{registrationId}/operations/{operationId}.
// A body (Node sends "{}") is ignored.
func (a *API) operationStatus(w http.ResponseWriter, r *http.Request) error {
	req := provision.OperationRequest{RegisterRequest: deviceRequest(r), OperationID: r.PathValue("operationId")}
	op, err := a.registrar.OperationStatus(r.Context(), req)
	if err != nil {
		return err
	}
	if op == nil {
		return errors.New("registrar returned neither an operation status nor an error")
	}
	return a.writeOperation(w, r, op.HTTPStatus(), op)
}

// registrationStatus is POST /{idScope}/registrations/{registrationId}.
func (a *API) registrationStatus(w http.ResponseWriter, r *http.Request) error {
	req := deviceRequest(r)
	if err := withBody(r, &req); err != nil {
		return err
	}
	res, err := a.registrar.RegistrationStatus(r.Context(), req)
	if err != nil {
		return err
	}
	if res == nil {
		return errors.New("registrar returned neither a registration result nor an error")
	}
	a.writeJSON(w, r, http.StatusOK, res)
	return nil
}
