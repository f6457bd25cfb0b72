package enroll

import (
	"regexp"
	"strings"
	"testing"
)

// registrationIDPattern states the DPS registration ID rule that
// ValidRegistrationID checks.
var registrationIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9\-]$`)

var registrationIDSeeds = []string{
	"", "a", "-", ".", "a.", "a-", "a.b", "a_b:c-d", "A9", "dev:", "dev_", "é", "a b", "a/b",
	strings.Repeat("a", 127), strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("a", 127) + ".",
}

// FuzzValidRegistrationID checks the hand-written check against the
// regexp that states the rule.
func FuzzValidRegistrationID(f *testing.F) {
	for _, s := range registrationIDSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := ValidRegistrationID(id), registrationIDPattern.MatchString(id); got != want {
			t.Fatalf("ValidRegistrationID(%q) = %v, the pattern says %v", id, got, want)
		}
	})
}
