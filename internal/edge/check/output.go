package check

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// Text markers, as upstream prints them.
const (
	markOK      = "\u221a" // √
	markWarning = "\u203c" // ‼
	markError   = "\u00d7" // ×
)

// WriteText renders the report as upstream's text output: per section a
// title, one line per check ("√ <description> - OK", "‼ … - Warning",
// "× … - Error") followed by the message and the fix indented by four
// spaces, then the summary counts. Skipped and ignored checks, and the
// messages of passing ones, are shown only when verbose.
func (r *Report) WriteText(w io.Writer, verbose bool) error {
	bw := bufio.NewWriter(w)
	section := ""
	first := true
	for _, o := range r.Outcomes {
		if o.Section != section || first {
			if !first {
				bw.WriteString("\n")
			}
			section, first = o.Section, false
			fmt.Fprintf(bw, "%s\n%s\n", section, strings.Repeat("-", len([]rune(section))))
		}
		var mark, label string
		switch o.Status {
		case Pass:
			mark, label = markOK, "OK"
		case Warn:
			mark, label = markWarning, "Warning"
		case Fail:
			mark, label = markError, "Error"
		case Skip:
			mark, label = markWarning, "Skipped"
		case Ignore:
			mark, label = markOK, "Ignored"
		default:
			mark, label = markError, o.Status.String()
		}
		detailed := o.Status == Warn || o.Status == Fail
		if !detailed && !verbose && o.Status != Pass {
			continue
		}
		fmt.Fprintf(bw, "%s %s - %s\n", mark, o.Description, label)
		if detailed || verbose {
			writeIndented(bw, "    ", o.Message)
			if o.Fix != "" && o.Status != Pass {
				writeIndented(bw, "    ", "Fix: "+o.Fix)
			}
		}
	}
	if !first {
		bw.WriteString("\n")
	}
	more := " Re-run with --verbose for more details."
	if verbose {
		more = ""
	}
	fmt.Fprintf(bw, "%d check(s) succeeded.\n", r.Count(Pass))
	if n := r.Count(Warn); n > 0 {
		fmt.Fprintf(bw, "%d check(s) raised warnings.%s\n", n, more)
	}
	if n := r.Count(Fail); n > 0 {
		fmt.Fprintf(bw, "%d check(s) raised errors.%s\n", n, more)
	}
	if n := r.Count(Skip); n > 0 {
		fmt.Fprintf(bw, "%d check(s) were skipped due to errors from other checks.%s\n", n, more)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write check report: %w", err)
	}
	return nil
}

// writeIndented writes each line of s (if any) after indent.
func writeIndented(w *bufio.Writer, indent, s string) {
	if s == "" {
		return
	}
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		w.WriteString(indent)
		w.WriteString(line)
		w.WriteString("\n")
	}
}

// jsonReport is the JSON output, upstream's shape: additional_info about
// the host and a map of check ID to result.
type jsonReport struct {
	AdditionalInfo jsonInfo             `json:"additional_info"`
	Checks         map[string]jsonCheck `json:"checks"`
}

type jsonInfo struct {
	Now            string `json:"now"`
	IotedgeVersion string `json:"iotedge_version,omitempty"`
	ConfigFile     string `json:"config_file"`
	OS             jsonOS `json:"os"`
}

type jsonOS struct {
	ID   string `json:"id"`
	Arch string `json:"arch"`
}

type jsonCheck struct {
	Result         jsonResult    `json:"result"`
	AdditionalInfo jsonCheckInfo `json:"additional_info"`
}

type jsonResult struct {
	Result  string   `json:"result"`
	Details []string `json:"details,omitempty"`
}

type jsonCheckInfo struct {
	Description string `json:"description"`
	Section     string `json:"section"`
	Fix         string `json:"fix,omitempty"`
}

// WriteJSON renders the report as one JSON object on one line, in
// upstream's shape: {"additional_info": {…}, "checks": {"<id>": {"result":
// {"result": "ok"|"warning"|"error"|"skipped"|"ignored", "details": [message
// lines]}, "additional_info": {"description", "section", "fix"}}}}.
func (r *Report) WriteJSON(w io.Writer) error {
	out := jsonReport{
		AdditionalInfo: jsonInfo{
			Now:            r.Time.UTC().Format(time.RFC3339),
			IotedgeVersion: r.Version,
			ConfigFile:     r.ConfigPath,
			OS:             jsonOS{ID: runtime.GOOS, Arch: runtime.GOARCH},
		},
		Checks: make(map[string]jsonCheck, len(r.Outcomes)),
	}
	for _, o := range r.Outcomes {
		var details []string
		if o.Message != "" {
			details = strings.Split(strings.TrimRight(o.Message, "\n"), "\n")
		}
		c := jsonCheck{
			Result:         jsonResult{Result: o.Status.String(), Details: details},
			AdditionalInfo: jsonCheckInfo{Description: o.Description, Section: o.Section},
		}
		if o.Status != Pass {
			c.AdditionalInfo.Fix = o.Fix
		}
		out.Checks[o.ID] = c
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode check report: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write check report: %w", err)
	}
	return nil
}
