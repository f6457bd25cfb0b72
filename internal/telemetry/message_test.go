package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/store"
)

var testTime = time.Date(2026, 11, 5, 10, 0, 0, 123456789, time.UTC)

// msgOpts compares messages with bodies byte for byte (one reflective
// comparison per byte is far too slow for 256 KiB) and nil maps and
// message lists equal to empty ones.
func msgOpts() cmp.Option {
	return cmp.Options{
		cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) }),
		cmp.FilterValues(func(a, b map[string]string) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore()),
		cmp.FilterValues(func(a, b []Message) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore()),
	}
}

func TestNewMessage(t *testing.T) {
	local := testTime.In(time.FixedZone("UTC+1", 60*60))
	tests := []struct {
		name    string
		device  string
		module  string
		bag     string
		body    []byte
		want    Message
		wantErr error
	}{
		{
			name: "module output", device: "dev1", module: "mod1",
			bag:  "%24.on=output1&%24.mid=m-1&%24.ct=application%2Fjson&alert=high%20temp",
			body: []byte(`{"temp":80}`),
			want: Message{DeviceID: "dev1", ModuleID: "mod1", EnqueuedTime: testTime,
				SystemProperties: props{PropOutputName: "output1", PropMessageID: "m-1", PropContentType: "application/json", PropConnectionDeviceID: "dev1", PropConnectionModuleID: "mod1"},
				Properties:       props{"alert": "high temp"}, Body: []byte(`{"temp":80}`)},
		},
		{
			name: "spoofed connection IDs are replaced", device: "dev1",
			bag:  "%24.cdid=other&%24.cmid=other-module",
			want: Message{DeviceID: "dev1", EnqueuedTime: testTime, SystemProperties: props{PropConnectionDeviceID: "dev1"}},
		},
		{
			name: "empty body and bag", device: "dev1",
			want: Message{DeviceID: "dev1", EnqueuedTime: testTime, SystemProperties: props{PropConnectionDeviceID: "dev1"}},
		},
		{name: "largest body", device: "d", body: make([]byte, MaxBodyBytes),
			want: Message{DeviceID: "d", EnqueuedTime: testTime, SystemProperties: props{PropConnectionDeviceID: "d"}, Body: make([]byte, MaxBodyBytes)}},
		{name: "body too large", device: "d", body: make([]byte, MaxBodyBytes+1), wantErr: ErrTooLarge},
		{name: "bad bag", device: "d", bag: "a=%FF", wantErr: ErrInvalidBag},
		{name: "bag too large", device: "d", bag: manyPairs(MaxProperties + 1), wantErr: ErrTooLarge},
		{name: "bad device ID", device: "bad id", wantErr: ErrInvalidMessage},
		{name: "empty device ID", device: "", wantErr: ErrInvalidMessage},
		{name: "bad module ID", device: "d", module: "m/1", wantErr: ErrInvalidMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMessage(tc.device, tc.module, tc.bag, tc.body, local)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("NewMessage = %+v, %v; want %v", m, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewMessage: %v", err)
			}
			if diff := cmp.Diff(tc.want, m, msgOpts()); diff != "" {
				t.Errorf("NewMessage (-want +got):\n%s", diff)
			}
			if m.EnqueuedTime.Location() != time.UTC {
				t.Errorf("enqueued time %v is not UTC", m.EnqueuedTime)
			}
		})
	}
}

func TestNewMessageCopiesBody(t *testing.T) {
	body := []byte("abc")
	m, err := NewMessage("d", "", "", body, testTime)
	if err != nil {
		t.Fatal(err)
	}
	body[0] = 'x'
	if string(m.Body) != "abc" {
		t.Errorf("body = %q after the caller reused its buffer; want a copy", m.Body)
	}
}

func TestMessageValidate(t *testing.T) {
	valid := Message{DeviceID: "d", EnqueuedTime: testTime}
	tests := []struct {
		name    string
		change  func(m *Message)
		wantErr error
	}{
		{"valid", func(m *Message) {}, nil},
		{"no enqueued time", func(m *Message) { m.EnqueuedTime = time.Time{} }, ErrInvalidMessage},
		{"bad device", func(m *Message) { m.DeviceID = "a/b" }, ErrInvalidMessage},
		{"too many properties", func(m *Message) {
			m.Properties = props{}
			m.SystemProperties = props{PropMessageID: "x"}
			for i := range MaxProperties {
				m.Properties[strings.Repeat("k", i+1)] = ""
			}
		}, ErrTooLarge},
		{"properties too long", func(m *Message) { m.Properties = props{"a": strings.Repeat("v", MaxBagBytes)} }, ErrTooLarge},
		{"NUL in a value", func(m *Message) { m.SystemProperties = props{PropMessageID: "a\x00"} }, ErrInvalidBag},
		{"invalid UTF-8 name", func(m *Message) { m.Properties = props{"\xff": "v"} }, ErrInvalidBag},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := valid
			tc.change(&m)
			err := m.Validate()
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Validate = %v; want %v", err, tc.wantErr)
			}
			if _, entryErr := m.Entry(); (entryErr == nil) != (err == nil) {
				t.Errorf("Entry error %v disagrees with Validate %v", entryErr, err)
			}
		})
	}
}

func TestMessageEntryRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"full", Message{DeviceID: "dev1", ModuleID: "$edgeHub", EnqueuedTime: testTime,
			SystemProperties: props{PropMessageID: "m", PropConnectionDeviceID: "dev1", "$.custom": "<&>"},
			Properties:       props{"é": "𝄞", "empty": ""}, Body: []byte{0, 1, 0xff}}},
		{"bare", Message{DeviceID: "d", EnqueuedTime: testTime}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.m.Entry()
			if err != nil {
				t.Fatalf("Entry: %v", err)
			}
			if e.Key != tc.m.DeviceID || e.Sub != tc.m.ModuleID || !e.Time.Equal(tc.m.EnqueuedTime) || !json.Valid(e.Doc) {
				t.Errorf("Entry = %+v", e)
			}
			e.Seq = 42
			got, err := MessageFromEntry(e)
			if err != nil {
				t.Fatalf("MessageFromEntry: %v", err)
			}
			want := tc.m
			want.Seq = 42
			if diff := cmp.Diff(want, got, msgOpts()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := MessageFromEntry(store.StreamEntry{Seq: 7, Doc: json.RawMessage(`[1]`)}); err == nil || !strings.Contains(err.Error(), "message 7") {
		t.Errorf("MessageFromEntry of a bad document = %v; want an error naming message 7", err)
	}
}

func TestAnnotations(t *testing.T) {
	m := Message{DeviceID: "dev1", ModuleID: "mod1", EnqueuedTime: testTime, SystemProperties: props{PropMessageID: "m", PropConnectionDeviceID: "stale"}}
	want := props{
		PropMessageID:          "m",
		PropConnectionDeviceID: "dev1",
		PropConnectionModuleID: "mod1",
		PropEnqueuedTime:       "2026-11-05T10:00:00.123456789Z",
		PropMessageSource:      "Telemetry",
	}
	if diff := cmp.Diff(want, m.Annotations()); diff != "" {
		t.Errorf("Annotations (-want +got):\n%s", diff)
	}
	if m.SystemProperties[PropConnectionDeviceID] != "stale" {
		t.Errorf("Annotations changed the message's own map")
	}
}
