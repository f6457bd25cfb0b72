package dpsclient

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestPollImmediately checks that Options.PollImmediately skips only the
// wait between a register answer and the first poll, over both transports.
func TestPollImmediately(t *testing.T) {
	tests := []struct {
		name      string
		steps     []step
		immediate bool
		kinds     []string
		waits     []time.Duration
	}{
		{
			name:      "off: the register answer's Retry-After is honoured",
			steps:     []step{{202, "3", bodyAssigning}, {200, "", bodyAssigned}},
			immediate: false,
			kinds:     []string{"register", "poll"},
			waits:     []time.Duration{3 * time.Second},
		},
		{
			name:      "on: the first poll follows the register answer at once",
			steps:     []step{{202, "3", bodyAssigning}, {200, "", bodyAssigned}},
			immediate: true,
			kinds:     []string{"register", "poll"},
			waits:     nil,
		},
		{
			name:      "on: later polls still wait for Retry-After",
			steps:     []step{{202, "3", bodyAssigning}, {202, "2", bodyAssigningPoll}, {200, "", bodyAssigned}},
			immediate: true,
			kinds:     []string{"register", "poll", "poll"},
			waits:     []time.Duration{2 * time.Second},
		},
		{
			name:      "on: a throttled register is retried after its Retry-After, then polled at once",
			steps:     []step{{429, "4", bodyThrottled}, {202, "3", bodyAssigning}, {200, "", bodyAssigned}},
			immediate: true,
			kinds:     []string{"register", "register", "poll"},
			waits:     []time.Duration{4 * time.Second},
		},
		{
			name:      "on: a poll answered 5xx is retried after its Retry-After",
			steps:     []step{{202, "3", bodyAssigning}, {503, "1", bodyThrottled}, {200, "", bodyAssigned}},
			immediate: true,
			kinds:     []string{"register", "poll", "poll"},
			waits:     []time.Duration{time.Second},
		},
	}
	for _, transport := range transports {
		for _, tc := range tests {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				f := &fakeDPS{steps: tc.steps}
				c, rec, _ := newTestClient(t, transport, f, func(o *Options) { o.PollImmediately = tc.immediate })
				key, _ := newKey(t)
				res, err := c.Register(context.Background(), Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: key}})
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				if diff := cmp.Diff(stateOf(t, bodyAssigned), res); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tc.kinds, f.kinds()); diff != "" {
					t.Errorf("requests (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tc.waits, rec.got()); diff != "" {
					t.Errorf("waits (-want +got):\n%s", diff)
				}
			})
		}
	}
}
