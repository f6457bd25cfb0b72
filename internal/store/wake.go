package store

import "sync"

// StreamWaker hands out the channels of StreamNotifier.StreamChanged for a
// backend: one channel per stream, closed and forgotten when the backend
// calls Notify for that stream (an append committed), All (any stream may
// have changed) or Close (every later Changed gets a closed channel). The
// zero value is ready to use.
type StreamWaker struct {
	mu     sync.Mutex
	closed bool
	chans  map[string]chan struct{}
}

// Changed returns the channel closed at stream's next wake-up.
func (w *StreamWaker) Changed(stream string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	ch, ok := w.chans[stream]
	if !ok {
		if w.chans == nil {
			w.chans = map[string]chan struct{}{}
		}
		ch = make(chan struct{})
		w.chans[stream] = ch
	}
	return ch
}

// Notify wakes the readers of stream.
func (w *StreamWaker) Notify(stream string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.chans[stream]; ok {
		close(ch)
		delete(w.chans, stream)
	}
}

// All wakes the readers of every stream.
func (w *StreamWaker) All() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeAllLocked()
}

// Close wakes every reader, now and from then on.
func (w *StreamWaker) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.wakeAllLocked()
}

// wakeAllLocked closes and forgets every channel; w.mu is held.
func (w *StreamWaker) wakeAllLocked() {
	for stream, ch := range w.chans {
		close(ch)
		delete(w.chans, stream)
	}
}
