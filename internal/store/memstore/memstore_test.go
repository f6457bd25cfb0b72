package memstore

import (
	"testing"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return New(50) })
}
