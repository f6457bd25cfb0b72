package enroll

import (
	"testing"

	"github.com/muster-iot/muster/internal/fastjson/fastjsontest"
)

// TestRegistrationAppendJSON pins the fast registration document to
// json.Marshal's.
func TestRegistrationAppendJSON(t *testing.T) {
	fastjsontest.Check(t, &Registration{})
}
