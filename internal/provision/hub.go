package provision

import (
	"context"
	"encoding/json"

	"github.com/muster-iot/muster/internal/store"
)

// Hub is a linked IoT hub as the provisioning service reaches it. The
// in-process hub (package registry) is the default; a remote hub is reached
// through its service REST API.
type Hub interface {
	// HostName is the hub's host name, as devices are told.
	HostName() string
	// ProvisionDevice creates the device identity, or updates an existing
	// one's credential and capabilities. A new identity gets spec.Twin;
	// an existing one keeps its twin unless spec.ReplaceTwin.
	ProvisionDevice(ctx context.Context, spec DeviceSpec) error
	// DeviceTwin returns a device's tags and desired properties, or nil, nil
	// when the device does not exist (used to migrate data between hubs).
	DeviceTwin(ctx context.Context, deviceID string) (*TwinState, error)
	// DeleteDevice removes a device identity; a missing one is not an error.
	DeleteDevice(ctx context.Context, deviceID string) error
}

// WritingHub is a Hub that keeps its identities in the provisioning
// service's own store (the in-process hub). Its identity writes join the
// registration record in one atomic store write: one commit per
// registration instead of two, and no identity without its record.
type WritingHub interface {
	Hub
	// ProvisionWrites returns the writes ProvisionDevice would apply.
	ProvisionWrites(ctx context.Context, spec DeviceSpec) ([]store.Write, error)
}

// Device authentication types, as the hub's Device JSON names them.
const (
	AuthSAS                  = "sas"
	AuthSelfSigned           = "selfSigned"
	AuthCertificateAuthority = "certificateAuthority"
)

// DeviceAuth is the credential the hub must accept from the device: the
// same one it provisioned with.
type DeviceAuth struct {
	Type                string
	PrimaryKey          string
	SecondaryKey        string
	PrimaryThumbprint   string
	SecondaryThumbprint string
}

// TwinState is the part of a twin that provisioning sets or migrates.
type TwinState struct {
	Tags    json.RawMessage `json:"tags,omitempty"`
	Desired json.RawMessage `json:"desired,omitempty"`
}

// DeviceSpec is what the provisioning service asks a hub to set up.
type DeviceSpec struct {
	DeviceID    string
	Auth        DeviceAuth
	IoTEdge     bool
	Twin        *TwinState
	ReplaceTwin bool
	// RegistrationID and EnrollmentGroupID record where the identity came from.
	RegistrationID    string
	EnrollmentGroupID string
}

// AllocationRequest is the custom allocation webhook's request body.
type AllocationRequest struct {
	IndividualEnrollment json.RawMessage      `json:"individualEnrollment,omitempty"`
	EnrollmentGroup      json.RawMessage      `json:"enrollmentGroup,omitempty"`
	DeviceRuntimeContext DeviceRuntimeContext `json:"deviceRuntimeContext"`
	LinkedHubs           []string             `json:"linkedHubs"`
}

// DeviceRuntimeContext describes the registering device to a webhook.
type DeviceRuntimeContext struct {
	RegistrationID        string          `json:"registrationId"`
	CurrentIoTHubHostName string          `json:"currentIotHubHostName,omitempty"`
	CurrentDeviceID       string          `json:"currentDeviceId,omitempty"`
	SymmetricKey          *struct{}       `json:"symmetricKey,omitempty"`
	X509                  *X509Context    `json:"x509,omitempty"`
	Payload               json.RawMessage `json:"payload,omitempty"`
}

// X509Context carries the device certificate's details to a webhook.
type X509Context struct {
	ClientCertificateInfo  any    `json:"clientCertificateInfo,omitempty"`
	SigningCertificateInfo any    `json:"signingCertificateInfo,omitempty"`
	EnrollmentGroupID      string `json:"enrollmentGroupId,omitempty"`
}

// AllocationResponse is the webhook's answer.
type AllocationResponse struct {
	IoTHubHostName string          `json:"iotHubHostName"`
	InitialTwin    json.RawMessage `json:"initialTwin,omitempty"`
	Payload        json.RawMessage `json:"payload,omitempty"`
}

// Allocator calls a custom allocation webhook. Errors are *WebhookError.
type Allocator interface {
	Allocate(ctx context.Context, webhookURL, apiVersion string, req *AllocationRequest) (*AllocationResponse, error)
}

// WebhookError is a misbehaving webhook: a non-2xx status (Status set),
// a timeout, or an unusable answer.
type WebhookError struct {
	Status int
	Msg    string
}

func (e *WebhookError) Error() string { return e.Msg }

// LinkedHub is a hub the service allocates to, with its weight.
type LinkedHub struct {
	Hub Hub
	// Weight is the allocation weight (1–1000, default 1).
	Weight int
	// ApplyAllocationPolicy false takes the hub out of hashed rotation.
	ApplyAllocationPolicy bool
}
