package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/muster-iot/muster/internal/store/sqlite"
	"github.com/muster-iot/muster/internal/store/twinquerytest"
)

// TestQueryTwins runs the twin query agreement suite: SQLite's SQL gives
// the answers of the in-memory reference.
func TestQueryTwins(t *testing.T) {
	twinquerytest.Run(t, "sqlite", func(t *testing.T) twinquerytest.Store {
		return openAt(t, filepath.Join(t.TempDir(), "q.db"), sqlite.Options{})
	})
}

// FuzzQueryTwinsAgree feeds the fuzzer's query texts to SQLite and the
// reference.
func FuzzQueryTwinsAgree(f *testing.F) {
	twinquerytest.Fuzz(f, "sqlite", openAt(f, filepath.Join(f.TempDir(), "fuzz.db"), sqlite.Options{}))
}
