package docker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The stream identifiers of Docker's multiplexed attach/logs stream.
const (
	streamStdin     = 0
	streamStdout    = 1
	streamStderr    = 2
	streamSystemErr = 3
)

// frameHeaderLen is the size of a multiplexed-stream frame header:
// [stream, 0, 0, 0, size (uint32, big-endian)].
const frameHeaderLen = 8

// maxSystemErr caps the error message carried by a systemerr frame.
const maxSystemErr = 64 << 10

// ErrBadFrame means a multiplexed stream is malformed.
var ErrBadFrame = errors.New("docker: malformed multiplexed stream")

// StreamError is an error the Docker daemon reported inside a multiplexed
// stream (a systemerr frame).
type StreamError struct {
	Message string
}

func (e *StreamError) Error() string { return "docker stream error: " + e.Message }

// Demux copies Docker's multiplexed stream (the body of logs and attach for
// containers without a TTY) from src, writing stdout frames (and stdin
// frames, as Docker's stdcopy does) to stdout and stderr frames to stderr.
// It returns the number of payload bytes written and nil at a clean end of
// stream; a truncated frame is io.ErrUnexpectedEOF, an unknown stream id
// ErrBadFrame, and a systemerr frame a *StreamError. Payloads are streamed,
// never buffered whole, so a hostile size cannot force a large allocation.
func Demux(stdout, stderr io.Writer, src io.Reader) (int64, error) {
	var hdr [frameHeaderLen]byte
	var written int64
	for {
		n, err := io.ReadFull(src, hdr[:])
		if err == io.EOF && n == 0 {
			return written, nil
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return written, fmt.Errorf("read frame header: %w", err)
		}
		size := int64(binary.BigEndian.Uint32(hdr[4:]))
		var dst io.Writer
		switch hdr[0] {
		case streamStdin, streamStdout:
			dst = stdout
		case streamStderr:
			dst = stderr
		case streamSystemErr:
			msg := make([]byte, min(size, maxSystemErr))
			if _, err := io.ReadFull(src, msg); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return written, fmt.Errorf("read systemerr frame: %w", err)
			}
			return written, &StreamError{Message: string(msg)}
		default:
			return written, fmt.Errorf("%w: unknown stream id %d", ErrBadFrame, hdr[0])
		}
		m, err := io.CopyN(dst, src, size)
		written += m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return written, fmt.Errorf("copy frame of stream %d: %w", hdr[0], err)
		}
	}
}
