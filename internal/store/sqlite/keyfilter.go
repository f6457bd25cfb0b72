package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/muster-iot/muster/internal/bloom"
)

// ErrInUse means another process (or another Store in this one) has the
// database open: one Store owns a database file.
var ErrInUse = errors.New("sqlite store: the database is in use by another process")

// keyFilterCapacity is the first stage of the key filter: 64Ki keys in
// 80 KiB; the filter grows by chaining stages as records are added.
const keyFilterCapacity = 1 << 16

// keyFilter answers Get for records that do not exist without a read
// transaction. Provisioning reads a registration record and a device that
// do not exist yet for every new device; in WAL mode every commit empties
// each reader connection's page cache, so such a miss costs a b-tree
// descent through the file (tens of microseconds).
//
// It is a Bloom filter of the (kind, id) of every document. It is built by
// one scan of the docs table when the store opens, while the writer adds
// the key of every document it puts before executing the statement, so the
// filter holds every committed key: a key committed before the scan's read
// snapshot is in the scan, and any later one was added by the writer. Until
// the scan ends, Get reads the database. Deleted keys stay in the filter,
// which then only costs a read; a "maybe" for a key never added (about 1%)
// costs the same read. It is correct only while this Store is the only
// writer, which the owner lock enforces.
type keyFilter struct {
	f        *bloom.Filter
	ready    atomic.Bool   // the scan is complete
	answered atomic.Uint64 // Gets answered "not found" from the filter
	cancel   context.CancelFunc
	done     chan struct{} // closed when the scan has ended
}

func filterKey(kind, id string) string { return kind + "\x00" + id }

// absent reports whether the record certainly does not exist.
func (k *keyFilter) absent(kind, id string) bool {
	if k == nil || !k.ready.Load() || k.f.MayContain(filterKey(kind, id)) {
		return false
	}
	k.answered.Add(1)
	return true
}

// add records that the document (kind, id) may exist. The writer calls it
// before the statement that may create the row.
func (k *keyFilter) add(kind, id string) {
	if k != nil {
		k.f.Add(filterKey(kind, id))
	}
}

// stop ends the scan if it still runs and waits for it.
func (k *keyFilter) stop() {
	if k != nil {
		k.cancel()
		<-k.done
	}
}

// startKeyFilter creates the key filter and starts its scan on a reader
// connection. It must run before the writer starts.
func (s *Store) startKeyFilter() {
	ctx, cancel := context.WithCancel(context.Background())
	k := &keyFilter{f: bloom.New(keyFilterCapacity), cancel: cancel, done: make(chan struct{})}
	s.keys = k
	go func() {
		defer close(k.done)
		start := time.Now()
		n, err := s.scanKeys(ctx, k.f)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("store key filter not built: lookups of missing records read the database", "err", err)
			}
			return
		}
		k.ready.Store(true)
		st := k.f.Stats()
		s.log.Debug("store key filter built", "records", n, "stages", st.Stages, "bytes", st.Bytes, "took", time.Since(start).Round(time.Millisecond))
	}()
}

// scanKeys adds the key of every document to f and returns their number.
func (s *Store) scanKeys(ctx context.Context, f *bloom.Filter) (int, error) {
	rows, err := s.rdb.QueryContext(ctx, sqlScanKeys)
	if err != nil {
		return 0, fmt.Errorf("scan document keys: %w", err)
	}
	defer rows.Close()
	n := 0
	var kind, id sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&kind, &id); err != nil {
			return n, fmt.Errorf("scan document keys: %w", err)
		}
		f.Add(filterKey(string(kind), string(id)))
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("scan document keys: %w", err)
	}
	return n, rows.Close()
}
