// Package access owns the shared access policies of a Muster instance: a
// named policy holds two keys and a set of rights within one realm (the
// provisioning service, "dps", or the hub, "hub"). Adapters authorise
// service requests against them; the instance creates and stores them.
package access

// Policy is a shared access policy; Realm is "dps" or "hub".
type Policy struct {
	Name         string   `json:"name"`
	Realm        string   `json:"realm"`
	PrimaryKey   string   `json:"primaryKey"`
	SecondaryKey string   `json:"secondaryKey"`
	Rights       []string `json:"rights"`
}
