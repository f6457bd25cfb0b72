package provision

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestNewIDShape pins attempt IDs to fmt.Sprintf("%016x%s", UnixNano,
// 12 random hex digits), the form they had when fmt wrote them.
func TestNewIDShape(t *testing.T) {
	for _, tm := range []time.Time{time.Unix(0, 0), time.Unix(1_800_000_000, 123456789), time.Unix(0, 1), time.Unix(-1, 0)} {
		id := newID(tm)
		prefix := fmt.Sprintf("%016x", tm.UnixNano())
		if len(id) != len(prefix)+12 || id[:len(prefix)] != prefix {
			t.Errorf("newID(%v) = %q, want %s and 12 hex digits", tm, id, prefix)
		}
		for _, c := range id[len(prefix):] {
			if !strings.ContainsRune("0123456789abcdef", c) {
				t.Errorf("newID(%v) = %q: random part is not lower-case hex", tm, id)
			}
		}
	}
}
