package memstore

import (
	"testing"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/storetest"
)

func TestStreamConformance(t *testing.T) {
	storetest.RunStream(t, func(t *testing.T) store.StreamStore { return New(50) })
}
