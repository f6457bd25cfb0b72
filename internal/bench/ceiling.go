package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
)

// Ceiling names.
const (
	CeilingHMAC = "bare HMAC request rate"
	CeilingMTLS = "bare mTLS handshake rate"
)

// maxCeilingOps bounds the operations of one ceiling measurement; the
// duration is what ends it in practice.
const maxCeilingOps = 1 << 24

// ceilingServerTimeout bounds every connection of a ceiling server.
const ceilingServerTimeout = 30 * time.Second

// maxBareBody bounds the register request body the bare HMAC server reads.
const maxBareBody = 4 << 10

// Errors of the bare mTLS client.
var (
	errNoClientCert     = errors.New("the server saw no client certificate")
	errUnexpectedAnswer = errors.New("the server answered something else than its one byte")
)

// ceilingIdentity is the TLS server identity of both ceiling servers: an
// ECDSA P-256 certificate for 127.0.0.1 issued by a CA of its own, sent
// with that CA as Muster's server sends its chain.
type ceilingIdentity struct {
	cert  tls.Certificate
	roots *x509.CertPool
}

func newCeilingIdentity() (*ceilingIdentity, error) {
	ca, err := pki.NewRoot("Muster Bench Ceiling CA")
	if err != nil {
		return nil, fmt.Errorf("create ceiling server CA: %w", err)
	}
	leaf, err := ca.NewServer("127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("issue ceiling server certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &ceilingIdentity{
		cert:  tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw, ca.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert},
		roots: roots,
	}, nil
}

// hmacHandler is the bare HMAC ceiling's request handler. For
// PUT /{idScope}/registrations/{id}/register it parses the DPS SAS
// Authorization header, checks its expiry and resource, derives the device
// key from the group key, verifies the HMAC, decodes the small JSON body
// and answers 200 with a small "assigned" operation status — the least a
// DPS must do per symmetric-key request, without any storage.
type hmacHandler struct {
	idScope  string
	groupKey []byte
	now      func() time.Time
}

// bareOperation is the answer of the bare HMAC server.
type bareOperation struct {
	OperationID       string    `json:"operationId"`
	Status            string    `json:"status"`
	RegistrationState bareState `json:"registrationState"`
}

type bareState struct {
	RegistrationID string `json:"registrationId"`
	AssignedHub    string `json:"assignedHub"`
	DeviceID       string `json:"deviceId"`
	Status         string `json:"status"`
	Substatus      string `json:"substatus"`
}

// bareHub is the hub name in the bare server's answers.
const bareHub = "bare-ceiling.invalid"

func (h *hmacHandler) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("PUT /{scope}/registrations/{id}/register", h.register)
	return m
}

func (h *hmacHandler) register(w http.ResponseWriter, r *http.Request) {
	scope, id := r.PathValue("scope"), r.PathValue("id")
	if scope != h.idScope {
		bareError(w, http.StatusNotFound, 404201, "unknown ID scope")
		return
	}
	tok, err := sas.Parse(r.Header.Get("Authorization"))
	if err != nil {
		bareError(w, http.StatusUnauthorized, 401002, err.Error())
		return
	}
	if err := tok.CheckExpiry(h.now(), 0); err != nil {
		bareError(w, http.StatusUnauthorized, 401002, err.Error())
		return
	}
	res, err := tok.DecodedResource()
	if err != nil || !strings.EqualFold(res, scope+"/registrations/"+id) {
		bareError(w, http.StatusUnauthorized, 401002, "SAS resource does not name this registration")
		return
	}
	if !tok.VerifyKey(sas.Derive(h.groupKey, id)) {
		bareError(w, http.StatusUnauthorized, 401002, "SAS signature does not verify with the derived key")
		return
	}
	var body struct {
		RegistrationID string `json:"registrationId"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBareBody)).Decode(&body); err != nil {
		bareError(w, http.StatusBadRequest, 400004, "malformed register body")
		return
	}
	if !strings.EqualFold(body.RegistrationID, id) {
		bareError(w, http.StatusBadRequest, 400004, "body registrationId does not match the path")
		return
	}
	out, err := json.Marshal(bareOperation{
		OperationID: "bare." + id, Status: "assigned",
		RegistrationState: bareState{RegistrationID: id, AssignedHub: bareHub, DeviceID: id, Status: "assigned", Substatus: "initialAssignment"},
	})
	if err != nil {
		bareError(w, http.StatusInternalServerError, 500000, "encode answer")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(out)
}

func bareError(w http.ResponseWriter, status, code int, msg string) {
	b, _ := json.Marshal(struct {
		ErrorCode int    `json:"errorCode"`
		Message   string `json:"message"`
	}{code, msg})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// symmetricDevices are the registration IDs and base64 device keys of
// symmetric-key devices.
type symmetricDevices struct {
	ids  []string
	keys []string
}

// measureHMACCeiling runs load against an in-process bare HMAC server on
// loopback (HTTPS keep-alive, TLS 1.3), driven by the same device client
// as the registrations: every operation is one request.
func measureHMACCeiling(ctx context.Context, load Load, id *ceilingIdentity, idScope string, groupKey []byte, devs symmetricDevices, timeout time.Duration) (*Result, error) {
	h := &hmacHandler{idScope: idScope, groupKey: groupKey, now: time.Now}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the bare HMAC server: %w", err)
	}
	srv := &http.Server{
		Handler:           h.mux(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{id.cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}},
		ReadHeaderTimeout: ceilingServerTimeout,
		IdleTimeout:       ceilingServerTimeout,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	defer func() {
		_ = srv.Close()
		<-served
	}()

	cl, err := dpsclient.New(dpsclient.Options{
		Endpoint: ln.Addr().String(), IDScope: idScope, Transport: dpsclient.TransportHTTPS, RootCAs: id.roots,
		PollImmediately: true, RequestTimeout: timeout, MaxPolls: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("create the bare HMAC client: %w", err)
	}
	defer cl.Close()
	load.Ops = maxCeilingOps
	return load.Run(ctx, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		n := i % len(devs.ids)
		res, err := cl.Register(ctx, dpsclient.Device{RegistrationID: devs.ids[n], Credential: dpsclient.Credential{SymmetricKey: devs.keys[n]}})
		if err != nil {
			return err
		}
		if res.DeviceID != devs.ids[n] {
			return fmt.Errorf("bare HMAC answer for %q: %w: %q", devs.ids[n], ErrUnexpectedAssignment, res.DeviceID)
		}
		return nil
	})
}

// handshakeServer is the bare mTLS ceiling's server: it accepts, completes
// a TLS handshake that requests a client certificate (as Muster's listener
// does; the certificate is not verified), writes one byte and waits for
// the client to close.
type handshakeServer struct {
	ln  net.Listener
	cfg *tls.Config
	wg  sync.WaitGroup
}

func (s *handshakeServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.handle(c) })
	}
}

func (s *handshakeServer) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ceilingServerTimeout))
	tc := tls.Server(c, s.cfg)
	if err := tc.Handshake(); err != nil {
		return
	}
	if len(tc.ConnectionState().PeerCertificates) == 0 {
		return // the client reads EOF and counts an error
	}
	if _, err := tc.Write([]byte{1}); err != nil {
		return
	}
	var b [1]byte
	_, _ = tc.Read(b[:]) // until the client closes
}

// measureMTLSCeiling runs load against an in-process bare handshake server
// on loopback: each operation dials a fresh TCP connection, completes a
// TLS handshake presenting a device certificate chain (leaf and
// intermediate, cycling through certs), reads the server's byte and closes.
// The client TLS configuration is the device client's.
func measureMTLSCeiling(ctx context.Context, load Load, id *ceilingIdentity, certs []*tls.Certificate, timeout time.Duration) (*Result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the bare mTLS server: %w", err)
	}
	s := &handshakeServer{ln: ln, cfg: &tls.Config{
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"http/1.1"},
	}}
	served := make(chan struct{})
	go func() {
		s.serve()
		close(served)
	}()
	defer func() {
		_ = ln.Close()
		<-served
		s.wg.Wait()
	}()
	addr := ln.Addr().String()
	load.Ops = maxCeilingOps
	return load.Run(ctx, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cert := certs[i%len(certs)]
		d := &tls.Dialer{
			NetDialer: &net.Dialer{Timeout: timeout},
			Config: &tls.Config{
				RootCAs:              id.roots,
				ServerName:           "127.0.0.1",
				MinVersion:           tls.VersionTLS12,
				NextProtos:           []string{"http/1.1"},
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
			},
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("mTLS handshake with the bare server: %w", err)
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("read from the bare mTLS server: %w", errNoClientCert)
			}
			return fmt.Errorf("read from the bare mTLS server: %w", err)
		}
		if b[0] != 1 {
			return fmt.Errorf("read from the bare mTLS server: %w: %#x", errUnexpectedAnswer, b[0])
		}
		return nil
	})
}
