package hub

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/telemetry"
)

// maxTelemetryBatchBytes bounds the bodies one telemetry append of a
// session carries (it always carries at least one message); at most
// store.MaxStreamAppend messages go in one append.
const maxTelemetryBatchBytes = 4 << 20

// PublishAsync handles a message the client published, like Publish, but
// does not wait for telemetry to be stored: telemetry joins the session's
// queue, and the messages queued meanwhile are appended to the built-in
// endpoint together, one append at a time, so they are stored in the
// order PublishAsync received them. done is called exactly once, with nil
// once the message is accepted (telemetry: durably stored) or with the
// error Publish would have returned; it may be called before PublishAsync
// returns (refusals, twin requests and method responses, which are served
// at once), and otherwise runs on the session's append goroutine, so it
// must not block for long. done calls come in the order of the
// PublishAsync calls; more is true when the done call of the next
// message follows at once (the outcomes of one append), so a transport
// can answer them together after the last one, which has more false.
//
// An append bounds itself with the context of its oldest message, which
// must therefore stay valid until that message's done is called. Once an
// append has failed, every later telemetry message of the session fails
// with the same error without being stored (the transport ends the
// connection), so no message is stored after a newer one of the session.
func (s *Session) PublishAsync(ctx context.Context, topic string, payload []byte, retain bool, done func(err error, more bool)) {
	if err := s.checkPublish(topic); err != nil {
		s.tq.enqueueDone(done, err)
		return
	}
	s.touch() // lastActivityTime (write-throttled)
	if _, _, bag, err := telemetry.ParseTelemetryTopic(topic); err == nil {
		m, err := s.telemetryMessage(bag, payload, retain)
		if err != nil {
			s.tq.enqueueDone(done, err)
			return
		}
		s.tq.enqueue(s, queuedTelemetry{ctx: ctx, msg: m, stored: true, done: done})
		return
	}
	s.tq.enqueueDone(done, s.serveRequest(ctx, topic, payload))
}

// queuedTelemetry is a telemetry message waiting for its append (stored
// true), or an outcome already known (err) that waits only for the
// messages before it, so that done calls keep their order.
type queuedTelemetry struct {
	ctx    context.Context
	msg    telemetry.Message
	stored bool
	err    error
	done   func(err error, more bool)
}

// telemetryQueue is a session's queue of telemetry waiting to be
// appended. An append goroutine runs while the queue is not empty; it
// appends what is queued as one batch, reports the outcomes in order and
// takes the next batch. The zero value is ready to use.
type telemetryQueue struct {
	mu      sync.Mutex
	pending []queuedTelemetry
	// running is closed when the append goroutine exits; nil while none
	// runs.
	running chan struct{}
	// failed is the first failed append's error; later messages fail with
	// it.
	failed error
}

// enqueueDone reports an outcome known at once: directly when nothing is
// queued (the common case), else after the messages queued before it.
func (q *telemetryQueue) enqueueDone(done func(error, bool), err error) {
	q.mu.Lock()
	if q.running == nil {
		q.mu.Unlock()
		done(err, false)
		return
	}
	q.pending = append(q.pending, queuedTelemetry{err: err, done: done})
	q.mu.Unlock()
}

// enqueue queues a message and starts the append goroutine if none runs.
func (q *telemetryQueue) enqueue(s *Session, t queuedTelemetry) {
	q.mu.Lock()
	q.pending = append(q.pending, t)
	if q.running != nil {
		q.mu.Unlock()
		return
	}
	running := make(chan struct{})
	q.running = running
	q.mu.Unlock()
	go q.run(s, running)
}

// run appends batches until the queue is empty.
func (q *telemetryQueue) run(s *Session, running chan struct{}) {
	defer close(running)
	var batch []queuedTelemetry
	var msgs []telemetry.Message
	for {
		q.mu.Lock()
		batch = q.takeLocked(batch[:0])
		if len(batch) == 0 {
			q.running = nil
			q.pending = nil // let a large backlog's array go
			q.mu.Unlock()
			return
		}
		failed := q.failed
		q.mu.Unlock()

		msgs = msgs[:0]
		var ctx context.Context
		for _, t := range batch {
			if t.stored {
				msgs = append(msgs, t.msg)
				if ctx == nil {
					ctx = t.ctx
				}
			}
		}
		err := failed
		if err == nil && len(msgs) > 0 {
			if _, aerr := s.svc.tel.Append(ctx, msgs...); aerr != nil {
				err = fmt.Errorf("store telemetry of %s: %w", who(s.id.DeviceID, s.id.ModuleID), aerr)
				level := slog.LevelError
				if ctx.Err() != nil { // the connection's requests ended (server shutdown, timeout)
					level = slog.LevelWarn
				}
				s.log.Log(context.Background(), level, "telemetry not stored; the client will not get its acknowledgements",
					"messages", len(msgs), "err", aerr)
				q.mu.Lock()
				q.failed = err
				q.mu.Unlock()
			}
		}
		for i, t := range batch {
			more := i < len(batch)-1
			if t.stored {
				t.done(err, more)
			} else {
				t.done(t.err, more)
			}
			batch[i] = queuedTelemetry{}
		}
		clear(msgs)
	}
}

// takeLocked moves the next batch from the queue to batch: messages up
// to store.MaxStreamAppend and maxTelemetryBatchBytes (at least one), and
// the known outcomes between them.
func (q *telemetryQueue) takeLocked(batch []queuedTelemetry) []queuedTelemetry {
	n, size, count := 0, 0, 0
	for _, t := range q.pending {
		if t.stored {
			if count == store.MaxStreamAppend || (count > 0 && size+len(t.msg.Body) > maxTelemetryBatchBytes) {
				break
			}
			count++
			size += len(t.msg.Body)
		}
		n++
	}
	batch = append(batch, q.pending[:n]...)
	clear(q.pending[:n])
	q.pending = q.pending[n:]
	return batch
}

// wait returns once the append goroutine, if any, has exited.
func (q *telemetryQueue) wait() {
	q.mu.Lock()
	running := q.running
	q.mu.Unlock()
	if running != nil {
		<-running
	}
}

// telemetryMessage builds the message of a telemetry publish.
func (s *Session) telemetryMessage(bag string, payload []byte, retain bool) (telemetry.Message, error) {
	m, err := telemetry.NewMessage(s.id.DeviceID, s.id.ModuleID, bag, payload, s.svc.now())
	if err != nil {
		return telemetry.Message{}, fmt.Errorf("accept telemetry: %w", err)
	}
	if retain { // MQTT RETAIN is not retained; Azure marks the message instead
		if m.Properties == nil {
			m.Properties = map[string]string{}
		}
		m.Properties["mqtt-retain"] = "true"
	}
	return m, nil
}

// serveRequest serves a publish that is not telemetry: a direct-method
// response or a twin request.
func (s *Session) serveRequest(ctx context.Context, topic string, payload []byte) error {
	if strings.HasPrefix(topic, methodResponsePrefix) {
		return s.answerMethod(topic, payload)
	}
	req, err := ParseTwinTopic(topic)
	if err != nil { // checkPublish accepted it
		return fmt.Errorf("%w: %w", ErrTopicNotAllowed, err)
	}
	s.serveTwin(ctx, req, payload)
	return nil
}
