package logfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// MaxLine is the longest piece of a line one record carries. Longer lines
// are split into partial records ("P") followed by a final one ("F").
const MaxLine = 16 << 10

// The stream names a record carries.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Record is one captured piece of output: a whole line (Partial false) or
// a piece of a longer line that continues in the next record of the same
// stream (Partial true). Content never contains a newline.
type Record struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content []byte
}

// ErrBadRecord means a log line is not in the record format.
var ErrBadRecord = errors.New("logfile: malformed record")

// AppendRecord appends r in the CRI log format, newline-terminated:
// "<time RFC3339Nano UTC> <stream> <F|P> <content>\n". Newlines inside
// Content are replaced by spaces (Capture never produces them).
func AppendRecord(dst []byte, r Record) []byte {
	dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, ' ')
	dst = append(dst, r.Stream...)
	if r.Partial {
		dst = append(dst, " P "...)
	} else {
		dst = append(dst, " F "...)
	}
	start := len(dst)
	dst = append(dst, r.Content...)
	for i := start; i < len(dst); i++ {
		if dst[i] == '\n' {
			dst[i] = ' '
		}
	}
	return append(dst, '\n')
}

// ParseRecord parses one record line (without its trailing newline). The
// returned Content aliases line.
func ParseRecord(line []byte) (Record, error) {
	if bytes.IndexByte(line, '\n') >= 0 {
		return Record{}, fmt.Errorf("%w: newline inside a record", ErrBadRecord)
	}
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Record{}, fmt.Errorf("%w: no stream field", ErrBadRecord)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if y := t.UTC().Year(); err != nil || y < 0 || y > 9999 {
		return Record{}, fmt.Errorf("%w: timestamp %q", ErrBadRecord, ts)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || len(stream) == 0 {
		return Record{}, fmt.Errorf("%w: no tag field", ErrBadRecord)
	}
	tag, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return Record{}, fmt.Errorf("%w: no content field", ErrBadRecord)
	}
	var partial bool
	switch string(tag) {
	case "F":
	case "P":
		partial = true
	default:
		return Record{}, fmt.Errorf("%w: tag %q is neither F nor P", ErrBadRecord, tag)
	}
	return Record{Time: t, Stream: string(stream), Partial: partial, Content: content}, nil
}

// Capture frames one output stream (a process's stdout or stderr) into
// records on a shared Writer: every complete line becomes an "F" record,
// a line longer than MaxLine is emitted in "P" pieces, and Flush emits an
// unterminated last line. It is an io.Writer, safe for concurrent use.
type Capture struct {
	w      io.Writer
	stream string
	now    func() time.Time

	mu  sync.Mutex
	buf []byte
	rec []byte
}

// NewCapture returns a Capture writing records of stream to w, stamped
// with now() (time.Now when nil).
func NewCapture(w io.Writer, stream string, now func() time.Time) *Capture {
	if now == nil {
		now = time.Now
	}
	return &Capture{w: w, stream: stream, now: now}
}

// Write frames p. It reports len(p) consumed unless the underlying writer
// fails, in which case the pending bytes are dropped and the error
// returned.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The buffered remainder holds no newline: search only the new bytes.
	search := len(c.buf)
	c.buf = append(c.buf, p...)
	start := 0
	for {
		i := bytes.IndexByte(c.buf[search:], '\n')
		if i < 0 {
			break
		}
		end := search + i
		line := c.buf[start:end]
		for len(line) > MaxLine {
			if err := c.emit(line[:MaxLine], true); err != nil {
				c.buf = c.buf[:0]
				return 0, err
			}
			line = line[MaxLine:]
		}
		if err := c.emit(line, false); err != nil {
			c.buf = c.buf[:0]
			return 0, err
		}
		start = end + 1
		search = start
	}
	for len(c.buf)-start >= MaxLine {
		if err := c.emit(c.buf[start:start+MaxLine], true); err != nil {
			c.buf = c.buf[:0]
			return 0, err
		}
		start += MaxLine
	}
	// Move the unterminated remainder to the front so the buffer does not
	// grow without bound.
	c.buf = c.buf[:copy(c.buf, c.buf[start:])]
	return len(p), nil
}

// Flush emits a pending unterminated line as a final record.
func (c *Capture) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) == 0 {
		return nil
	}
	err := c.emit(c.buf, false)
	c.buf = c.buf[:0]
	return err
}

func (c *Capture) emit(content []byte, partial bool) error {
	c.rec = AppendRecord(c.rec[:0], Record{Time: c.now(), Stream: c.stream, Partial: partial, Content: content})
	if _, err := c.w.Write(c.rec); err != nil {
		return fmt.Errorf("capture %s: %w", c.stream, err)
	}
	return nil
}
