package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// Defaults of [Options].
const (
	// DefaultStream is the name of the built-in endpoint's stream.
	DefaultStream = "events"
	// DefaultMaxBytes bounds the stream's size (bodies and metadata).
	DefaultMaxBytes = 1 << 30
	// DefaultMaxAge is how long messages are kept (Azure's default
	// retention of the built-in endpoint).
	DefaultMaxAge = 24 * time.Hour
	// DefaultTrimInterval is how often RunRetention trims when appends do
	// not ask for it earlier.
	DefaultTrimInterval = time.Minute
	// DefaultPollInterval is how often Follow reads the stream when no
	// in-process wake-up arrives (appends by other instances).
	DefaultPollInterval = time.Second
)

// Options configures an [Endpoint]. The zero value gives the defaults.
type Options struct {
	// Stream is the stream name; "" means DefaultStream.
	Stream string
	// MaxBytes bounds the stream's total size; 0 means DefaultMaxBytes.
	MaxBytes int64
	// MaxAge drops messages enqueued longer ago; 0 means DefaultMaxAge.
	MaxAge time.Duration
	// TrimInterval is the period of RunRetention; 0 means
	// DefaultTrimInterval.
	TrimInterval time.Duration
	// PollInterval is Follow's polling period; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// Now is the clock of age retention; nil means time.Now.
	Now func() time.Time
	// Logger receives retention messages; nil discards them.
	Logger *slog.Logger
}

func (o *Options) fill() error {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if err := store.CheckStreamName(o.Stream); err != nil {
		return fmt.Errorf("telemetry endpoint: %w", err)
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"MaxAge", &o.MaxAge, DefaultMaxAge},
		{"TrimInterval", &o.TrimInterval, DefaultTrimInterval},
		{"PollInterval", &o.PollInterval, DefaultPollInterval},
	} {
		switch {
		case *f.v < 0:
			return fmt.Errorf("telemetry endpoint: %s %s is negative", f.name, *f.v)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	switch {
	case o.MaxBytes < 0:
		return fmt.Errorf("telemetry endpoint: MaxBytes %d is negative", o.MaxBytes)
	case o.MaxBytes == 0:
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Filter selects messages by sender. The zero value selects all.
type Filter struct {
	// DeviceID, when not empty, keeps only that device's messages.
	DeviceID string
	// ModuleID, when not empty, keeps only that module's messages; it
	// requires DeviceID.
	ModuleID string
}

// Endpoint is the hub's built-in telemetry endpoint: a durable stream in
// the store, bounded by size and age. It is safe for concurrent use;
// several endpoints (in several processes) may share one stream.
type Endpoint struct {
	streams store.Streams
	notify  store.StreamNotifier // nil when the store offers no wake-ups
	opts    Options

	// appended counts bytes appended since the last trim; past a
	// fraction of MaxBytes, Append asks RunRetention (trimSoon) to trim
	// early, so the bound holds between periodic trims.
	appended atomic.Int64
	trimSoon chan struct{}
}

// NewEndpoint returns the endpoint keeping its stream in s. When s also
// implements store.StreamNotifier, Follow wakes up as soon as an append
// through s commits; it polls in any case, for appends by other processes.
func NewEndpoint(s store.Streams, opts Options) (*Endpoint, error) {
	if s == nil {
		return nil, errors.New("telemetry endpoint: no stream store")
	}
	if err := opts.fill(); err != nil {
		return nil, err
	}
	e := &Endpoint{streams: s, opts: opts, trimSoon: make(chan struct{}, 1)}
	if n, ok := s.(store.StreamNotifier); ok {
		e.notify = n
	}
	return e, nil
}

// Stream returns the name of the endpoint's stream.
func (e *Endpoint) Stream() string { return e.opts.Stream }

// Append stores messages atomically and durably and returns their seqs.
// Every message must be valid (see Message.Validate); at most
// store.MaxStreamAppend messages go in one call.
func (e *Endpoint) Append(ctx context.Context, msgs ...Message) ([]int64, error) {
	entries := make([]store.StreamEntry, len(msgs))
	size := 0
	for i, m := range msgs {
		entry, err := m.Entry()
		if err != nil {
			return nil, fmt.Errorf("append message %d: %w", i, err)
		}
		entries[i] = entry
		size += entry.Size()
	}
	seqs, err := e.streams.AppendMessages(ctx, e.opts.Stream, entries)
	if err != nil {
		return nil, fmt.Errorf("append %d messages: %w", len(msgs), err)
	}
	if e.appended.Add(int64(size)) >= e.opts.MaxBytes/8 {
		select {
		case e.trimSoon <- struct{}{}:
		default:
		}
	}
	return seqs, nil
}

// Read returns up to limit messages after seq after that match f, in order
// (limit 0: store.DefaultStreamReadLimit; see store.Streams.ReadMessages
// for the caps).
func (e *Endpoint) Read(ctx context.Context, after int64, f Filter, limit int) ([]Message, error) {
	entries, err := e.streams.ReadMessages(ctx, e.opts.Stream, after, store.StreamFilter{Key: f.DeviceID, Sub: f.ModuleID}, limit)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	out := make([]Message, len(entries))
	for i, entry := range entries {
		if out[i], err = MessageFromEntry(entry); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Stats describes the stream: its seqs, how many messages and bytes it
// keeps. Its LastSeq is where a reader of only new messages starts.
func (e *Endpoint) Stats(ctx context.Context) (store.StreamStats, error) {
	st, err := e.streams.StreamInfo(ctx, e.opts.Stream)
	if err != nil {
		return store.StreamStats{}, fmt.Errorf("describe telemetry stream: %w", err)
	}
	return st, nil
}

// Follow calls fn for every message after seq after that matches f, in
// order, and then for every new one as it arrives, until ctx ends (it
// returns ctx.Err()), fn returns an error (it returns that error) or
// reading fails. New messages are noticed at once when appended through
// the same store in this process, and within PollInterval otherwise.
// Messages retention dropped before Follow read them are skipped.
func (e *Endpoint) Follow(ctx context.Context, after int64, f Filter, fn func(Message) error) error {
	if after < 0 {
		return fmt.Errorf("follow messages: cursor %d is negative", after)
	}
	timer := time.NewTimer(e.opts.PollInterval)
	defer timer.Stop()
	for {
		var wake <-chan struct{}
		if e.notify != nil {
			wake = e.notify.StreamChanged(e.opts.Stream) // before reading, so no append is missed
		}
		msgs, err := e.Read(ctx, after, f, store.MaxStreamReadLimit)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := fn(m); err != nil {
				return err
			}
			after = m.Seq
		}
		if len(msgs) > 0 {
			continue // there may be more right away
		}
		timer.Reset(e.opts.PollInterval)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-timer.C:
		}
	}
}

// Trim applies the retention now: messages enqueued more than MaxAge ago
// and the oldest messages beyond MaxBytes are dropped. It returns how many.
func (e *Endpoint) Trim(ctx context.Context) (int, error) {
	e.appended.Store(0)
	n, err := e.streams.TrimStream(ctx, e.opts.Stream, store.Retention{
		MaxBytes: e.opts.MaxBytes,
		Before:   e.opts.Now().Add(-e.opts.MaxAge),
	})
	if err != nil {
		return n, fmt.Errorf("trim telemetry stream: %w", err)
	}
	return n, nil
}

// RunRetention trims the stream every TrimInterval, and early when appends
// through this endpoint have added an eighth of MaxBytes since the last
// trim, until ctx ends (it then returns nil) or the store closes (it
// returns that error). Other failures are logged and retried at the next
// period.
func (e *Endpoint) RunRetention(ctx context.Context) error {
	ticker := time.NewTicker(e.opts.TrimInterval)
	defer ticker.Stop()
	for {
		n, err := e.Trim(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, store.ErrClosed):
			return err
		case err != nil:
			e.opts.Logger.Warn("trim telemetry stream", "stream", e.opts.Stream, "err", err)
		case n > 0:
			e.opts.Logger.Debug("telemetry stream trimmed", "stream", e.opts.Stream, "dropped", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-e.trimSoon:
		}
	}
}
