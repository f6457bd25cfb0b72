package bench

import "github.com/muster-iot/muster/internal/client/dpsclient"

// spreadClient is the device side of a run against one or several
// instances of a service (several `muster serve` on one PostgreSQL
// database): one device client per DPS device endpoint, and device i
// registers (register request and polls) through client i mod n, as a
// load balancer spreading devices would.
type spreadClient struct {
	clients []*dpsclient.Client
}

// pick returns the client of device i.
func (s *spreadClient) pick(i int) *dpsclient.Client {
	return s.clients[i%len(s.clients)]
}

// Close closes every client.
func (s *spreadClient) Close() {
	for _, c := range s.clients {
		c.Close()
	}
}
