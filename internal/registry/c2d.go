package registry

// Cloud-to-device (C2D) message queues (hub-edge-protocol §2.4, §4.8).
//
// Storage: each queued message is its own record of kind "c2dMessage"
// (KindCloudMessage) whose ID is lower(hub)+"/"+deviceId+"/"+lockToken and
// whose group is lower(hub)+"/"+deviceId, so a device's queue is one List
// by group (in lock-token order, which the hub makes its send order) and
// its depth one Count. Records rather than a stream: a message leaves the
// queue when its device acknowledges it, or when it expires, which is not
// always the oldest one, while a stream only ever drops its oldest
// entries. Every message names the generationId of the device it was sent
// to, so the queue of a device deleted and created again under the same ID
// never reaches the new identity; such records, and expired ones, are
// deleted when the queue is read and by SweepCloudMessages.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// KindCloudMessage is the store kind of queued cloud-to-device messages.
const KindCloudMessage store.Kind = "c2dMessage"

// ErrCloudQueueFull means a device's cloud-to-device queue already holds
// as many messages as it may.
var ErrCloudQueueFull = errors.New("registry: the device's cloud-to-device queue is full")

// maxLockTokenLen caps a lock token (the hub's are 41 bytes).
const maxLockTokenLen = 128

// sweepPage is how many records one step of SweepCloudMessages reads.
const sweepPage = 500

// CloudMessage is a cloud-to-device message in its device's queue.
type CloudMessage struct {
	// LockToken identifies the message in its device's queue and orders
	// the queue (byte order). The sender chooses it: 1 to 128 characters,
	// no '/', unique per device.
	LockToken string `json:"lockToken"`
	// DeviceID is the addressee.
	DeviceID string `json:"deviceId"`
	// DeviceGenerationID is the generationId of the device the message was
	// sent to; EnqueueCloudMessage sets it.
	DeviceGenerationID string `json:"deviceGenerationId"`
	// EnqueuedTime is when the hub accepted the message.
	EnqueuedTime time.Time `json:"enqueuedTime"`
	// ExpiryTime is when the message is dropped undelivered.
	ExpiryTime time.Time `json:"expiryTime"`
	// SystemProperties and Properties are the message's system and
	// application properties (telemetry's names).
	SystemProperties map[string]string `json:"systemProperties,omitempty"`
	Properties       map[string]string `json:"properties,omitempty"`
	// Body is the payload.
	Body []byte `json:"body"`
}

// CloudSweep is what SweepCloudMessages did.
type CloudSweep struct {
	// Dropped counts the records deleted: expired messages and messages of
	// devices deleted (or deleted and created again) since.
	Dropped int
	// Waiting lists, once each, the devices that still have messages.
	Waiting []string
}

func (h *Hub) cloudKey(deviceID, lockToken string) string {
	return h.key(deviceID) + "/" + lockToken
}

// EnqueueCloudMessage adds m to the queue of device m.DeviceID unless it
// already holds depth live messages (expired messages and those of an
// earlier incarnation of the device are deleted first when the queue
// looks full). It returns once the message is durable. Errors: ErrNotFound
// (no such device), ErrCloudQueueFull, ErrExists (the lock token is
// taken), or an *InvalidError for a malformed lock token.
//
// The depth check and the write are two steps: callers serialise the
// enqueues of one device (the hub does, per process); enqueues through
// several processes at once may overshoot depth by the number of
// processes.
func (h *Hub) EnqueueCloudMessage(ctx context.Context, m *CloudMessage, depth int, now time.Time) error {
	if err := checkLockToken(m.LockToken); err != nil {
		return err
	}
	d, err := h.GetDevice(ctx, m.DeviceID)
	if err != nil {
		return fmt.Errorf("queue cloud-to-device message: %w", err)
	}
	n, err := h.docs.Count(ctx, KindCloudMessage, h.key(m.DeviceID))
	if err != nil {
		return fmt.Errorf("count the cloud-to-device queue of %s: %w", m.DeviceID, err)
	}
	if n >= depth {
		live, err := h.PendingCloudMessages(ctx, m.DeviceID, now)
		if err != nil {
			return err
		}
		if len(live) >= depth {
			return fmt.Errorf("queue cloud-to-device message for %s: %w: %d messages wait", m.DeviceID, ErrCloudQueueFull, len(live))
		}
	}
	m.DeviceGenerationID = d.GenerationID
	doc, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode cloud-to-device message for %s: %w", m.DeviceID, err)
	}
	_, err = h.docs.Put(ctx, store.Record{Kind: KindCloudMessage, ID: h.cloudKey(m.DeviceID, m.LockToken), Group: h.key(m.DeviceID), Doc: doc},
		store.Cond{IfNoneMatch: true})
	switch {
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("queue cloud-to-device message for %s: %w: lock token %s is taken", m.DeviceID, ErrExists, m.LockToken)
	case err != nil:
		return fmt.Errorf("store cloud-to-device message for %s: %w", m.DeviceID, err)
	}
	return nil
}

// PendingCloudMessages returns the live messages queued for a device, in
// lock-token order. It deletes the expired ones (ExpiryTime not after now)
// and those sent to an earlier incarnation of the device on the way. A
// device that does not exist has none.
func (h *Hub) PendingCloudMessages(ctx context.Context, deviceID string, now time.Time) ([]*CloudMessage, error) {
	generation := ""
	switch d, err := h.GetDevice(ctx, deviceID); {
	case err == nil:
		generation = d.GenerationID
	case !errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("read the cloud-to-device queue of %s: %w", deviceID, err)
	}
	var (
		out   []*CloudMessage
		after string
	)
	for {
		recs, err := h.docs.List(ctx, KindCloudMessage, store.ListOptions{Group: h.key(deviceID), After: after, Limit: sweepPage})
		if err != nil {
			return nil, fmt.Errorf("read the cloud-to-device queue of %s: %w", deviceID, err)
		}
		for _, rec := range recs {
			m, err := decodeCloudMessage(rec)
			if err != nil {
				return nil, err
			}
			if generation == "" || m.DeviceGenerationID != generation || !m.ExpiryTime.After(now) {
				if err := h.deleteCloudRecord(ctx, rec.ID); err != nil {
					return nil, err
				}
				continue
			}
			out = append(out, m)
		}
		if len(recs) < sweepPage {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
}

// CompleteCloudMessage removes a message from its device's queue (the
// device acknowledged it). A message already gone is not an error.
func (h *Hub) CompleteCloudMessage(ctx context.Context, deviceID, lockToken string) error {
	if err := checkLockToken(lockToken); err != nil {
		return err
	}
	return h.deleteCloudRecord(ctx, h.cloudKey(deviceID, lockToken))
}

// CloudMessageCount returns how many messages are queued for a device
// (expired ones included until they are swept).
func (h *Hub) CloudMessageCount(ctx context.Context, deviceID string) (int, error) {
	n, err := h.docs.Count(ctx, KindCloudMessage, h.key(deviceID))
	if err != nil {
		return 0, fmt.Errorf("count the cloud-to-device queue of %s: %w", deviceID, err)
	}
	return n, nil
}

// AnyCloudMessages reports whether any device of any hub in the store has
// a queued message (one cheap count, so listings skip per-device counts
// when nothing is queued).
func (h *Hub) AnyCloudMessages(ctx context.Context) (bool, error) {
	n, err := h.docs.Count(ctx, KindCloudMessage, "")
	if err != nil {
		return false, fmt.Errorf("count cloud-to-device messages: %w", err)
	}
	return n > 0, nil
}

// PurgeCloudMessages deletes every message queued for a device and returns
// how many it deleted.
func (h *Hub) PurgeCloudMessages(ctx context.Context, deviceID string) (int, error) {
	n := 0
	for {
		recs, err := h.docs.List(ctx, KindCloudMessage, store.ListOptions{Group: h.key(deviceID), Limit: sweepPage})
		if err != nil {
			return n, fmt.Errorf("purge the cloud-to-device queue of %s: %w", deviceID, err)
		}
		for _, rec := range recs {
			if err := h.deleteCloudRecord(ctx, rec.ID); err != nil {
				return n, err
			}
			n++
		}
		if len(recs) < sweepPage {
			return n, nil
		}
	}
}

// SweepCloudMessages goes through every queued message of this hub once:
// it deletes the expired ones and those whose device is gone or was
// created again since, and lists the devices that still have messages.
func (h *Hub) SweepCloudMessages(ctx context.Context, now time.Time) (CloudSweep, error) {
	var (
		res         CloudSweep
		prefix      = strings.ToLower(h.host) + "/"
		generations = map[string]string{} // device ID → generation ("": gone)
		waiting     = map[string]bool{}
	)
	after := prefix
	for {
		recs, err := h.docs.List(ctx, KindCloudMessage, store.ListOptions{After: after, Limit: sweepPage})
		if err != nil {
			return res, fmt.Errorf("sweep cloud-to-device messages: %w", err)
		}
		for _, rec := range recs {
			if !strings.HasPrefix(rec.ID, prefix) {
				return res, nil // past this hub's records
			}
			m, err := decodeCloudMessage(rec)
			if err != nil {
				return res, err
			}
			gen, known := generations[m.DeviceID]
			if !known {
				switch d, err := h.GetDevice(ctx, m.DeviceID); {
				case err == nil:
					gen = d.GenerationID
				case !errors.Is(err, ErrNotFound):
					return res, fmt.Errorf("sweep cloud-to-device messages: %w", err)
				}
				generations[m.DeviceID] = gen
			}
			if gen == "" || m.DeviceGenerationID != gen || !m.ExpiryTime.After(now) {
				if err := h.deleteCloudRecord(ctx, rec.ID); err != nil {
					return res, err
				}
				res.Dropped++
				continue
			}
			if !waiting[m.DeviceID] {
				waiting[m.DeviceID] = true
				res.Waiting = append(res.Waiting, m.DeviceID)
			}
		}
		if len(recs) < sweepPage {
			return res, nil
		}
		after = recs[len(recs)-1].ID
	}
}

// deleteCloudRecord deletes one message record; one already gone is fine.
func (h *Hub) deleteCloudRecord(ctx context.Context, id string) error {
	if err := h.docs.Delete(ctx, KindCloudMessage, id, ""); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete cloud-to-device message %s: %w", id, err)
	}
	return nil
}

func decodeCloudMessage(rec store.Record) (*CloudMessage, error) {
	var m CloudMessage
	if err := json.Unmarshal(rec.Doc, &m); err != nil {
		return nil, fmt.Errorf("decode cloud-to-device message %s: %w", rec.ID, err)
	}
	return &m, nil
}

// checkLockToken reports why a lock token cannot name a queued message.
func checkLockToken(t string) error {
	switch {
	case t == "" || len(t) > maxLockTokenLen:
		return invalid("lockToken", "must be 1 to %d characters", maxLockTokenLen)
	case strings.ContainsAny(t, "/\x00"):
		return invalid("lockToken", "%.40q contains '/' or NUL", t)
	}
	return nil
}
