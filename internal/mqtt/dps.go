package mqtt

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	cmqtt "github.com/wind-c/comqtt/v2/mqtt"

	"github.com/muster-iot/muster/internal/provision"
)

// DPS is the provisioning service as the MQTT transport uses it.
type DPS interface {
	// Register runs a device registration (PUT iotdps-register).
	Register(ctx context.Context, req provision.RegisterRequest) (*provision.OperationStatus, error)
	// OperationStatus answers a poll (GET iotdps-get-operationstatus).
	OperationStatus(ctx context.Context, req provision.OperationRequest) (*provision.OperationStatus, error)
}

// dpsSession is the state of one DPS connection. Credentials are kept as
// presented and checked by DPS with every request.
type dpsSession struct {
	user   DPSUsername
	sas    string // CONNECT password; never logged
	chain  []*x509.Certificate
	remote string
	// sem bounds the connection's concurrent requests.
	sem chan struct{}
}

// dispatchDPS runs a request on its own goroutine so that DPS latency never
// blocks the connection's read loop; it waits (stopping the read loop) only
// while maxRequestsPerConn requests of the connection are running.
func (s *Server) dispatchDPS(cl *cmqtt.Client, d *dpsSession, req DPSRequest, body []byte) {
	select {
	case d.sem <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	if !s.enter() {
		<-d.sem
		return
	}
	go func() {
		defer s.wg.Done()
		defer func() { <-d.sem }()
		defer func() {
			if v := recover(); v != nil {
				s.panics.Add(1)
				s.log.Error("panic serving DPS request", "registrationId", d.user.RegistrationID, "rid", req.RID,
					"panic", v, "stack", string(debug.Stack()))
			}
		}()
		s.serveDPS(cl, d, req, body)
	}()
}

// serveDPS asks DPS and answers on the requesting connection only.
func (s *Server) serveDPS(cl *cmqtt.Client, d *dpsSession, req DPSRequest, body []byte) {
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	base := provision.RegisterRequest{
		IDScope:        d.user.IDScope,
		RegistrationID: d.user.RegistrationID,
		SAS:            d.sas,
		Chain:          d.chain,
		Protocol:       "mqtt",
		RemoteAddr:     d.remote,
	}
	var (
		st  *provision.OperationStatus
		err error
	)
	switch req.Kind {
	case RequestRegister:
		if err = parseDeviceRegistration(body, &base); err == nil {
			st, err = s.dps.Register(ctx, base)
		}
	case RequestOperationStatus: // the payload is ignored (Node and Python send a space)
		if req.OperationID == "" {
			err = provision.BadRequest("the operationId topic parameter is missing")
		} else {
			st, err = s.dps.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: base, OperationID: req.OperationID})
		}
	default:
		err = fmt.Errorf("serve DPS request: unknown request kind %v", req.Kind)
	}
	status, retryAfter, payload := s.renderDPS(st, err, d, req)
	topic := dpsResponseTopic(status, req.RID, retryAfter)
	if err := s.deliver(cl, topic, payload, 1); err != nil {
		s.log.Info("DPS response not delivered", "registrationId", d.user.RegistrationID, "request", req.Kind,
			"rid", req.RID, "status", status, "remote", d.remote, "err", err)
		return
	}
	s.log.Debug("DPS request answered", "registrationId", d.user.RegistrationID, "request", req.Kind,
		"rid", req.RID, "status", status, "remote", d.remote)
}

// deviceRegistration is the DeviceRegistration body of a register request.
type deviceRegistration struct {
	RegistrationID *string         `json:"registrationId"`
	Payload        json.RawMessage `json:"payload"`
	TPM            json.RawMessage `json:"tpm"`
}

// parseDeviceRegistration fills the body fields of req. The body may be
// empty (C#), carry "payload": null (Python) or omit registrationId; a
// body registrationId that differs from the username's is left to DPS,
// which answers 400 and logs the attempt.
func parseDeviceRegistration(body []byte, req *provision.RegisterRequest) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	var dr deviceRegistration
	if err := json.Unmarshal(body, &dr); err != nil {
		return provision.BadRequest("the register request body is not a DeviceRegistration JSON object")
	}
	if dr.RegistrationID != nil {
		req.BodyRegistrationID = *dr.RegistrationID
	}
	if len(dr.Payload) > 0 && !bytes.Equal(dr.Payload, []byte("null")) {
		req.Payload = dr.Payload
	}
	req.HasTPM = len(dr.TPM) > 0 && !bytes.Equal(dr.TPM, []byte("null"))
	return nil
}

// renderDPS turns DPS's answer into the response status, retry-after and
// JSON body (ASCII only: Node decodes the payload as ascii).
func (s *Server) renderDPS(st *provision.OperationStatus, err error, d *dpsSession, req DPSRequest) (status, retryAfter int, body []byte) {
	if err == nil && st == nil {
		err = errors.New("DPS returned neither an operation status nor an error")
	}
	if err == nil {
		b, merr := json.Marshal(st)
		if merr == nil {
			status = st.HTTPStatus()
			if status == 202 {
				retryAfter = provision.RetryAfterSeconds
			}
			return status, retryAfter, asciiJSON(b)
		}
		err = fmt.Errorf("encode operation status: %w", merr)
	}
	var pe *provision.Error
	if !errors.As(err, &pe) || pe.Status < 100 || pe.Status > 599 {
		s.log.Error("DPS request failed", "registrationId", d.user.RegistrationID, "request", req.Kind,
			"rid", req.RID, "remote", d.remote, "err", err)
		pe = provision.ErrInternal
	}
	status = pe.Status
	if status == 429 || status >= 500 {
		retryAfter = pe.RetryAfter
		if retryAfter <= 0 {
			retryAfter = provision.RetryAfterSeconds
		}
	}
	b, merr := json.Marshal(pe.Body(newTrackingID(), s.now()))
	if merr != nil { // an ErrorBody of strings and a time always encodes
		s.log.Error("encode DPS error body", "err", merr)
		b = []byte(`{"errorCode":500000,"message":"Internal error"}`)
		status = 500
	}
	return status, retryAfter, asciiJSON(b)
}

// newTrackingID returns a random UUID (version 4) for an error body.
func newTrackingID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
