package dpsclient

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseResponseTopic(t *testing.T) {
	type result struct {
		Status     int
		RID        string
		RetryAfter time.Duration
		HasRA      bool
		Err        bool
	}
	tests := []struct {
		name  string
		topic string
		want  result
	}{
		{"202 with retry-after (real DPS capture)", "$dps/registrations/res/202/?$rid=1&retry-after=3", result{202, "1", 3 * time.Second, true, false}},
		{"200 without retry-after", "$dps/registrations/res/200/?$rid=7", result{200, "7", 0, false, false}},
		{"uuid rid", "$dps/registrations/res/401/?$rid=0b5e0c3a-2e0f-4a59-9d8c-58b7b8b6a1a2", result{401, "0b5e0c3a-2e0f-4a59-9d8c-58b7b8b6a1a2", 0, false, false}},
		{"url-encoded rid", "$dps/registrations/res/200/?$rid=a%20b%26c", result{200, "a b&c", 0, false, false}},
		{"retry-after before rid", "$dps/registrations/res/429/?retry-after=5&$rid=9", result{429, "9", 5 * time.Second, true, false}},
		{"Retry-After key case-insensitive", "$dps/registrations/res/503/?$rid=9&Retry-After=2", result{503, "9", 2 * time.Second, true, false}},
		{"retry-after zero", "$dps/registrations/res/202/?$rid=1&retry-after=0", result{202, "1", 0, true, false}},
		{"malformed retry-after treated as absent", "$dps/registrations/res/202/?$rid=1&retry-after=soon", result{202, "1", 0, false, false}},
		{"huge retry-after capped", "$dps/registrations/res/202/?$rid=1&retry-after=99999999999999999999999", result{202, "1", maxRetryAfterSeconds * time.Second, true, false}},
		{"unknown parameter ignored", "$dps/registrations/res/200/?$rid=1&x=y&flag", result{200, "1", 0, false, false}},
		{"no slash before query", "$dps/registrations/res/200?$rid=1", result{200, "1", 0, false, false}},
		{"wrong prefix", "$dps/registrations/PUT/iotdps-register/?$rid=1", result{Err: true}},
		{"hub topic", "$iothub/twin/res/200/?$rid=1", result{Err: true}},
		{"no rid", "$dps/registrations/res/200/?retry-after=1", result{Err: true}},
		{"no query", "$dps/registrations/res/200/", result{Err: true}},
		{"empty rid", "$dps/registrations/res/200/?$rid=", result{Err: true}},
		{"duplicate rid", "$dps/registrations/res/200/?$rid=1&$rid=2", result{Err: true}},
		{"bad rid escape", "$dps/registrations/res/200/?$rid=%zz", result{Err: true}},
		{"status not numeric", "$dps/registrations/res/abc/?$rid=1", result{Err: true}},
		{"status too short", "$dps/registrations/res/20/?$rid=1", result{Err: true}},
		{"status too long", "$dps/registrations/res/2000/?$rid=1", result{Err: true}},
		{"status out of range", "$dps/registrations/res/099/?$rid=1", result{Err: true}},
		{"signed status", "$dps/registrations/res/+20/?$rid=1", result{Err: true}},
		{"empty", "", result{Err: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, rid, ra, hasRA, err := parseResponseTopic(tc.topic)
			got := result{status, rid, ra, hasRA, err != nil}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseResponseTopic(%q) (-want +got):\n%s (err %v)", tc.topic, diff, err)
			}
			s2, r2, ra2, err2 := ParseResponseTopic(tc.topic)
			if diff := cmp.Diff([]any{status, rid, ra, err != nil}, []any{s2, r2, ra2, err2 != nil}); diff != "" {
				t.Errorf("ParseResponseTopic disagrees with parseResponseTopic (-internal +exported):\n%s", diff)
			}
		})
	}
}

func FuzzParseResponseTopic(f *testing.F) {
	for _, s := range []string{
		"$dps/registrations/res/202/?$rid=1&retry-after=3",
		"$dps/registrations/res/200/?$rid=abc",
		"$dps/registrations/res/429/?retry-after=5&$rid=9",
		"$dps/registrations/res/200/?$rid=a%20b",
		"$dps/registrations/res/200?$rid=1",
		"$dps/registrations/res/200/?$rid=%zz",
		"$dps/registrations/res/999/?$rid=1&retry-after=99999999999999999999",
		"$dps/registrations/res/",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		status, rid, ra, err := ParseResponseTopic(topic)
		if err != nil {
			if status != 0 || rid != "" || ra != 0 {
				t.Fatalf("error %v with non-zero results %d %q %v", err, status, rid, ra)
			}
			return
		}
		if status < 100 || status > 599 {
			t.Fatalf("accepted status %d", status)
		}
		if rid == "" {
			t.Fatal("accepted an empty $rid")
		}
		if ra < 0 || ra > maxRetryAfterSeconds*time.Second {
			t.Fatalf("retry-after %v out of range", ra)
		}
		// What the parser accepted must survive a canonical round trip.
		canon := "$dps/registrations/res/" + strconv.Itoa(status) + "/?$rid=" + url.QueryEscape(rid)
		if ra > 0 {
			canon += "&retry-after=" + strconv.FormatInt(int64(ra/time.Second), 10)
		}
		s2, r2, ra2, err := ParseResponseTopic(canon)
		if err != nil || s2 != status || r2 != rid || ra2 != ra {
			t.Fatalf("round trip of %q via %q = %d %q %v %v", topic, canon, s2, r2, ra2, err)
		}
	})
}
