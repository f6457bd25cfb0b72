package platform

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestCheckState(t *testing.T) {
	cases := []struct {
		state string
		want  string // error text, "" for none
	}{
		{state: Ready},
		{state: Stopping},
		{state: Watchdog},
		{state: "STATUS=starting modules\nMAINPID=42"},
		{state: "STATUS="},
		{state: "", want: "notify state: empty"},
		{state: "READY", want: `notify state: line 1 "READY" is not VARIABLE=value`},
		{state: "=1", want: `notify state: line 1 "=1" is not VARIABLE=value`},
		{state: "READY=1\n", want: `notify state: line 2 "" is not VARIABLE=value`},
		{state: "ready=1", want: `notify state: line 1: variable "ready" has 'r'; use A-Z, 0-9 and '_'`},
		{state: "READY=1\x00", want: "notify state: NUL byte at 7"},
	}
	for _, tc := range cases {
		t.Run(tc.state, func(t *testing.T) {
			got := ""
			if err := checkState(tc.state); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("checkState(%q) = %q, want %q", tc.state, got, tc.want)
			}
		})
	}
}

func TestStatusState(t *testing.T) {
	long := strings.Repeat("é", maxStatusLen) // two bytes each
	cases := []struct {
		name, text, want string
	}{
		{name: "plain", text: "3 modules running", want: "STATUS=3 modules running"},
		{name: "newline cannot add a variable", text: "x\nREADY=1", want: "STATUS=x READY=1"},
		{name: "control characters", text: "a\tb\x00c\u0085d", want: "STATUS=a b c d"},
		{name: "empty", text: "", want: "STATUS="},
		{name: "cut on a character boundary", text: long, want: "STATUS=" + long[:maxStatusLen]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := statusState(tc.text)
			if got != tc.want {
				t.Errorf("statusState(%q) = %q, want %q", tc.text, got, tc.want)
			}
			if err := checkState(got); err != nil {
				t.Errorf("statusState(%q) = %q fails checkState: %v", tc.text, got, err)
			}
		})
	}
}

func TestParseWatchdog(t *testing.T) {
	cases := []struct {
		name, usec, pid string
		want            time.Duration
		wantErr         string
	}{
		{name: "off", usec: "", pid: ""},
		{name: "on", usec: "30000000", want: 30 * time.Second},
		{name: "on for this process", usec: "500", pid: "42", want: 500 * time.Microsecond},
		{name: "meant for another process", usec: "500", pid: "43"},
		{name: "zero", usec: "0", wantErr: `parse WATCHDOG_USEC "0": out of range`},
		{name: "negative", usec: "-5", wantErr: `parse WATCHDOG_USEC "-5": strconv.ParseUint: parsing "-5": invalid syntax`},
		{name: "overflows a duration", usec: "18446744073709551615", wantErr: `parse WATCHDOG_USEC "18446744073709551615": out of range`},
		{name: "bad pid", usec: "5", pid: "x", wantErr: `parse WATCHDOG_PID "x": not a process ID`},
		{name: "zero pid", usec: "5", pid: "0", wantErr: `parse WATCHDOG_PID "0": not a process ID`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWatchdog(tc.usec, tc.pid, 42)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tc.wantErr, gotErr); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if got != tc.want {
				t.Errorf("interval = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzParseWatchdog feeds arbitrary environment values: the result is
// an error or a positive interval, never a panic or a negative one.
func FuzzParseWatchdog(f *testing.F) {
	f.Add("30000000", "")
	f.Add("1", "42")
	f.Add("9223372036854775", "42")
	f.Add("9223372036854776", "")
	f.Add("", "42")
	f.Add("-1", "-1")
	f.Fuzz(func(t *testing.T, usec, pid string) {
		d, err := parseWatchdog(usec, pid, 42)
		if err != nil && d != 0 {
			t.Fatalf("parseWatchdog(%q, %q) = %v with error %v", usec, pid, d, err)
		}
		if d < 0 {
			t.Fatalf("parseWatchdog(%q, %q) = negative %v", usec, pid, d)
		}
		if usec == "" && (d != 0 || err != nil) {
			t.Fatalf("parseWatchdog with no WATCHDOG_USEC = %v, %v", d, err)
		}
	})
}

// FuzzStatusState checks that any text becomes exactly one well-formed
// STATUS= assignment of valid UTF-8 within the size bound.
func FuzzStatusState(f *testing.F) {
	f.Add("modules running")
	f.Add("a\nREADY=1")
	f.Add("\x00\xff\u0085")
	f.Add(strings.Repeat("€", 400))
	f.Fuzz(func(t *testing.T, text string) {
		s := statusState(text)
		if err := checkState(s); err != nil {
			t.Fatalf("statusState(%q) = %q: %v", text, s, err)
		}
		if strings.Contains(s, "\n") || !strings.HasPrefix(s, "STATUS=") {
			t.Fatalf("statusState(%q) = %q is not one STATUS= line", text, s)
		}
		if !utf8.ValidString(s) {
			t.Fatalf("statusState(%q) = %q is not valid UTF-8", text, s)
		}
		if n := len(s) - len("STATUS="); n > maxStatusLen {
			t.Fatalf("statusState(%q) has %d bytes of text, more than %d", text, n, maxStatusLen)
		}
	})
}
