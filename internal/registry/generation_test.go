package registry

import (
	"regexp"
	"testing"
)

// TestGenerationIDShape pins the generation ID's form: "6" and 17 decimal
// digits, as fmt.Sprintf("6%017d", n) wrote it.
func TestGenerationIDShape(t *testing.T) {
	re := regexp.MustCompile(`^6[0-9]{17}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := generationID()
		if !re.MatchString(id) {
			t.Fatalf("generation ID %q is not 6 and 17 digits", id)
		}
		seen[id] = true
	}
	if len(seen) < 1000 {
		t.Errorf("%d distinct generation IDs in 1000", len(seen))
	}
}
