package logfile

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzWriter writes arbitrary chunks through the rotating writer (closing
// and reopening it half-way) and checks that the retained segments are
// exactly a suffix of the writes made of whole writes, in order, and that
// no segment exceeds the limit unless it holds a single oversized write.
func FuzzWriter(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint8(4), uint8(2), uint8(3))
	f.Add([]byte(strings.Repeat("abc\n", 50)), uint8(10), uint8(7), uint8(1))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(1), uint8(1), uint8(1))
	f.Add([]byte(""), uint8(0), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, maxB, keepB, chunkB uint8) {
		maxBytes := int64(maxB%64) + 1
		keep := int(keepB%6) + 1
		chunk := int(chunkB%16) + 1
		dir := t.TempDir()
		w, err := Open(dir, "f", maxBytes, keep)
		if err != nil {
			t.Fatal(err)
		}
		var writes [][]byte
		for i := 0; i < len(data); i += chunk {
			p := data[i:min(i+chunk, len(data))]
			if _, err := w.Write(p); err != nil {
				t.Fatal(err)
			}
			writes = append(writes, p)
			if len(writes) == 3 {
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if w, err = Open(dir, "f", maxBytes, keep); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		segs, err := Segments(dir, "f")
		if err != nil {
			t.Fatal(err)
		}
		if len(segs) > keep {
			t.Fatalf("%d segments retained, keep is %d", len(segs), keep)
		}
		var got []byte
		var lastSeq uint64
		for _, s := range segs {
			if s.Seq <= lastSeq {
				t.Fatalf("segments out of order: %d after %d", s.Seq, lastSeq)
			}
			lastSeq = s.Seq
			b, err := os.ReadFile(s.Path)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(b)) > maxBytes && !isSingleWrite(b, writes) {
				t.Fatalf("segment %d has %d bytes > %d and is not one write", s.Seq, len(b), maxBytes)
			}
			got = append(got, b...)
		}
		all := bytes.Join(writes, nil)
		if !bytes.HasSuffix(all, got) {
			t.Fatalf("retained %q is not a suffix of written %q", got, all)
		}
		// The retained bytes start at a write boundary.
		boundary := len(all) - len(got)
		off := 0
		ok := boundary == 0
		for _, wr := range writes {
			off += len(wr)
			if off == boundary {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("retained data starts inside a write (offset %d)", boundary)
		}
	})
}

func isSingleWrite(b []byte, writes [][]byte) bool {
	for _, w := range writes {
		if bytes.Equal(w, b) {
			return true
		}
	}
	return false
}

// FuzzCaptureRoundTrip frames arbitrary output and reads it back: the
// lines read equal the lines written, in order.
func FuzzCaptureRoundTrip(f *testing.F) {
	f.Add([]byte("a\nb\nc"), uint8(2))
	f.Add([]byte("\n\n\n"), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), MaxLine*2+3), uint8(200))
	f.Add([]byte("tab\there\r\nnext"), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunkB uint8) {
		chunk := int(chunkB) + 1
		dir := t.TempDir()
		w, err := Open(dir, "f", 4096, 1000)
		if err != nil {
			t.Fatal(err)
		}
		clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		c := NewCapture(w, Stdout, func() time.Time { clock = clock.Add(time.Millisecond); return clock })
		for i := 0; i < len(data); i += chunk {
			if _, err := c.Write(data[i:min(i+chunk, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		var out bytes.Buffer
		if err := Copy(context.Background(), &out, dir, "f", ReadOptions{}); err != nil {
			t.Fatal(err)
		}
		want := string(data)
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		// Lines longer than the reassembly cap come back in pieces.
		got := out.String()
		if len(data) < maxAssembled && got != want {
			t.Fatalf("read back %q, want %q", got, want)
		}
	})
}

// FuzzParseRecord feeds arbitrary lines to the record parser: it never
// panics, and whatever it accepts re-encodes to an equivalent record.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte("2026-03-04T05:06:07.890123456Z stdout F hello"))
	f.Add([]byte("2026-03-04T05:06:07Z stderr P "))
	f.Add([]byte("x y z"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRecord(line)
		if err != nil {
			return
		}
		again, err := ParseRecord(bytes.TrimSuffix(AppendRecord(nil, r), []byte("\n")))
		if err != nil {
			t.Fatalf("re-encoded record does not parse: %v", err)
		}
		if !again.Time.Equal(r.Time) || again.Stream != r.Stream || again.Partial != r.Partial || !bytes.Equal(again.Content, r.Content) {
			t.Fatalf("round trip changed %+v to %+v", r, again)
		}
	})
}
