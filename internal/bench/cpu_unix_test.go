//go:build unix

package bench

import (
	"crypto/sha256"
	"testing"
	"time"
)

// TestProcessCPU checks that the process CPU time is reported and grows
// while this goroutine computes.
func TestProcessCPU(t *testing.T) {
	before, ok := processCPU()
	if !ok {
		t.Fatal("processCPU is not reported on this platform")
	}
	sum := sha256.Sum256(nil)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 1<<26 && time.Now().Before(deadline); i++ {
		sum = sha256.Sum256(sum[:])
		if i%4096 == 0 {
			if now, _ := processCPU(); now > before {
				return
			}
		}
	}
	after, _ := processCPU()
	t.Fatalf("process CPU time did not grow while computing: %v then %v", before, after)
}
