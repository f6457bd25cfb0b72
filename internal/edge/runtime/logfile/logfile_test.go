package logfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// readAll concatenates the segments of a log, oldest first.
func readAll(t *testing.T, dir, prefix string) ([]byte, []int64) {
	t.Helper()
	segs, err := Segments(dir, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	var sizes []int64
	for _, s := range segs {
		b, err := os.ReadFile(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
		sizes = append(sizes, int64(len(b)))
	}
	return all, sizes
}

func TestWriterRotation(t *testing.T) {
	tests := []struct {
		name      string
		maxBytes  int64
		keep      int
		writes    []string
		wantFiles []string // retained segment contents, oldest first
	}{
		{
			name:     "fits in one segment",
			maxBytes: 100, keep: 3,
			writes:    []string{"a\n", "b\n"},
			wantFiles: []string{"a\nb\n"},
		},
		{
			name:     "rotates before a write that would overflow",
			maxBytes: 4, keep: 3,
			writes:    []string{"aa\n", "bb\n", "cc\n"},
			wantFiles: []string{"aa\n", "bb\n", "cc\n"},
		},
		{
			name:     "drops segments beyond keep",
			maxBytes: 4, keep: 2,
			writes:    []string{"aa\n", "bb\n", "cc\n", "dd\n"},
			wantFiles: []string{"cc\n", "dd\n"},
		},
		{
			name:     "oversized write gets a segment of its own",
			maxBytes: 4, keep: 5,
			writes:    []string{"a\n", "0123456789\n", "b\n"},
			wantFiles: []string{"a\n", "0123456789\n", "b\n"},
		},
		{
			name:     "exact fill does not rotate",
			maxBytes: 4, keep: 5,
			writes:    []string{"a\n", "b\n", "c\n"},
			wantFiles: []string{"a\nb\n", "c\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w, err := Open(dir, "out", tc.maxBytes, tc.keep)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			segs, err := Segments(dir, "out")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range segs {
				b, err := os.ReadFile(s.Path)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(b))
			}
			if diff := cmp.Diff(tc.wantFiles, got); diff != "" {
				t.Errorf("segments (-want +got):\n%s", diff)
			}
			if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func TestWriterReopenContinues(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, "out", 6, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"aa\n", "bb\n", "cc\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	w, err = Open(dir, "out", 6, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"dd\n", "ee\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	got, _ := readAll(t, dir, "out")
	if diff := cmp.Diff("aa\nbb\ncc\ndd\nee\n", string(got)); diff != "" {
		t.Errorf("content (-want +got):\n%s", diff)
	}
	segs, _ := Segments(dir, "out")
	var seqs []uint64
	for _, s := range segs {
		seqs = append(seqs, s.Seq)
	}
	if diff := cmp.Diff([]uint64{1, 2, 3}, seqs); diff != "" {
		t.Errorf("segment sequence (-want +got):\n%s", diff)
	}
}

func TestSegmentsIgnoresForeignFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"out.00000002.log", "out.00000010.log", "out.x.log", "other.00000001.log", "out.00000003.log.tmp", "out..log"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	segs, err := Segments(dir, "out")
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, s := range segs {
		got = append(got, s.Seq)
	}
	if diff := cmp.Diff([]uint64{2, 10}, got); diff != "" {
		t.Errorf("seqs (-want +got):\n%s", diff)
	}
	if segs, err := Segments(filepath.Join(dir, "missing"), "out"); err != nil || segs != nil {
		t.Errorf("Segments(missing dir) = %v, %v; want nil, nil", segs, err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	ts := time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)
	tests := []struct {
		name string
		rec  Record
		line string
	}{
		{"full stdout", Record{Time: ts, Stream: Stdout, Content: []byte("hello world")}, "2026-03-04T05:06:07.890123456Z stdout F hello world\n"},
		{"partial stderr", Record{Time: ts, Stream: Stderr, Partial: true, Content: []byte("abc")}, "2026-03-04T05:06:07.890123456Z stderr P abc\n"},
		{"empty line", Record{Time: ts, Stream: Stdout, Content: []byte{}}, "2026-03-04T05:06:07.890123456Z stdout F \n"},
		{"spaces kept", Record{Time: ts, Stream: Stdout, Content: []byte("  a  b ")}, "2026-03-04T05:06:07.890123456Z stdout F   a  b \n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendRecord(nil, tc.rec))
			if got != tc.line {
				t.Fatalf("AppendRecord = %q, want %q", got, tc.line)
			}
			back, err := ParseRecord([]byte(strings.TrimSuffix(got, "\n")))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.rec, back, cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRecordRejects(t *testing.T) {
	for _, line := range []string{
		"",
		"not-a-time stdout F x",
		"2026-03-04T05:06:07Z",
		"2026-03-04T05:06:07Z stdout",
		"2026-03-04T05:06:07Z stdout X x",
		"2026-03-04T05:06:07Z  F x",
	} {
		t.Run(line, func(t *testing.T) {
			if _, err := ParseRecord([]byte(line)); !errors.Is(err, ErrBadRecord) {
				t.Errorf("ParseRecord(%q) = %v, want ErrBadRecord", line, err)
			}
		})
	}
}

// fakeClock returns times one second apart from a fixed start.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func TestCaptureFraming(t *testing.T) {
	long := strings.Repeat("x", MaxLine+10)
	tests := []struct {
		name   string
		writes []string
		flush  bool
		want   []string // "<tag> <content>"
	}{
		{"lines", []string{"a\nb\n"}, false, []string{"F a", "F b"}},
		{"split across writes", []string{"he", "llo\nwor", "ld\n"}, false, []string{"F hello", "F world"}},
		{"unterminated kept until flush", []string{"tail"}, true, []string{"F tail"}},
		{"unterminated without flush", []string{"tail"}, false, nil},
		{"empty lines", []string{"\n\n"}, false, []string{"F ", "F "}},
		{"long line split", []string{long + "\n"}, false, []string{"P " + long[:MaxLine], "F xxxxxxxxxx"}},
		{"long unterminated line", []string{long}, true, []string{"P " + long[:MaxLine], "F xxxxxxxxxx"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := NewCapture(&buf, Stdout, newFakeClock().Now)
			for _, w := range tc.writes {
				if n, err := c.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if tc.flush {
				if err := c.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, line := range strings.SplitAfter(buf.String(), "\n") {
				if line == "" {
					continue
				}
				r, err := ParseRecord([]byte(strings.TrimSuffix(line, "\n")))
				if err != nil {
					t.Fatalf("record %q: %v", line, err)
				}
				tag := "F"
				if r.Partial {
					tag = "P"
				}
				got = append(got, tag+" "+string(r.Content))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
		})
	}
}

// writeLines captures lines on alternating streams into a new log and
// returns the directory. Line i is stamped 2026-01-01T00:00:(i+1)Z.
func writeLines(t *testing.T, maxBytes int64, keep int, lines ...string) (string, *Writer) {
	t.Helper()
	dir := t.TempDir()
	w, err := Open(dir, "out", maxBytes, keep)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	out := NewCapture(w, Stdout, clock.Now)
	errc := NewCapture(w, Stderr, clock.Now)
	for i, l := range lines {
		c := out
		if i%2 == 1 {
			c = errc
		}
		if _, err := c.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	return dir, w
}

func at(sec int) time.Time { return time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC) }

func TestCopySelection(t *testing.T) {
	lines := []string{"one", "two", "three", "four", "five"}
	tests := []struct {
		name string
		opts ReadOptions
		want string
	}{
		{"all", ReadOptions{}, "one\ntwo\nthree\nfour\nfive\n"},
		{"tail 2", ReadOptions{Tail: 2}, "four\nfive\n"},
		{"tail beyond length", ReadOptions{Tail: 50}, "one\ntwo\nthree\nfour\nfive\n"},
		{"since", ReadOptions{Since: at(3)}, "three\nfour\nfive\n"},
		{"until", ReadOptions{Until: at(3)}, "one\ntwo\n"},
		{"since and until", ReadOptions{Since: at(2), Until: at(4)}, "two\nthree\n"},
		{"since with tail", ReadOptions{Since: at(2), Tail: 1}, "five\n"},
		{"timestamps", ReadOptions{Tail: 1, Timestamps: true}, "2026-01-01T00:00:05Z five\n"},
	}
	for _, rotate := range []int64{1 << 20, 40} {
		dir, w := writeLines(t, rotate, 100, lines...)
		w.Close()
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/max%d", tc.name, rotate), func(t *testing.T) {
				var buf bytes.Buffer
				if err := Copy(context.Background(), &buf, dir, "out", tc.opts); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, buf.String()); diff != "" {
					t.Errorf("output (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestCopyReassemblesLongLines(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, "out", 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	out := NewCapture(w, Stdout, clock.Now)
	errc := NewCapture(w, Stderr, clock.Now)
	long := strings.Repeat("y", 2*MaxLine+5)
	// A stderr line lands between the pieces of a long stdout line.
	out.Write([]byte(long[:MaxLine+1]))
	errc.Write([]byte("interleaved\n"))
	out.Write([]byte(long[MaxLine+1:] + "\n"))
	out.Write([]byte("unterminated"))
	out.Flush()
	w.Close()
	var buf bytes.Buffer
	if err := Copy(context.Background(), &buf, dir, "out", ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	want := "interleaved\n" + long + "\nunterminated\n"
	if buf.String() != want {
		t.Errorf("output has %d bytes, want %d; prefix %q", buf.Len(), len(want), buf.String()[:min(40, buf.Len())])
	}
}

func TestCopySkipsCorruptLines(t *testing.T) {
	dir := t.TempDir()
	seg := filepath.Join(dir, SegmentName("out", 1))
	content := "garbage\n" + string(AppendRecord(nil, Record{Time: at(1), Stream: Stdout, Content: []byte("good")})) +
		strings.Repeat("z", 3*maxScanLine) + "\n" +
		string(AppendRecord(nil, Record{Time: at(2), Stream: Stdout, Content: []byte("after")})) + "torn-tail-without-newline"
	if err := os.WriteFile(seg, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Copy(context.Background(), &buf, dir, "out", ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("good\nafter\n", buf.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// lineWriter delivers written lines on a channel.
type lineWriter struct {
	ch chan string
}

func (l *lineWriter) Write(p []byte) (int, error) {
	for _, s := range strings.SplitAfter(string(p), "\n") {
		if s != "" {
			l.ch <- s
		}
	}
	return len(p), nil
}

func recv(t *testing.T, ch chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10s")
		return ""
	}
}

func TestCopyFollow(t *testing.T) {
	dir, w := writeLines(t, 60, 50, "old1", "old2")
	defer w.Close()
	done := make(chan struct{})
	lw := &lineWriter{ch: make(chan string, 100)}
	result := make(chan error, 1)
	go func() {
		result <- Copy(context.Background(), lw, dir, "out", ReadOptions{Tail: 1, Follow: true, Changed: w.Changed, Done: done})
	}()
	if got := recv(t, lw.ch); got != "old2\n" {
		t.Fatalf("first line %q, want old2", got)
	}
	c := NewCapture(w, Stdout, newFakeClock().Now)
	// Enough lines to rotate segments several times while following.
	var want []string
	for i := range 20 {
		line := fmt.Sprintf("new-%02d", i)
		want = append(want, line+"\n")
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range want {
		got = append(got, recv(t, lw.ch))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("followed lines (-want +got):\n%s", diff)
	}
	c.Write([]byte("last\n"))
	close(done)
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("Copy = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after Done")
	}
	if got := recv(t, lw.ch); got != "last\n" {
		t.Errorf("line written before Done = %q, want last", got)
	}
}

func TestCopyFollowEndsAtUntilAndCancel(t *testing.T) {
	t.Run("until", func(t *testing.T) {
		dir, w := writeLines(t, 1<<20, 5, "a")
		defer w.Close()
		result := make(chan error, 1)
		var buf bytes.Buffer
		go func() {
			result <- Copy(context.Background(), &buf, dir, "out", ReadOptions{Follow: true, Changed: w.Changed, Until: at(3)})
		}()
		c := NewCapture(w, Stdout, func() time.Time { return at(5) })
		c.Write([]byte("late\n"))
		select {
		case err := <-result:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("follow did not end at Until")
		}
		if diff := cmp.Diff("a\n", buf.String()); diff != "" {
			t.Errorf("output (-want +got):\n%s", diff)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		dir, w := writeLines(t, 1<<20, 5, "a")
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		result := make(chan error, 1)
		go func() {
			result <- Copy(ctx, io.Discard, dir, "out", ReadOptions{Follow: true, Changed: w.Changed})
		}()
		cancel()
		select {
		case err := <-result:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Copy = %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("follow did not end on cancel")
		}
	})
	t.Run("follow needs Changed", func(t *testing.T) {
		if err := Copy(context.Background(), io.Discard, t.TempDir(), "out", ReadOptions{Follow: true}); err == nil {
			t.Error("Copy with Follow and no Changed succeeded")
		}
	})
}

func TestWriterConcurrentWritesKeepRecords(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, "out", 256, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		c := NewCapture(w, fmt.Sprintf("s%d", g), nil)
		wg.Go(func() {
			for i := range 200 {
				fmt.Fprintf(c, "g%d-%03d\n", g, i)
			}
		})
	}
	wg.Wait()
	w.Close()
	all, sizes := readAll(t, dir, "out")
	for _, s := range sizes {
		if s > 256 {
			t.Errorf("segment of %d bytes exceeds the limit", s)
		}
	}
	next := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(all), "\n"), "\n") {
		r, err := ParseRecord([]byte(line))
		if err != nil {
			t.Fatalf("torn record %q: %v", line, err)
		}
		var g, i int
		if _, err := fmt.Sscanf(string(r.Content), "g%d-%d", &g, &i); err != nil {
			t.Fatalf("content %q: %v", r.Content, err)
		}
		key := fmt.Sprint(g)
		if i != next[key] {
			t.Fatalf("stream %d: line %d after %d", g, i, next[key]-1)
		}
		next[key]++
	}
	if diff := cmp.Diff(map[string]int{"0": 200, "1": 200, "2": 200, "3": 200}, next); diff != "" {
		t.Errorf("lines per stream (-want +got):\n%s", diff)
	}
}
