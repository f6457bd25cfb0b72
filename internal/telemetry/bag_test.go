package telemetry

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Examples from hub-edge-protocol §2.4.
const (
	// nodeModuleOutput is the Node SDK's topic for a module output.
	nodeModuleOutput = "devices/dev1/modules/mod1/messages/events/%24.on=output1&%24.mid=m-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&a%2Fb=x%26y/"
	// cC2DBag is the property bag of the C SDK tests' C2D topic (with a
	// concrete message ID).
	cC2DBag = "%24.mid=9a0f6e2c-1&%24.to=%2Fdevices%2FmyDeviceId%2Fmessages%2FdeviceBound&iothub-ack=full&customKey1=customValue1"
)

type props = map[string]string

func TestParseBag(t *testing.T) {
	tests := []struct {
		name    string
		bag     string
		sys     props
		app     props
		wantErr error
	}{
		{
			name: "node module output",
			bag:  "%24.on=output1&%24.mid=m-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&a%2Fb=x%26y",
			sys:  props{PropOutputName: "output1", PropMessageID: "m-1", PropContentType: "application/json", PropContentEncoding: "utf-8"},
			app:  props{"alert": "high temp", "a/b": "x&y"},
		},
		{
			name: "C SDK C2D",
			bag:  cC2DBag,
			sys:  props{PropMessageID: "9a0f6e2c-1", PropTo: "/devices/myDeviceId/messages/deviceBound", PropAck: "full"},
			app:  props{"customKey1": "customValue1"},
		},
		{
			name: "every system key",
			bag:  "%24.mid=1&%24.cid=2&%24.uid=3&%24.to=4&%24.exp=5&%24.ct=6&%24.ce=7&%24.on=8&%24.ifid=9&%24.sub=10&%24.ctime=11&%24.cdid=12&%24.cmid=13&iothub-ack=14",
			sys: props{PropMessageID: "1", PropCorrelationID: "2", PropUserID: "3", PropTo: "4", PropExpiryTime: "5", PropContentType: "6", PropContentEncoding: "7",
				PropOutputName: "8", PropInterfaceID: "9", PropComponentName: "10", PropCreationTime: "11", PropConnectionDeviceID: "12", PropConnectionModuleID: "13", PropAck: "14"},
		},
		{name: "empty", bag: ""},
		{name: "raw values (C SDK without URL encoding)", bag: "$.ct=application/json&$.ce=utf-8&temp=21.5 C", sys: props{PropContentType: "application/json", PropContentEncoding: "utf-8"}, app: props{"temp": "21.5 C"}},
		{name: "plus is not a space", bag: "a=1+2&b%2B=%2B", app: props{"a": "1+2", "b+": "+"}},
		{name: "invalid percent-encoding kept raw", bag: "pct=100%&x=%zz&y=%4&z=%41%", app: props{"pct": "100%", "x": "%zz", "y": "%4", "z": "%41%"}},
		{name: "lower-case hex", bag: "a=%2f%c3%a9", app: props{"a": "/é"}},
		{name: "pair without value", bag: "flag&a=", app: props{"flag": "", "a": ""}},
		{name: "empty pairs", bag: "&&a=1&", app: props{"a": "1"}},
		{name: "pair without name is ignored", bag: "=v&%20=w&a=1", app: props{"a": "1", " ": "w"}},
		{name: "value with '='", bag: "a=b=c", app: props{"a": "b=c"}},
		{name: "first occurrence wins", bag: "a=1&a=2&%24.mid=x&$.mid=y", sys: props{PropMessageID: "x"}, app: props{"a": "1"}},
		{name: "unknown system key kept", bag: "%24.foo=bar&%24.MID=upper", sys: props{"$.foo": "bar", "$.MID": "upper"}},
		{name: "dollar without dot is an application property", bag: "%24mid=1&$x=2", app: props{"$mid": "1", "$x": "2"}},
		{name: "iothub-ack is a system property", bag: "iothub-ack=none&iothub-other=x", sys: props{PropAck: "none"}, app: props{"iothub-other": "x"}},
		{name: "UTF-8", bag: "%C3%A9t%C3%A9=%F0%9D%84%9E&raw=é", app: props{"été": "𝄞", "raw": "é"}},
		{name: "escaped NUL", bag: "a=%00", wantErr: ErrInvalidBag},
		{name: "NUL in a name", bag: "a%00b=1", wantErr: ErrInvalidBag},
		{name: "raw NUL", bag: "a=\x00", wantErr: ErrInvalidBag},
		{name: "escaped invalid UTF-8", bag: "a=%FF", wantErr: ErrInvalidBag},
		{name: "raw invalid UTF-8 name", bag: "\xff=1", wantErr: ErrInvalidBag},
		{name: "too long", bag: "a=" + strings.Repeat("x", MaxBagBytes-1), wantErr: ErrTooLarge},
		{name: "longest", bag: "a=" + strings.Repeat("x", MaxBagBytes-2), app: props{"a": strings.Repeat("x", MaxBagBytes-2)}},
		{name: "too many properties", bag: manyPairs(MaxProperties + 1), wantErr: ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sys, app, err := ParseBag(tc.bag)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ParseBag = %v, %v, %v; want %v", sys, app, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBag: %v", err)
			}
			if sys == nil || app == nil {
				t.Errorf("ParseBag returned a nil map: %v, %v", sys, app)
			}
			if diff := cmp.Diff(tc.sys, sys, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("system properties (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.app, app, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("application properties (-want +got):\n%s", diff)
			}
		})
	}
}

func manyPairs(n int) string {
	pairs := make([]string, n)
	for i := range pairs {
		pairs[i] = fmt.Sprintf("p%d=%d", i, i)
	}
	return strings.Join(pairs, "&")
}

func TestParseBagMaxProperties(t *testing.T) {
	_, app, err := ParseBag(manyPairs(MaxProperties))
	if err != nil || len(app) != MaxProperties {
		t.Fatalf("ParseBag of %d properties = %d, %v", MaxProperties, len(app), err)
	}
}

func TestParseBagErrorNamesTheProperty(t *testing.T) {
	_, _, err := ParseBag("ok=1&bad=%FF")
	if err == nil || !strings.Contains(err.Error(), `property 2`) || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("error %v does not name property 2 %q", err, "bad")
	}
}

func TestEncodeBag(t *testing.T) {
	tests := []struct {
		name string
		sys  props
		app  props
		want string
	}{
		{
			name: "C SDK C2D example",
			sys:  props{PropMessageID: "9a0f6e2c-1", PropTo: "/devices/myDeviceId/messages/deviceBound", PropAck: "full"},
			app:  props{"customKey1": "customValue1"},
			want: cC2DBag,
		},
		{
			name: "node module output properties",
			sys:  props{PropOutputName: "output1", PropMessageID: "m-1", PropContentType: "application/json", PropContentEncoding: "utf-8"},
			app:  props{"alert": "high temp", "a/b": "x&y"},
			want: "%24.mid=m-1&%24.ct=application%2Fjson&%24.ce=utf-8&%24.on=output1&a%2Fb=x%26y&alert=high%20temp",
		},
		{
			name: "fixed system order",
			sys: props{PropConnectionModuleID: "13", PropConnectionDeviceID: "12", PropCreationTime: "11", PropComponentName: "10", PropInterfaceID: "9", PropOutputName: "8",
				PropContentEncoding: "7", PropContentType: "6", PropExpiryTime: "5", PropTo: "4", PropUserID: "3", PropCorrelationID: "2", PropMessageID: "1"},
			want: "%24.mid=1&%24.cid=2&%24.uid=3&%24.to=4&%24.exp=5&%24.ct=6&%24.ce=7&%24.on=8&%24.ifid=9&%24.sub=10&%24.ctime=11&%24.cdid=12&%24.cmid=13",
		},
		{name: "nothing", want: ""},
		{name: "hub-only properties left out", sys: props{PropEnqueuedTime: "2026-01-01T00:00:00Z", PropMessageSource: "Telemetry", "no-key": "x"}, want: ""},
		{name: "unknown dollar names sorted", sys: props{"$.zz": "2", "$.a/b": "1", "$.": "0"}, want: "%24.=0&%24.a%2Fb=1&%24.zz=2"},
		{name: "dollar alias of a known key left out", sys: props{"$.mid": "alias", PropMessageID: "m"}, want: "%24.mid=m"},
		{name: "reserved application names left out", app: props{"$.mid": "x", PropAck: "full", "": "empty", "ok": "1"}, want: "ok=1"},
		{name: "everything but unreserved is encoded", app: props{"k ~-._*'()!": "é/&=+%?#$ \t"}, want: "k%20~-._%2A%27%28%29%21=%C3%A9%2F%26%3D%2B%25%3F%23%24%20%09"},
		{name: "empty values", sys: props{PropMessageID: ""}, app: props{"a": ""}, want: "%24.mid=&a="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := EncodeBag(tc.sys, tc.app)
			if got != tc.want {
				t.Errorf("EncodeBag = %q; want %q", got, tc.want)
			}
			if strings.Contains(got, "/") {
				t.Errorf("EncodeBag = %q contains '/'", got)
			}
			if again := EncodeBag(tc.sys, tc.app); again != got {
				t.Errorf("EncodeBag is not deterministic: %q then %q", got, again)
			}
		})
	}
}

// TestBagRoundTrip checks that what EncodeBag writes ParseBag reads back.
func TestBagRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		sys, app props
	}{
		{"C2D", props{PropMessageID: "m", PropTo: "/devices/d/messages/deviceBound", PropAck: "full", PropExpiryTime: "2026-11-05T10:00:00Z"}, props{"a/b": "c&d=e", "é": "𝄞", "sp ace": "+%"}},
		{"input", props{PropConnectionDeviceID: "edge-1", PropConnectionModuleID: "$edgeHub", PropOutputName: "out", "$.custom": "x"}, props{"%24.mid": "looks escaped"}},
		{"empty", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sys, app, err := ParseBag(EncodeBag(tc.sys, tc.app))
			if err != nil {
				t.Fatalf("ParseBag: %v", err)
			}
			if diff := cmp.Diff(tc.sys, sys, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("system properties (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.app, app, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("application properties (-want +got):\n%s", diff)
			}
		})
	}
}
