package provision

import (
	"testing"

	"github.com/muster-iot/muster/internal/fastjson/fastjsontest"
)

// TestOperationStatusAppendJSON pins the fast register and poll bodies to
// json.Marshal's.
func TestOperationStatusAppendJSON(t *testing.T) {
	fastjsontest.Check(t, &OperationStatus{})
	fastjsontest.Check(t, &DeviceRegistrationResult{})
}
