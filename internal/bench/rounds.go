package bench

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Rounds: a mode's measured windows, registrations and ceiling, alternate.
//
// The ratio of a mode compares two rates measured on the same shared
// machine, whose speed drifts by tens of percent within a minute (other
// tenants, CPU frequency). Measured one after the other, each in one long
// window, the two rates see different machines and the ratio inherits the
// drift. Split into rounds that alternate (registrations, then the ceiling,
// then registrations again, …), both rates sample the same stretches of
// time, and the ratio of their totals cancels most of the drift.

// DefaultRounds is the number of rounds the CLI asks for by default.
const DefaultRounds = 4

// MaxRounds bounds Config.Rounds.
const MaxRounds = 100

// minRoundWindow is the shortest measured window a round may have.
const minRoundWindow = 100 * time.Millisecond

// RoundReport is one round of a mode: its registration window and, unless
// the ceilings are skipped, the ceiling window that followed it.
type RoundReport struct {
	RatePerSecond        float64 `json:"ratePerSecond"`
	CeilingRatePerSecond float64 `json:"ceilingRatePerSecond,omitempty"`
	// Ratio is RatePerSecond / CeilingRatePerSecond (0 without a ceiling).
	Ratio float64 `json:"ratio,omitempty"`
}

// rounds returns how many rounds a mode runs.
func (c Config) rounds() int {
	if c.SkipCeilings || c.Rounds < 1 {
		return 1
	}
	return c.Rounds
}

// measure runs a mode's registrations (op, over devices 0..devices-1, each
// used once) and, unless the ceilings are skipped, its ceiling, in
// alternating rounds (Config.Rounds). Each round's windows are the mode's
// Duration and CeilingDuration divided by the rounds, each after its own
// warm-up. It returns the merged results (nil when nothing ran) and the
// rounds; the rounds stop early when the devices run out.
func (r *runner) measure(ctx context.Context, mode string, devices int, op Op, ceiling func(context.Context, Load) (*Result, error)) (reg, ceil *Result, rounds []RoundReport, err error) {
	n := r.cfg.rounds()
	var regs, ceils []*Result
	done := func(err error) (*Result, *Result, []RoundReport, error) {
		return mergeResults(regs), mergeResults(ceils), rounds, err
	}
	used := 0
	for k := range n {
		label := mode + " registrations"
		if n > 1 {
			label += fmt.Sprintf(" %d/%d", k+1, n)
		}
		base := used
		res, err := r.load(label, devices-base, r.cfg.Duration/time.Duration(n)).Run(ctx, func(ctx context.Context, i int) error {
			return op(ctx, base+i)
		})
		if res != nil {
			regs = append(regs, res)
			used += res.Started
		}
		if res == nil || err != nil {
			return done(err)
		}
		round := RoundReport{RatePerSecond: res.Window.Rate}
		if r.cfg.SkipCeilings {
			rounds = append(rounds, round)
			continue
		}
		clabel := ceilingName(mode)
		if n > 1 {
			clabel += fmt.Sprintf(" %d/%d", k+1, n)
		}
		cres, err := ceiling(ctx, r.load(clabel, 0, r.cfg.CeilingDuration/time.Duration(n)))
		if cres != nil {
			ceils = append(ceils, cres)
			round.CeilingRatePerSecond = cres.Window.Rate
			if cres.Window.Rate > 0 {
				round.Ratio = round.RatePerSecond / cres.Window.Rate
			}
		}
		rounds = append(rounds, round)
		if err != nil {
			return done(err)
		}
		if used >= devices {
			r.notef("%s: all %d devices used after round %d of %d", mode, devices, k+1, n)
			break
		}
	}
	return done(nil)
}

// ceilingName names a mode's ceiling.
func ceilingName(mode string) string {
	if mode == ModeX509 {
		return CeilingMTLS
	}
	return CeilingHMAC
}

// mergeResults adds up the results of several runs of one load: counts and
// errors add, the windows join (their lengths add, the rate is the joined
// successes per joined second, the latency summarises every sample) and
// the machine's busy share is the windows' length-weighted mean. It returns
// nil for no results, and the result itself for one.
func mergeResults(rs []*Result) *Result {
	switch len(rs) {
	case 0:
		return nil
	case 1:
		return rs[0]
	}
	m := &Result{Errors: map[string]int{}, ErrorSamples: map[string]string{}}
	var (
		lat          []time.Duration
		busy, busyOf time.Duration
		allBusy      = true
	)
	for _, r := range rs {
		m.Started += r.Started
		m.Succeeded += r.Succeeded
		m.Failed += r.Failed
		m.CPU += r.CPU
		for k, n := range r.Errors {
			m.Errors[k] += n
		}
		for k, s := range r.ErrorSamples {
			if _, ok := m.ErrorSamples[k]; !ok {
				m.ErrorSamples[k] = s
			}
		}
		w := r.Window
		m.Window.Elapsed += w.Elapsed
		m.Window.Succeeded += w.Succeeded
		m.Window.Failed += w.Failed
		lat = append(lat, w.samples...)
		if w.MachineBusy < 0 {
			allBusy = false
		} else {
			busy += time.Duration(w.MachineBusy * float64(w.Elapsed))
			busyOf += w.Elapsed
		}
	}
	if m.Window.Elapsed > 0 {
		m.Window.Rate = float64(m.Window.Succeeded) / m.Window.Elapsed.Seconds()
	}
	m.Window.samples = slices.Clip(lat)
	m.Window.Latency = Summarize(lat)
	m.Window.MachineBusy = -1
	if allBusy && busyOf > 0 {
		m.Window.MachineBusy = float64(busy) / float64(busyOf)
	}
	return m
}
