package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/store"
)

// maxAttempts caps the limit query parameter of the attempt log routes.
const maxAttempts = 1000

// certificateBody is the body of PUT /certificates/{name} and
// POST /certificates/{name}/verify.
type certificateBody struct {
	Certificate string `json:"certificate"`
}

// decodeCertificate reads a {"certificate": "<PEM|base64>"} body.
func decodeCertificate(r *http.Request) (string, error) {
	var body certificateBody
	if err := decodeBody(r, &body, `{"certificate": "<PEM or base64>"}`); err != nil {
		return "", err
	}
	if strings.TrimSpace(body.Certificate) == "" {
		return "", badRequest("request body field certificate is required (PEM or base64)")
	}
	return body.Certificate, nil
}

// listCAs is GET /certificates: a JSON array of CA certificates.
func (a *API) listCAs(w http.ResponseWriter, r *http.Request) error {
	out, err := a.enrollments.ListCAs(r.Context())
	if err != nil {
		return err
	}
	if out == nil {
		out = []*enroll.CACertificate{}
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// putCA is PUT /certificates/{name} (If-Match optional).
func (a *API) putCA(w http.ResponseWriter, r *http.Request) error {
	cert, err := decodeCertificate(r)
	if err != nil {
		return err
	}
	out, err := a.enrollments.PutCA(r.Context(), r.PathValue("name"), cert, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// getCA is GET /certificates/{name}.
func (a *API) getCA(w http.ResponseWriter, r *http.Request) error {
	out, err := a.enrollments.GetCA(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// deleteCA is DELETE /certificates/{name}.
func (a *API) deleteCA(w http.ResponseWriter, r *http.Request) error {
	if err := a.enrollments.DeleteCA(r.Context(), r.PathValue("name"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	writeNoContent(w)
	return nil
}

// generateVerificationCode is POST /certificates/{name}/generateVerificationCode.
func (a *API) generateVerificationCode(w http.ResponseWriter, r *http.Request) error {
	out, err := a.enrollments.GenerateVerificationCode(r.Context(), r.PathValue("name"), r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// verifyCA is POST /certificates/{name}/verify.
func (a *API) verifyCA(w http.ResponseWriter, r *http.Request) error {
	cert, err := decodeCertificate(r)
	if err != nil {
		return err
	}
	out, err := a.enrollments.VerifyCA(r.Context(), r.PathValue("name"), cert, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// attemptLimit reads the limit query parameter (absent: the backend default).
func attemptLimit(r *http.Request) (int, error) {
	v := strings.TrimSpace(r.URL.Query().Get("limit"))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxAttempts {
		return 0, badRequest("limit %.32q is not an integer from 1 to %d", v, maxAttempts)
	}
	return n, nil
}

// registrationAttempts is GET /registrations/{id}/attempts: the newest
// attempts of one registration ID, newest first.
func (a *API) registrationAttempts(w http.ResponseWriter, r *http.Request) error {
	return a.attempts(w, r, enroll.Key(r.PathValue("id")))
}

// recentAttempts is GET /attempts: the newest attempts overall.
func (a *API) recentAttempts(w http.ResponseWriter, r *http.Request) error {
	return a.attempts(w, r, "")
}

func (a *API) attempts(w http.ResponseWriter, r *http.Request, registrationID string) error {
	limit, err := attemptLimit(r)
	if err != nil {
		return err
	}
	out, err := a.registrations.Attempts(r.Context(), registrationID, limit)
	if err != nil {
		return err
	}
	if out == nil {
		out = []store.Attempt{}
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// healthz is GET /healthz (no authorisation).
func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	a.writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}
