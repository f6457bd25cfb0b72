package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/muster-iot/muster/internal/config"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/postgres"
	"github.com/muster-iot/muster/internal/store/sqlite"
)

// storeBackend is what serve needs of a store backend: documents,
// attempts and streams, and twin queries run inside the database.
type storeBackend interface {
	store.StreamStore
	store.TwinQuerier
}

// openStore opens the store cfg.Store selects (validated by config): the
// SQLite file <data dir>/muster.db when empty, the SQLite file PATH for
// sqlite:PATH, or the PostgreSQL database of a postgres:// URL. Errors and
// logs name the database without its password.
func openStore(ctx context.Context, cfg config.Server, log *slog.Logger) (storeBackend, error) {
	if strings.HasPrefix(cfg.Store, "postgres://") || strings.HasPrefix(cfg.Store, "postgresql://") {
		st, err := postgres.Open(ctx, cfg.Store, postgres.Options{Logger: log.With("component", "store")})
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		log.Info("store opened", "backend", "postgres", "database", st.Target())
		return st, nil
	}
	path := filepath.Join(cfg.DataDir, "muster.db")
	if p, ok := strings.CutPrefix(cfg.Store, "sqlite:"); ok {
		path = p
	}
	st, err := sqlite.Open(ctx, path, sqlite.Options{Logger: log.With("component", "store")})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	log.Info("store opened", "backend", "sqlite", "path", path)
	return st, nil
}

// sharedChanges returns the store as the hub's change log when other
// instances may share it (PostgreSQL), so that changes made on one
// instance reach the sessions of the others; nil for SQLite, which one
// process owns.
func sharedChanges(st storeBackend) store.Streams {
	if _, ok := st.(*postgres.Store); ok {
		return st
	}
	return nil
}
