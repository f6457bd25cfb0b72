package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/muster-iot/muster/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Defaults of [Options].
const (
	DefaultAttemptLimit = 100000
	DefaultMaxBatch     = 256
	DefaultWriters      = 4
	DefaultBatchTimeout = 30 * time.Second
)

// minServerVersion is the oldest PostgreSQL (server_version_num) the SQL
// and the query dialect support.
const minServerVersion = 120000

// Options configures [Open]. The zero value gives the defaults.
type Options struct {
	// Logger receives migration, maintenance and reconnection messages; nil
	// discards them.
	Logger *slog.Logger
	// AttemptLimit is how many attempts the log keeps (the oldest are
	// dropped); 0 means DefaultAttemptLimit. Instances sharing a database
	// should use the same limit: each trims to its own.
	AttemptLimit int
	// MaxBatch caps how many write requests share one transaction; 0 means
	// DefaultMaxBatch.
	MaxBatch int
	// Writers is how many batches run at once (each on its own
	// connection); 0 means DefaultWriters.
	Writers int
	// BatchTimeout bounds one batch, retries included; 0 means
	// DefaultBatchTimeout. A request whose batch times out before its
	// COMMIT was sent is answered with an error and not applied.
	BatchTimeout time.Duration
	// NoNotify turns off LISTEN/NOTIFY, for engines that lack it (such as
	// CockroachDB): stream readers of other instances then learn about
	// appends by polling only.
	NoNotify bool
}

// Stats are cumulative counters of the group-commit writers.
type Stats struct {
	// Batches is the number of transactions that decided the outcome of
	// their requests: committed ones, and those rolled back because their
	// only request failed.
	Batches uint64
	// Requests is the number of write requests executed in committed
	// transactions (including requests that failed their own precondition).
	Requests uint64
	// Rows is the number of documents, attempts and stream entries written
	// or deleted by successful requests.
	Rows uint64
	// SlowBatches counts batches that had to run request by request, in
	// savepoints, because a request failed.
	SlowBatches uint64
	// Retries counts transactions retried after a deadlock, a
	// serialization failure or a lost connection.
	Retries uint64
}

// Store is the PostgreSQL implementation of the store contract. It is safe
// for concurrent use, and several stores (in one or many processes) may
// share a database.
type Store struct {
	log    *slog.Logger
	opts   Options
	pool   *pgxpool.Pool
	target string // the database, without secrets, for messages

	instance string // random; NOTIFY payloads carry it so a store skips its own
	channel  string // NOTIFY channel of this schema

	wake         store.StreamWaker
	listenCancel context.CancelFunc
	listenDone   chan struct{}

	// mu guards closed and the sends on queue: senders hold it shared,
	// Close holds it exclusively while it closes queue.
	mu      sync.RWMutex
	closed  bool
	isDone  atomic.Bool // closed, readable without mu
	queue   chan *request
	writers sync.WaitGroup

	lastTick atomic.Int64 // Unix microseconds of the last timestamp handed out

	batches, requests, rows, slow, retries atomic.Uint64
}

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword/value string, as libpq and pgx accept; pool_max_conns sets the
// pool size), applies the pending schema migrations (several instances may
// start at once: one migrates, the others wait for it) and starts the
// writers. Errors never include the password.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err) // pgconn redacts the password
	}
	s := &Store{
		log:      opts.Logger,
		opts:     opts,
		target:   describe(cfg.ConnConfig.Config),
		instance: randomHex(8),
		queue:    make(chan *request, opts.MaxBatch),
	}
	configurePool(cfg, dsn, opts)
	ok := false
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", s.target, err)
	}
	defer func() {
		if !ok {
			s.stopListener()
			s.pool.Close()
		}
	}()
	schema, err := s.checkServer(ctx)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", s.target, err)
	}
	s.channel = notifyChannel(schema)
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", s.target, err)
	}
	if err := s.initAttempts(ctx); err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", s.target, err)
	}
	if !opts.NoNotify {
		if err := s.startListener(ctx); err != nil {
			return nil, fmt.Errorf("open postgres store %s: %w", s.target, err)
		}
	}
	ok = true
	for range opts.Writers {
		s.writers.Go(s.run)
	}
	return s, nil
}

func (o *Options) fill() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{{"AttemptLimit", &o.AttemptLimit, DefaultAttemptLimit}, {"MaxBatch", &o.MaxBatch, DefaultMaxBatch}, {"Writers", &o.Writers, DefaultWriters}} {
		switch {
		case *f.v < 0:
			return fmt.Errorf("open postgres store: %s %d is negative", f.name, *f.v)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	switch {
	case o.BatchTimeout < 0:
		return fmt.Errorf("open postgres store: BatchTimeout %s is negative", o.BatchTimeout)
	case o.BatchTimeout == 0:
		o.BatchTimeout = DefaultBatchTimeout
	}
	return nil
}

// configurePool sizes the pool for the writers, the readers and the
// listener (unless the DSN sets pool_max_conns) and names the application
// in pg_stat_activity (unless the DSN does).
func configurePool(cfg *pgxpool.Config, dsn string, opts Options) {
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = int32(opts.Writers + max(4, 2*runtime.GOMAXPROCS(0)) + 1)
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set {
		cfg.ConnConfig.RuntimeParams["application_name"] = "muster"
	}
}

// describe names the database without secrets: user, address, database.
func describe(c pgconn.Config) string {
	host := c.Host
	if strings.HasPrefix(host, "/") {
		host = "[" + host + "]" // a Unix socket directory
	}
	return fmt.Sprintf("postgres://%s@%s/%s", c.User, net.JoinHostPort(host, strconv.Itoa(int(c.Port))), c.Database)
}

// Target names the database the store uses, without secrets.
func (s *Store) Target() string { return s.target }

// checkServer verifies what the schema relies on and returns the schema
// the store's tables live in.
func (s *Store) checkServer(ctx context.Context) (string, error) {
	var encoding string
	var version int
	var schema *string
	err := s.pool.QueryRow(ctx, `SELECT current_setting('server_encoding'), CAST(current_setting('server_version_num') AS INTEGER), current_schema()`).
		Scan(&encoding, &version, &schema)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	if !strings.EqualFold(encoding, "UTF8") {
		return "", fmt.Errorf("the database encoding is %s; the store needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')", encoding)
	}
	if version < minServerVersion {
		return "", fmt.Errorf("the server is PostgreSQL %d.%d; the store needs 12 or newer", version/10000, version%10000)
	}
	if schema == nil {
		return "", errors.New("no schema of the search_path exists; create it first (CREATE SCHEMA …) or fix search_path")
	}
	return *schema, nil
}

// migrate applies the pending migrations under goose's table lock, so
// instances starting at once migrate one after the other (the later ones
// find nothing to do).
func (s *Store) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	locker, err := lock.NewPostgresTableLocker(
		lock.WithTableName("muster_migration_lock"),
		// Instances starting together wait for the first one's migrations:
		// probe often, for up to five minutes.
		lock.WithTableLockTimeout(250*time.Millisecond, 1200),
		lock.WithTableLogger(s.log),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close() // does not close the pool
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithDisableGlobalRegistry(true),
		goose.WithLocker(locker),
		goose.WithSlog(s.log),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range res {
		s.log.Info("postgres store migrated", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

// AttemptLimit returns how many attempts the log keeps.
func (s *Store) AttemptLimit() int { return s.opts.AttemptLimit }

// Stats returns the writers' cumulative counters.
func (s *Store) Stats() Stats {
	return Stats{
		Batches: s.batches.Load(), Requests: s.requests.Load(), Rows: s.rows.Load(),
		SlowBatches: s.slow.Load(), Retries: s.retries.Load(),
	}
}

// Close refuses new requests, lets the writers finish every request they
// have already accepted, stops listening and closes the pool. Calling it
// again returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.isDone.Store(true)
	close(s.queue)
	s.mu.Unlock()
	s.writers.Wait()
	s.stopListener()
	s.wake.Close()
	s.pool.Close()
	return nil
}

// readErr maps an error of a read: after Close it is ErrClosed.
func (s *Store) readErr(op string, err error) error {
	if s.isDone.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// tick returns the timestamp of one write: now in UTC at the microsecond
// resolution of TIMESTAMPTZ, strictly after every timestamp this store
// handed out before.
func (s *Store) tick() time.Time {
	for {
		last := s.lastTick.Load()
		now := time.Now().UnixMicro()
		if now <= last {
			now = last + 1
		}
		if s.lastTick.CompareAndSwap(last, now) {
			return time.UnixMicro(now).UTC()
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it aborts the program instead)
	return hex.EncodeToString(b)
}

var (
	_ store.StreamStore    = (*Store)(nil)
	_ store.StreamNotifier = (*Store)(nil)
	_ store.TwinQuerier    = (*Store)(nil)
)
