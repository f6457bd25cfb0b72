package dpsclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		want    Options // IDScope, Now and Logger are not compared
		urlHost string
	}{
		{
			name: "https defaults",
			opts: Options{Endpoint: "global.azure-devices-provisioning.net", IDScope: testScope},
			want: Options{Endpoint: "global.azure-devices-provisioning.net:443", Transport: "https", ServerName: "global.azure-devices-provisioning.net",
				APIVersion: DefaultAPIVersion, TokenTTL: DefaultTokenTTL, PollInterval: DefaultPollInterval,
				RequestTimeout: DefaultRequestTimeout, MaxPolls: DefaultMaxPolls},
			urlHost: "global.azure-devices-provisioning.net",
		},
		{
			name: "mqtt default port, explicit values kept",
			opts: Options{Endpoint: "dps.example", IDScope: testScope, Transport: "MQTT", APIVersion: "2021-06-01", ServerName: "other.example",
				TokenTTL: time.Minute, PollInterval: time.Second, RequestTimeout: time.Second, MaxPolls: 5, UserAgent: "ua/1"},
			want: Options{Endpoint: "dps.example:8883", Transport: "mqtt", ServerName: "other.example", APIVersion: "2021-06-01",
				TokenTTL: time.Minute, PollInterval: time.Second, RequestTimeout: time.Second, MaxPolls: 5, UserAgent: "ua/1"},
			urlHost: "dps.example:8883",
		},
		{
			name: "https URL with port",
			opts: Options{Endpoint: "https://127.0.0.1:8443/", IDScope: testScope},
			want: Options{Endpoint: "127.0.0.1:8443", Transport: "https", ServerName: "127.0.0.1", APIVersion: DefaultAPIVersion,
				TokenTTL: DefaultTokenTTL, PollInterval: DefaultPollInterval, RequestTimeout: DefaultRequestTimeout, MaxPolls: DefaultMaxPolls},
			urlHost: "127.0.0.1:8443",
		},
		{
			name: "bare IPv6 address",
			opts: Options{Endpoint: "::1", IDScope: testScope},
			want: Options{Endpoint: "[::1]:443", Transport: "https", ServerName: "::1", APIVersion: DefaultAPIVersion,
				TokenTTL: DefaultTokenTTL, PollInterval: DefaultPollInterval, RequestTimeout: DefaultRequestTimeout, MaxPolls: DefaultMaxPolls},
			urlHost: "[::1]",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			got := c.opts
			got.Endpoint = c.hostPort
			got.IDScope, got.Now, got.Logger = "", nil, nil
			if tc.want.UserAgent == "" {
				if !strings.HasPrefix(got.UserAgent, "muster-dpsclient/") {
					t.Errorf("default UserAgent = %q", got.UserAgent)
				}
				got.UserAgent = ""
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if c.urlHost != tc.urlHost {
				t.Errorf("urlHost = %q, want %q", c.urlHost, tc.urlHost)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	ok := Options{Endpoint: "dps.example", IDScope: testScope}
	tests := []struct {
		name string
		mod  func(*Options)
	}{
		{"empty endpoint", func(o *Options) { o.Endpoint = "" }},
		{"endpoint with path", func(o *Options) { o.Endpoint = "https://dps.example/api" }},
		{"endpoint with http scheme", func(o *Options) { o.Endpoint = "http://dps.example" }},
		{"endpoint with bad port", func(o *Options) { o.Endpoint = "dps.example:99999" }},
		{"endpoint with empty host", func(o *Options) { o.Endpoint = ":443" }},
		{"endpoint with junk", func(o *Options) { o.Endpoint = "dps example" }},
		{"endpoint with several colons", func(o *Options) { o.Endpoint = "a:b:c" }},
		{"empty scope", func(o *Options) { o.IDScope = "" }},
		{"scope with slash", func(o *Options) { o.IDScope = "0ne/1" }},
		{"unknown transport", func(o *Options) { o.Transport = "amqp" }},
		{"negative TTL", func(o *Options) { o.TokenTTL = -time.Second }},
		{"negative poll interval", func(o *Options) { o.PollInterval = -time.Second }},
		{"negative request timeout", func(o *Options) { o.RequestTimeout = -time.Second }},
		{"negative max polls", func(o *Options) { o.MaxPolls = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mod(&o)
			if c, err := New(o); err == nil {
				c.Close()
				t.Fatalf("New(%+v) succeeded, want an error", o)
			}
		})
	}
}

func TestRegisterInvalidDevice(t *testing.T) {
	p := newTestPKI(t, "")
	noCN := p.device.tlsCert()
	key, _ := newKey(t)
	tests := []struct {
		name string
		d    Device
	}{
		{"no credential", Device{RegistrationID: "dev-1"}},
		{"both credentials", Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: key, Certificate: noCN}}},
		{"bad key", Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: "not base64!"}}},
		{"empty registration ID", Device{Credential: Credential{SymmetricKey: key}}},
		{"registration ID with slash", Device{RegistrationID: "dev/1", Credential: Credential{SymmetricKey: key}}},
		{"registration ID too long", Device{RegistrationID: strings.Repeat("a", 129), Credential: Credential{SymmetricKey: key}}},
		{"payload not JSON", Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: key}, Payload: json.RawMessage(`{`)}},
		{"certificate without CN", Device{Credential: Credential{Certificate: noCN}}},
		{"certificate without key", Device{RegistrationID: "dev-1", Credential: Credential{Certificate: &tls.Certificate{Certificate: noCN.Certificate}}}},
	}
	c, err := New(Options{Endpoint: "127.0.0.1:1", IDScope: testScope})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Register(context.Background(), tc.d); !errors.Is(err, ErrInvalidDevice) {
				t.Errorf("Register = %v, want ErrInvalidDevice", err)
			}
		})
	}
}

func TestNewStatusError(t *testing.T) {
	tests := []struct {
		name string
		r    reply
		want *StatusError
	}{
		{"json body", reply{status: 401, body: []byte(bodyUnauth)},
			&StatusError{Status: 401, ErrorCode: 401002, Message: "Unauthorized", TrackingID: "f40da7ba-8c91-4796-8fc3-89e1dfbdbe05"}},
		{"header tracking ID when the body has none", reply{status: 500, body: []byte(`{"errorCode":500000,"message":"x"}`), trackingID: "req-1"},
			&StatusError{Status: 500, ErrorCode: 500000, Message: "x", TrackingID: "req-1"}},
		{"IoT Hub style Message", reply{status: 400, body: []byte(`{"Message":"ErrorCode:ArgumentInvalid;bad"}`)},
			&StatusError{Status: 400, Message: "ErrorCode:ArgumentInvalid;bad"}},
		{"retry-after kept", reply{status: 429, body: []byte(bodyThrottled), retryAfter: 3 * time.Second, hasRetryAfter: true},
			&StatusError{Status: 429, ErrorCode: 429001, Message: "Too many requests", TrackingID: "t-429", RetryAfter: 3 * time.Second}},
		{"errorCode of another type", reply{status: 400, body: []byte(`{"errorCode":[1],"message":"m"}`)},
			&StatusError{Status: 400, ErrorCode: 0, Message: "m"}},
		{"html", reply{status: 502, body: []byte("<html>\r\n<body>Bad Gateway</body></html>")},
			&StatusError{Status: 502, Message: "<html>  <body>Bad Gateway</body></html>"}},
		{"binary", reply{status: 500, body: []byte{0xff, 0x01, 'o', 'k'}},
			&StatusError{Status: 500, Message: "\uFFFD\uFFFDok"}},
		{"long text truncated", reply{status: 500, body: []byte(strings.Repeat("x", 300))},
			&StatusError{Status: 500, Message: strings.Repeat("x", maxMessageLen) + "…"}},
		{"json with empty message", reply{status: 403, body: []byte(`{"errorCode":403000}`)},
			&StatusError{Status: 403, ErrorCode: 403000, Message: "Forbidden"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, newStatusError(tc.r)); diff != "" {
				t.Errorf("newStatusError (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"status error", &StatusError{Status: 401, ErrorCode: 401002, Message: "Unauthorized", TrackingID: "t1"},
			"dps answered status 401 (errorCode 401002): Unauthorized [trackingId t1]"},
		{"status error without details", &StatusError{Status: 500}, "dps answered status 500"},
		{"failed", &FailedError{Status: "failed", ErrorCode: 400209, Message: "boom", State: stateOf(t, bodyFailed)},
			`registration of "dev-1" ended failed (errorCode 400209): boom`},
		{"disabled without state", &FailedError{Status: "disabled", Message: "off"}, "registration ended disabled: off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzNewStatusError(f *testing.F) {
	for _, b := range []string{bodyUnauth, bodyStringCode, `{"errorCode":1e99}`, "<html>", "", "\xff\xfe", `{"message":` + strings.Repeat(`"`, 3)} {
		f.Add(429, b)
	}
	f.Fuzz(func(t *testing.T, status int, body string) {
		se := newStatusError(reply{status: status, body: []byte(body)})
		if se.Status != status {
			t.Fatalf("status %d became %d", status, se.Status)
		}
		if !utf8.ValidString(se.Message) && !json.Valid([]byte(body)) {
			t.Fatalf("message %q of a non-JSON body is not valid UTF-8", se.Message)
		}
		if se.Error() == "" {
			t.Fatal("empty error text")
		}
	})
}

// scriptExchanger is an in-memory exchanger replaying replies.
type scriptExchanger struct {
	replies []reply
	n       int
}

func (s *scriptExchanger) next() (reply, error) {
	if s.n >= len(s.replies) {
		return reply{}, errors.New("script exhausted")
	}
	r := s.replies[s.n]
	s.n++
	return r, nil
}
func (s *scriptExchanger) register(context.Context) (reply, error)     { return s.next() }
func (s *scriptExchanger) poll(context.Context, string) (reply, error) { return s.next() }
func (s *scriptExchanger) close() error                                { return nil }

// FuzzRun feeds arbitrary answers to the registration state machine: it
// must end with either a usable assigned result or an error, within the
// poll limit.
func FuzzRun(f *testing.F) {
	f.Add(202, []byte(bodyAssigning), uint8(1), 200, []byte(bodyAssigned))
	f.Add(429, []byte(bodyThrottled), uint8(0), 200, []byte(bodyFailed))
	f.Add(200, []byte(bodyNoHub), uint8(0), 200, []byte(bodyWeird))
	f.Add(202, []byte(`{"operationId":"x","status":"ASSIGNING"}`), uint8(200), 500, []byte("oops"))
	f.Fuzz(func(t *testing.T, s1 int, b1 []byte, ra uint8, s2 int, b2 []byte) {
		c, err := New(Options{Endpoint: "127.0.0.1:1", IDScope: testScope, MaxPolls: 3})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		c.sleep = rec.sleep
		ex := &scriptExchanger{replies: []reply{
			{status: s1, body: b1, retryAfter: time.Duration(ra) * time.Second, hasRetryAfter: ra%2 == 0},
			{status: s2, body: b2}, {status: s2, body: b2}, {status: s2, body: b2},
		}}
		res, err := c.run(context.Background(), ex, "dev-1")
		if (res == nil) == (err == nil) {
			t.Fatalf("run = %v, %v: want exactly one of result and error", res, err)
		}
		if res != nil && (res.AssignedHub == "" || res.DeviceID == "") {
			t.Fatalf("assigned result without hub or device ID: %+v", res)
		}
		if ex.n > 4 {
			t.Fatalf("%d requests, more than 1 + MaxPolls", ex.n)
		}
		for _, w := range rec.got() {
			if w < MinWait || w > MaxWait {
				t.Fatalf("wait %v outside [%v, %v]", w, MinWait, MaxWait)
			}
		}
	})
}
