package docker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// frame builds one multiplexed-stream frame.
func frame(stream byte, payload string) []byte {
	var hdr [frameHeaderLen]byte
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(payload)))
	return append(hdr[:], payload...)
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// tagged records each write with the stream it came from.
type tagged struct {
	buf *bytes.Buffer
	tag string
}

func (w tagged) Write(p []byte) (int, error) {
	w.buf.WriteString(w.tag)
	return w.buf.Write(p)
}

func TestDemux(t *testing.T) {
	tests := []struct {
		name       string
		in         []byte
		wantOut    string
		wantErrIs  error
		wantStream bool
	}{
		{name: "empty stream", in: nil},
		{name: "stdout and stderr", in: join(frame(1, "out1\n"), frame(2, "err1\n"), frame(1, "out2\n")), wantOut: "O:out1\nE:err1\nO:out2\n"},
		{name: "stdin goes to stdout", in: frame(0, "in\n"), wantOut: "O:in\n"},
		{name: "empty frame", in: join(frame(1, ""), frame(1, "x")), wantOut: "O:x"},
		{name: "truncated header", in: []byte{1, 0, 0}, wantErrIs: io.ErrUnexpectedEOF},
		{name: "truncated payload", in: frame(1, "hello")[:10], wantOut: "O:he", wantErrIs: io.ErrUnexpectedEOF},
		{name: "unknown stream", in: frame(7, "x"), wantErrIs: ErrBadFrame},
		{name: "systemerr", in: join(frame(1, "ok\n"), frame(3, "boom")), wantOut: "O:ok\n", wantStream: true},
		{name: "truncated systemerr", in: frame(3, "boom")[:9], wantErrIs: io.ErrUnexpectedEOF},
		{name: "huge declared size", in: []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 'a'}, wantOut: "O:a", wantErrIs: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := Demux(tagged{&out, "O:"}, tagged{&out, "E:"}, bytes.NewReader(tc.in))
			if diff := cmp.Diff(tc.wantOut, out.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			switch {
			case tc.wantErrIs != nil:
				if !errors.Is(err, tc.wantErrIs) {
					t.Errorf("error %v, want %v", err, tc.wantErrIs)
				}
			case tc.wantStream:
				var se *StreamError
				if !errors.As(err, &se) || se.Message != "boom" {
					t.Errorf("error %v, want a StreamError boom", err)
				}
			case err != nil:
				t.Fatal(err)
			}
			if n < 0 || int(n) > len(tc.in) {
				t.Errorf("written %d of %d input bytes", n, len(tc.in))
			}
		})
	}
}

// FuzzDemux checks that the demultiplexer never panics on arbitrary input
// and that a stream built from frames comes back exactly, per stream.
func FuzzDemux(f *testing.F) {
	f.Add([]byte{}, []byte("hello"), []byte("world"))
	f.Add(join(frame(1, "a"), frame(2, "b")), []byte("x"), []byte(""))
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0, 2, 'e', 'r'}, []byte(""), []byte("z"))
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, []byte("1"), []byte("2"))
	f.Fuzz(func(t *testing.T, raw, a, b []byte) {
		// Arbitrary bytes: no panic, output never exceeds input.
		var sink bytes.Buffer
		n, _ := Demux(&sink, &sink, bytes.NewReader(raw))
		if int(n) != sink.Len() || sink.Len() > len(raw) {
			t.Fatalf("wrote %d (counted %d) from %d input bytes", sink.Len(), n, len(raw))
		}
		// Well-formed frames: exact per-stream round trip.
		in := join(frame(1, string(a)), frame(2, string(b)), frame(1, string(b)), frame(2, string(a)))
		var out, errOut bytes.Buffer
		if _, err := Demux(&out, &errOut, bytes.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		if out.String() != string(a)+string(b) || errOut.String() != string(b)+string(a) {
			t.Fatalf("round trip: stdout %q stderr %q", out.String(), errOut.String())
		}
	})
}
