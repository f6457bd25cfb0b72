package reconcile

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
)

// ListRow is one row of `iotedge list` (hub-edge spec §7.2).
type ListRow struct {
	Name        string
	Status      string
	Description string
	Config      string
}

// Period lengths of the humanizer, in seconds (chrono-humanize's).
const (
	secMinute = 60
	secHour   = 60 * secMinute
	secDay    = 24 * secHour
	secWeek   = 7 * secDay
	secMonth  = 30 * secDay
	secYear   = 365 * secDay
)

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Humanize renders a duration as `iotedge list` does (chrono-humanize):
// up to 20 s precisely ("0 seconds", "1 second", "15 seconds"), beyond
// that roughly ("21 seconds", "a minute", "3 minutes", "an hour", "2
// days", "a week", "a month", "2 years"). With past set it appends " ago".
func Humanize(d time.Duration, past bool) string {
	if d < 0 {
		d = -d
	}
	n := int64(d / time.Second)
	var s string
	if d <= 20*time.Second {
		s = plural(n, "1 second", "seconds")
	} else {
		switch {
		case n > 547*secDay:
			s = fmt.Sprintf("%d years", max(n/secYear, 2))
		case n > 345*secDay:
			s = "a year"
		case n > 45*secDay:
			s = fmt.Sprintf("%d months", max(n/secMonth, 2))
		case n > 29*secDay:
			s = "a month"
		case n > 10*secDay+12*secHour:
			s = fmt.Sprintf("%d weeks", max(n/secWeek, 2))
		case n > 6*secDay+12*secHour:
			s = "a week"
		case n > 36*secHour:
			s = fmt.Sprintf("%d days", max(n/secDay, 2))
		case n > 22*secHour:
			s = "a day"
		case n > 90*secMinute:
			s = fmt.Sprintf("%d hours", max(n/secHour, 2))
		case n > 45*secMinute:
			s = "an hour"
		case n > 90:
			s = fmt.Sprintf("%d minutes", max(n/secMinute, 2))
		case n > 45:
			s = "a minute"
		default:
			s = fmt.Sprintf("%d seconds", n)
		}
	}
	if past {
		s += " ago"
	}
	return s
}

// listStatus maps a runtime status to the STATUS column, which shows the
// runtime's view (running, stopped, failed, unknown, dead): a module in
// back-off is down, failed or stopped by its last exit code, and an
// unhealthy one is running.
func listStatus(status RuntimeStatus, exitCode int) string {
	switch status {
	case RuntimeRunning, RuntimeUnhealthy:
		return "running"
	case RuntimeBackoff:
		if exitCode != 0 {
			return "failed"
		}
		return "stopped"
	case RuntimeStopped, RuntimeFailed, RuntimeDead:
		return string(status)
	default:
		return "unknown"
	}
}

// Describe renders the DESCRIPTION column: "Up <time>", "Stopped <time>
// ago", "Failed (<exit code>) <time> ago", or "Unknown"; without a known
// time just "Up", "Stopped" or "Failed".
func Describe(status RuntimeStatus, exitCode int, started, finished, now time.Time) string {
	switch listStatus(status, exitCode) {
	case "running":
		if started.IsZero() {
			return "Up"
		}
		return "Up " + Humanize(now.Sub(started), false)
	case "stopped", "dead":
		if finished.IsZero() {
			return "Stopped"
		}
		return "Stopped " + Humanize(now.Sub(finished), true)
	case "failed":
		if finished.IsZero() {
			return "Failed"
		}
		return fmt.Sprintf("Failed (%d) %s", exitCode, Humanize(now.Sub(finished), true))
	default:
		return "Unknown"
	}
}

// ListRows builds the `iotedge list` rows from a reported document: the
// system modules and every reported module, sorted by name in byte order.
func ListRows(r Reported, now time.Time) []ListRow {
	a := r.SystemModules.EdgeAgent
	rows := []ListRow{{
		Name:        EdgeAgent,
		Status:      listStatus(a.RuntimeStatus, a.ExitCode),
		Description: Describe(a.RuntimeStatus, a.ExitCode, a.LastStartTimeUtc.Time, a.LastExitTimeUtc.Time, now),
		Config:      a.Settings.Image,
	}}
	add := func(name string, m ReportedModule) {
		rows = append(rows, ListRow{
			Name:        name,
			Status:      listStatus(m.RuntimeStatus, m.ExitCode),
			Description: Describe(m.RuntimeStatus, m.ExitCode, m.LastStartTimeUtc.Time, m.LastExitTimeUtc.Time, now),
			Config:      m.Settings.Image,
		})
	}
	if h := r.SystemModules.EdgeHub; h != nil {
		add(EdgeHub, *h)
	}
	for name, m := range r.Modules {
		add(name, m)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows
}

// WriteList writes rows as `iotedge list` prints them: a NAME, STATUS,
// DESCRIPTION, Config header and tab-aligned columns (minimum width 15,
// padding 2).
func WriteList(w io.Writer, rows []ListRow) error {
	tw := tabwriter.NewWriter(w, 15, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tDESCRIPTION\tConfig")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Status, r.Description, r.Config)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write module list: %w", err)
	}
	return nil
}
