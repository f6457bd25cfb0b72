// Package hubclient owns Muster's client of a remote IoT hub's service REST
// API (Azure IoT Hub's shape, spec hub-edge-protocol §4.1, §4.2, §4.4), used
// by the provisioning service to allocate devices to a linked hub that runs
// in another process: another Muster or any compatible hub. A *Client is a
// provision.Hub: it creates or updates a device identity with the
// credential the device provisioned with, sets or replaces the identity's
// initial twin (tags and desired properties), reads a twin back for
// migration, and deletes identities.
//
// Every request carries a fresh service SAS token (one hour) signed with the
// connection string's policy key (the policy needs RegistryRead and
// RegistryWrite). This package is an adapter: it may import net/http, but no
// MQTT library or SQL driver, and it never logs or returns keys in errors.
package hubclient

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/muster-iot/muster/internal/client/svcconn"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/sas"
)

// APIVersion is the hub service api-version the client sends (that of the
// azure-iothub SDK).
const APIVersion = "2021-04-12"

// TokenTTL is the lifetime of the SAS token minted for each request.
const TokenTTL = time.Hour

// MaxResponseBytes caps the size of one response body the client reads.
const MaxResponseBytes = 4 << 20

// DefaultTimeout bounds one request when Options.HTTPClient is not set.
const DefaultTimeout = 30 * time.Second

// maxAttempts bounds the retries of a create or update that lost an etag
// race with another writer of the same identity or twin.
const maxAttempts = 3

// userAgent identifies the client to the hub.
const userAgent = "muster-hubclient/1"

// Options configure a Client.
type Options struct {
	// ConnectionString is the hub's service connection string:
	// HostName=<hub host>;SharedAccessKeyName=<policy>;SharedAccessKey=<base64>.
	// HostName is what devices are told (assignedHub), the tokens' resource
	// (sr), the Host header and, when a DNS name, the TLS server name.
	ConnectionString string
	// Address is the "host:port" to dial; empty means HostName:443, and a
	// host without a port gets port 443.
	Address string
	// RootCAs verifies the hub's certificate; nil means the system roots.
	// It is ignored when HTTPClient is set.
	RootCAs *x509.CertPool
	// HTTPClient, when set, sends every request (its transport then owns
	// TLS configuration and timeouts entirely).
	HTTPClient *http.Client
	// Now returns the current time for token expiry; nil means time.Now.
	Now func() time.Time
}

// Client calls one hub's service API. It is safe for concurrent use.
type Client struct {
	hostName string
	keyName  string
	key      []byte
	address  string
	hc       *http.Client
	now      func() time.Time
}

var _ provision.Hub = (*Client)(nil)

// New returns a client of the hub named by opts.ConnectionString.
func New(opts Options) (*Client, error) {
	cs, err := sas.ParseConnectionString(opts.ConnectionString)
	if err != nil {
		return nil, fmt.Errorf("parse hub connection string: %w", err)
	}
	if cs.SharedAccessKeyName == "" {
		return nil, errors.New("parse hub connection string: SharedAccessKeyName is missing (the hub service API needs a shared access policy's connection string)")
	}
	if cs.DeviceID != "" {
		return nil, errors.New("parse hub connection string: DeviceId is set; the hub service API needs a shared access policy's connection string, not a device's")
	}
	if strings.ContainsAny(cs.HostName, "/ ") {
		return nil, fmt.Errorf("parse hub connection string: HostName %q is not a host name", cs.HostName)
	}
	key, err := sas.DecodeKey(cs.SharedAccessKey)
	if err != nil {
		return nil, fmt.Errorf("parse hub connection string: SharedAccessKey: %w", err)
	}
	addr, err := svcconn.DialAddress(opts.Address, cs.HostName, "hub address")
	if err != nil {
		return nil, err
	}
	c := &Client{hostName: cs.HostName, keyName: cs.SharedAccessKeyName, key: key, address: addr, hc: opts.HTTPClient, now: opts.Now}
	if c.now == nil {
		c.now = time.Now
	}
	if c.hc == nil {
		c.hc = svcconn.NewHTTPClient(cs.HostName, opts.RootCAs, svcconn.HTTPOptions{MaxIdleConns: 64, Timeout: DefaultTimeout})
	}
	return c, nil
}

// HostName is the hub's host name (provision.Hub).
func (c *Client) HostName() string { return c.hostName }

// Address is the "host:port" the client dials.
func (c *Client) Address() string { return c.address }

// response is a completed exchange with a 2xx status.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to /{collection}/{id} and returns a 2xx answer or an
// *Error (any other status) or a transport error, each naming the hub and
// the call.
func (c *Client) do(ctx context.Context, method, collection, id string, body any, ifMatch string) (*response, error) {
	path := "/" + collection + "/" + id
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("hub %s: %s %s: encode request: %w", c.hostName, method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	u := &url.URL{
		Scheme:   "https",
		Host:     c.address,
		Path:     path,
		RawPath:  "/" + collection + "/" + url.PathEscape(id),
		RawQuery: url.Values{"api-version": {APIVersion}}.Encode(),
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("hub %s: %s %s: %w", c.hostName, method, path, err)
	}
	req.Host = c.hostName
	h := req.Header
	h.Set("Authorization", sas.Sign(c.hostName, c.key, c.keyName, c.now().Add(TokenTTL)))
	h.Set("Accept", "application/json")
	h.Set("User-Agent", userAgent)
	if body != nil {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	if ifMatch != "" {
		h.Set("If-Match", quoteETag(ifMatch))
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("hub %s: %s %s: %w", c.hostName, method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("hub %s: %s %s: read %d response: %w", c.hostName, method, path, res.StatusCode, err)
	}
	if len(data) > MaxResponseBytes {
		return nil, fmt.Errorf("hub %s: %s %s: %d response body is larger than %d bytes", c.hostName, method, path, res.StatusCode, MaxResponseBytes)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		e := ParseError(res.StatusCode, res.Header, data)
		e.Hub, e.Method, e.Path = c.hostName, method, path
		return nil, e
	}
	return &response{status: res.StatusCode, header: res.Header, body: data}, nil
}

// quoteETag puts an etag in quotes, as IoT hubs expect in If-Match.
func quoteETag(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v
	}
	return strconv.Quote(v)
}

// errRetry means a write lost a race with another writer: read again.
var errRetry = errors.New("hubclient: concurrent change")

// ProvisionDevice creates the device identity, or updates an existing
// one's credential and edge capability under its etag (provision.Hub).
// A created identity gets spec.Twin through a twin PATCH; an existing one
// keeps its twin unless spec.ReplaceTwin, which patches tags and desired
// properties to exactly spec.Twin's (keys not in it patched to null). If
// setting a new identity's twin fails, the identity is deleted again so a
// retried registration starts afresh.
func (c *Client) ProvisionDevice(ctx context.Context, spec provision.DeviceSpec) error {
	auth, err := authentication(spec.Auth)
	if err != nil {
		return fmt.Errorf("hub %s: provision device %s: %w", c.hostName, spec.DeviceID, err)
	}
	for range maxAttempts {
		created, err := c.putIdentity(ctx, spec, auth)
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil {
			return err
		}
		if !created && !spec.ReplaceTwin {
			return nil
		}
		if err := c.setTwin(ctx, spec.DeviceID, spec.Twin, created); err != nil {
			if created {
				if derr := c.DeleteDevice(context.WithoutCancel(ctx), spec.DeviceID); derr != nil {
					return errors.Join(err, fmt.Errorf("remove the identity whose twin could not be set: %w", derr))
				}
			}
			return err
		}
		return nil
	}
	return fmt.Errorf("hub %s: provision device %s: the identity kept changing concurrently (%d attempts)", c.hostName, spec.DeviceID, maxAttempts)
}

// authentication renders a DeviceAuth as the Device JSON authentication.
func authentication(a provision.DeviceAuth) (json.RawMessage, error) {
	type keys struct {
		PrimaryKey   string `json:"primaryKey"`
		SecondaryKey string `json:"secondaryKey"`
	}
	type thumbprints struct {
		PrimaryThumbprint   *string `json:"primaryThumbprint"`
		SecondaryThumbprint *string `json:"secondaryThumbprint"`
	}
	out := struct {
		Type           string      `json:"type"`
		SymmetricKey   *keys       `json:"symmetricKey,omitempty"`
		X509Thumbprint thumbprints `json:"x509Thumbprint"`
	}{Type: a.Type}
	switch a.Type {
	case provision.AuthSAS:
		if a.PrimaryKey == "" {
			return nil, errors.New("a sas device needs a primary key")
		}
		out.SymmetricKey = &keys{PrimaryKey: a.PrimaryKey, SecondaryKey: a.SecondaryKey}
	case provision.AuthSelfSigned:
		if a.PrimaryThumbprint == "" {
			return nil, errors.New("a selfSigned device needs a primary thumbprint")
		}
		p := a.PrimaryThumbprint
		out.X509Thumbprint.PrimaryThumbprint = &p
		if a.SecondaryThumbprint != "" {
			s := a.SecondaryThumbprint
			out.X509Thumbprint.SecondaryThumbprint = &s
		}
	case provision.AuthCertificateAuthority:
	default:
		return nil, fmt.Errorf("authentication type %q is not sas, selfSigned or certificateAuthority", a.Type)
	}
	return json.Marshal(out)
}

// putIdentity creates or updates the identity; created reports a create.
// errRetry means it lost a race and should be tried again.
func (c *Client) putIdentity(ctx context.Context, spec provision.DeviceSpec, auth json.RawMessage) (created bool, err error) {
	res, err := c.do(ctx, http.MethodGet, "devices", spec.DeviceID, nil, "")
	if errors.Is(err, ErrNotFound) {
		caps, _ := json.Marshal(map[string]bool{"iotEdge": spec.IoTEdge})
		body := map[string]json.RawMessage{
			"deviceId":       mustString(spec.DeviceID),
			"status":         mustString("enabled"),
			"authentication": auth,
			"capabilities":   caps,
		}
		_, err := c.do(ctx, http.MethodPut, "devices", spec.DeviceID, body, "")
		if errors.Is(err, ErrConflict) {
			return false, errRetry // created meanwhile: update it
		}
		return err == nil, err
	}
	if err != nil {
		return false, err
	}
	body, etag, err := decodeDevice(res.body)
	if err != nil {
		return false, fmt.Errorf("hub %s: GET /devices/%s: %w", c.hostName, spec.DeviceID, err)
	}
	caps := map[string]json.RawMessage{}
	if raw, ok := body["capabilities"]; ok && len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &caps); err != nil {
			return false, fmt.Errorf("hub %s: GET /devices/%s: capabilities is not an object: %w", c.hostName, spec.DeviceID, err)
		}
	}
	caps["iotEdge"] = json.RawMessage(strconv.FormatBool(spec.IoTEdge))
	capsJSON, err := json.Marshal(caps)
	if err != nil {
		return false, fmt.Errorf("hub %s: encode capabilities of %s: %w", c.hostName, spec.DeviceID, err)
	}
	body["authentication"] = auth
	body["capabilities"] = capsJSON
	if !spec.IoTEdge {
		// An edge device's own scope does not outlive its edge capability.
		var scope string
		if json.Unmarshal(body["deviceScope"], &scope) == nil && strings.HasPrefix(scope, "ms-azure-iot-edge://"+spec.DeviceID+"-") {
			body["deviceScope"] = mustString("")
		}
	}
	ifMatch := etag
	if ifMatch == "" {
		ifMatch = "*"
	}
	_, err = c.do(ctx, http.MethodPut, "devices", spec.DeviceID, body, ifMatch)
	if errors.Is(err, ErrPrecondition) || errors.Is(err, ErrNotFound) {
		return false, errRetry // changed or deleted meanwhile: look again
	}
	return false, err
}

// decodeDevice decodes a Device document, keeping every field (so an
// update sends back what this client does not know), and its etag.
func decodeDevice(data []byte) (map[string]json.RawMessage, string, error) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, "", fmt.Errorf("device is not a JSON object: %w", err)
	}
	if body == nil {
		return nil, "", errors.New("device is null")
	}
	var etag string
	if raw, ok := body["etag"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &etag); err != nil {
			return nil, "", fmt.Errorf("device etag is not a string: %w", err)
		}
	}
	return body, etag, nil
}

func mustString(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

// setTwin gives a twin spec's tags and desired properties: on a new
// identity by a plain merge patch, on an existing one by a patch that also
// removes what spec does not have, under the twin's etag.
func (c *Client) setTwin(ctx context.Context, deviceID string, spec *provision.TwinState, fresh bool) error {
	var want provision.TwinState
	if spec != nil {
		want = *spec
	}
	tags, err := decodeObject(want.Tags)
	if err != nil {
		return fmt.Errorf("hub %s: twin of %s: tags: %w", c.hostName, deviceID, err)
	}
	desired, err := decodeObject(want.Desired)
	if err != nil {
		return fmt.Errorf("hub %s: twin of %s: desired properties: %w", c.hostName, deviceID, err)
	}
	for range maxAttempts {
		var tagsPatch, desiredPatch map[string]any
		ifMatch := "*"
		if fresh {
			tagsPatch, desiredPatch = tags, desired
		} else {
			cur, etag, err := c.twin(ctx, deviceID)
			if err != nil {
				return err
			}
			if cur == nil {
				return fmt.Errorf("hub %s: twin of %s: %w: the device was deleted meanwhile", c.hostName, deviceID, ErrNotFound)
			}
			tagsPatch, desiredPatch = replacePatch(cur.tags, tags), replacePatch(cur.desired, desired)
			if etag != "" {
				ifMatch = etag
			}
		}
		if len(tagsPatch) == 0 && len(desiredPatch) == 0 {
			return nil
		}
		patch := map[string]any{}
		if len(tagsPatch) > 0 {
			patch["tags"] = tagsPatch
		}
		if len(desiredPatch) > 0 {
			patch["properties"] = map[string]any{"desired": desiredPatch}
		}
		_, err := c.do(ctx, http.MethodPatch, "twins", deviceID, patch, ifMatch)
		if errors.Is(err, ErrPrecondition) && !fresh {
			continue // the twin changed (a reported update, say): diff again
		}
		return err
	}
	return fmt.Errorf("hub %s: twin of %s kept changing concurrently (%d attempts)", c.hostName, deviceID, maxAttempts)
}

// twinParts are the service-writable parts of a twin.
type twinParts struct {
	tags, desired map[string]any
}

// twin reads a twin's tags and desired properties (without $version and
// $metadata) and its etag; nil when the device does not exist.
func (c *Client) twin(ctx context.Context, deviceID string) (*twinParts, string, error) {
	res, err := c.do(ctx, http.MethodGet, "twins", deviceID, nil, "")
	if errors.Is(err, ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	parts, etag, err := decodeTwin(res.body)
	if err != nil {
		return nil, "", fmt.Errorf("hub %s: GET /twins/%s: %w", c.hostName, deviceID, err)
	}
	return parts, etag, nil
}

// decodeTwin decodes a service twin document into its tags, desired
// properties (without the hub's $version and $metadata) and etag.
func decodeTwin(data []byte) (*twinParts, string, error) {
	var doc struct {
		ETag       *string         `json:"etag"`
		Tags       json.RawMessage `json:"tags"`
		Properties *struct {
			Desired json.RawMessage `json:"desired"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, "", fmt.Errorf("twin is not a JSON object of the expected shape: %w", err)
	}
	tags, err := decodeObject(doc.Tags)
	if err != nil {
		return nil, "", fmt.Errorf("twin tags: %w", err)
	}
	var desiredRaw json.RawMessage
	if doc.Properties != nil {
		desiredRaw = doc.Properties.Desired
	}
	desired, err := decodeObject(desiredRaw)
	if err != nil {
		return nil, "", fmt.Errorf("twin desired properties: %w", err)
	}
	delete(desired, "$version")
	delete(desired, "$metadata")
	etag := ""
	if doc.ETag != nil {
		etag = *doc.ETag
	}
	return &twinParts{tags: tags, desired: desired}, etag, nil
}

// decodeObject decodes a JSON object keeping numbers exact; empty or null
// is an empty object.
func decodeObject(raw json.RawMessage) (map[string]any, error) {
	m := map[string]any{}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return m, nil
	}
	if raw[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// replacePatch returns the JSON merge patch (RFC 7396) that turns cur into
// want: keys only in cur become null, objects on both sides are diffed
// recursively, and values that differ are replaced. Equal trees give an
// empty patch.
func replacePatch(cur, want map[string]any) map[string]any {
	patch := map[string]any{}
	for k := range cur {
		if _, ok := want[k]; !ok {
			patch[k] = nil
		}
	}
	for k, w := range want {
		c, ok := cur[k]
		wm, wIsObj := w.(map[string]any)
		cm, cIsObj := c.(map[string]any)
		switch {
		case ok && wIsObj && cIsObj:
			if sub := replacePatch(cm, wm); len(sub) > 0 {
				patch[k] = sub
			}
		case !ok || !jsonEqual(c, w):
			patch[k] = w
		}
	}
	return patch
}

// jsonEqual compares two decoded JSON values by their encoding.
func jsonEqual(a, b any) bool {
	ea, errA := json.Marshal(a)
	eb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ea, eb)
}

// DeviceTwin returns a device's tags and desired properties (without the
// hub's $version and $metadata), or nil, nil when the device does not
// exist (provision.Hub).
func (c *Client) DeviceTwin(ctx context.Context, deviceID string) (*provision.TwinState, error) {
	parts, _, err := c.twin(ctx, deviceID)
	if err != nil || parts == nil {
		return nil, err
	}
	tags, err := json.Marshal(parts.tags)
	if err != nil {
		return nil, fmt.Errorf("hub %s: encode tags of %s: %w", c.hostName, deviceID, err)
	}
	desired, err := json.Marshal(parts.desired)
	if err != nil {
		return nil, fmt.Errorf("hub %s: encode desired properties of %s: %w", c.hostName, deviceID, err)
	}
	return &provision.TwinState{Tags: tags, Desired: desired}, nil
}

// DeleteDevice deletes a device identity and its twin whatever their etag;
// a missing device is not an error (provision.Hub).
func (c *Client) DeleteDevice(ctx context.Context, deviceID string) error {
	_, err := c.do(ctx, http.MethodDelete, "devices", deviceID, nil, "*")
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
