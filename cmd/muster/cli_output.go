package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// emit prints v as indented JSON with --output json, else calls table
// with an aligned writer (columns separated by tabs) and flushes it.
func (c *cli) emit(v any, table func(w io.Writer)) error {
	if c.output == outputJSON {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // keep & < > readable in hints and URLs
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("encode JSON output: %w", err)
		}
		if _, err := c.stdout.Write(b.Bytes()); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	table(tw)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// emitDetails prints the notes (see note), then v as JSON or as its
// details table.
func (c *cli) emitDetails(v any, d *details, notes ...string) error {
	for _, n := range notes {
		c.note("%s", n)
	}
	return c.emit(v, d.write)
}

// note prints a human remark to stderr (so stdout stays parseable); it is
// silent with --output json.
func (c *cli) note(format string, args ...any) {
	if c.output == outputJSON {
		return
	}
	fmt.Fprintf(c.stderr, format+"\n", args...)
}

// details accumulates "Name:  value" rows of one object; empty values are
// left out.
type details struct{ rows [][2]string }

func (d *details) add(name, value string) {
	if value != "" {
		d.rows = append(d.rows, [2]string{name, value})
	}
}

func (d *details) write(w io.Writer) {
	for _, r := range d.rows {
		fmt.Fprintf(w, "%s:\t%s\n", r[0], oneLine(r[1]))
	}
}

// row writes one table row; empty cells print as "-".
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		cells[i] = oneLine(c)
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// oneLine keeps a cell on one line and free of tabs.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s)
}

// timeText formats a time for tables (UTC, whole seconds); zero is "".
func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// timePtrText formats an optional time.
func timePtrText(t *time.Time) string {
	if t == nil {
		return ""
	}
	return timeText(*t)
}

// boolText formats a flag for tables.
func boolText(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// rawText shows a raw JSON value compactly ("" for none).
func rawText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
