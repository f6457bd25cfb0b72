package check

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fixed returns a check that records that it ran and returns res.
func fixed(id string, res Result, ran *[]string, needs ...string) Check {
	return Check{ID: id, Description: id + " works", Section: SectionConfiguration, Needs: needs,
		Run: func(context.Context, *Env) Result {
			*ran = append(*ran, id)
			return res
		}}
}

func TestRunPrerequisites(t *testing.T) {
	tests := []struct {
		name    string
		pre     Result
		want    Status
		wantRan []string
	}{
		{"pass runs dependents", Result{Status: Pass}, Pass, []string{"a", "b"}},
		{"warn runs dependents", Result{Status: Warn, Message: "hm", Fix: "do"}, Pass, []string{"a", "b"}},
		{"ignore runs dependents", Result{Status: Ignore}, Pass, []string{"a", "b"}},
		{"fail skips dependents", Result{Status: Fail, Message: "no", Fix: "do"}, Skip, []string{"a"}},
		{"skip skips dependents", Result{Status: Skip}, Skip, []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ran []string
			r := Run(context.Background(), &Env{}, []Check{
				fixed("a", tc.pre, &ran),
				fixed("b", Result{Status: Pass}, &ran, "a"),
			})
			if diff := cmp.Diff(tc.wantRan, ran); diff != "" {
				t.Errorf("checks run (-want +got):\n%s", diff)
			}
			if got := r.Outcomes[1].Status; got != tc.want {
				t.Errorf("dependent status = %v, want %v (%q)", got, tc.want, r.Outcomes[1].Message)
			}
			if tc.want == Skip && r.Outcomes[1].Message != "skipped because check a did not succeed" {
				t.Errorf("skip message = %q", r.Outcomes[1].Message)
			}
		})
	}
}

func TestRunUnknownPrerequisite(t *testing.T) {
	var ran []string
	r := Run(context.Background(), &Env{}, []Check{fixed("b", Result{Status: Pass}, &ran, "later"), fixed("later", Result{Status: Pass}, &ran)})
	want := []Outcome{
		{ID: "b", Description: "b works", Section: SectionConfiguration, Result: Result{Status: Skip, Message: "skipped: its prerequisite later has not run before it"}},
		{ID: "later", Description: "later works", Section: SectionConfiguration, Result: Result{Status: Pass}},
	}
	if diff := cmp.Diff(want, r.Outcomes); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ran []string
	r := Run(ctx, &Env{}, []Check{fixed("a", Result{Status: Pass}, &ran)})
	if len(ran) != 0 || r.Outcomes[0].Status != Skip {
		t.Errorf("a cancelled run ran %v and reported %+v", ran, r.Outcomes[0])
	}
}

func TestRunDefaultsAndTime(t *testing.T) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	env := &Env{ConfigPath: "/etc/aziot/config.toml", Version: "1.2.3", Now: func() time.Time { return at }}
	r := Run(context.Background(), env, nil)
	if !r.Time.Equal(at) || r.ConfigPath != env.ConfigPath || r.Version != "1.2.3" {
		t.Errorf("report header = %v %q %q", r.Time, r.ConfigPath, r.Version)
	}
	if env.Timeout != DefaultTimeout || env.HubPort != "" {
		t.Errorf("defaults not applied: timeout %v, hub port %q", env.Timeout, env.HubPort)
	}
	n := NewEnv("/x.toml")
	if n.ConfigPath != "/x.toml" || n.Timeout != DefaultTimeout || n.HubPort != "" || n.Now == nil {
		t.Errorf("NewEnv = %+v", n)
	}
}

func TestCountAndFailed(t *testing.T) {
	r := &Report{Outcomes: []Outcome{
		{Result: Result{Status: Pass}}, {Result: Result{Status: Pass}}, {Result: Result{Status: Warn}},
		{Result: Result{Status: Skip}}, {Result: Result{Status: Ignore}},
	}}
	got := map[Status]int{}
	for _, s := range []Status{Pass, Warn, Fail, Skip, Ignore} {
		got[s] = r.Count(s)
	}
	if diff := cmp.Diff(map[Status]int{Pass: 2, Warn: 1, Fail: 0, Skip: 1, Ignore: 1}, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	tests := []struct {
		name             string
		extra            Status
		warningsAsErrors bool
		want             bool
	}{
		{"warnings pass", Pass, false, false},
		{"warnings as errors", Pass, true, true},
		{"an error fails", Fail, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rr := &Report{Outcomes: append(append([]Outcome(nil), r.Outcomes...), Outcome{Result: Result{Status: tc.extra}})}
			if got := rr.Failed(tc.warningsAsErrors); got != tc.want {
				t.Errorf("Failed(%v) = %v, want %v", tc.warningsAsErrors, got, tc.want)
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	want := map[Status]string{Pass: "ok", Warn: "warning", Fail: "error", Skip: "skipped", Ignore: "ignored", 0: "Status(0)"}
	for s, w := range want {
		t.Run(w, func(t *testing.T) {
			if got := s.String(); got != w {
				t.Errorf("String = %q, want %q", got, w)
			}
		})
	}
}
