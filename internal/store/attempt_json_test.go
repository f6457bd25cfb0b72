package store_test

import (
	"testing"

	"github.com/muster-iot/muster/internal/fastjson/fastjsontest"
	"github.com/muster-iot/muster/internal/store"
)

// TestAttemptAppendJSON pins the fast attempt document to json.Marshal's.
func TestAttemptAppendJSON(t *testing.T) {
	fastjsontest.Check(t, &store.Attempt{})
}
