package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
)

// Error kinds of the hub bench besides ErrorKind's.
const (
	KindNoAck        = "no_puback"
	KindNoPong       = "no_pingresp"
	KindMQTTClosed   = "mqtt_closed"
	KindMQTTProtocol = "mqtt_protocol"
)

// hubErrorKind names the kind of a failed hub bench operation:
// "connack_<code>" for a refused CONNECT, "status_<code>" for a service
// API error, one of the Kind constants otherwise.
func hubErrorKind(err error) string {
	var (
		ce *ConnackError
		he *hubservice.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ce):
		return "connack_" + strconv.Itoa(int(ce.Code))
	case errors.As(err, &he):
		return "status_" + strconv.Itoa(he.Status)
	case errors.Is(err, errNoAck):
		return KindNoAck
	case errors.Is(err, errNoPong):
		return KindNoPong
	case errors.Is(err, errMQTTProtocol):
		return KindMQTTProtocol
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ErrorKind(err)
	case errors.Is(err, errMQTTClosed):
		// The connection's own cause (a reset, EOF) says more when known.
		if k := ErrorKind(err); k != KindOther {
			return k
		}
		return KindMQTTClosed
	}
	return ErrorKind(err)
}

// hubDevices are the devices the bench created: ID and MQTT password (a
// SAS token for {hub}/devices/{id}) by index; "" where creation failed.
type hubDevices struct {
	prefix    string
	hostName  string
	ids       []string
	passwords []string
}

// credential is the CONNECT of device i, as an Azure IoT SDK sends it.
func (d *hubDevices) credential(i int) mqttCredential {
	return mqttCredential{
		ClientID: d.ids[i],
		Username: d.hostName + "/" + d.ids[i] + "/?api-version=" + hubAPIVersion,
		Password: d.passwords[i],
	}
}

// createDevices creates cfg.Devices symmetric-key devices through the
// service API, deviceAPIConcurrency at a time, and signs each one's SAS
// token. Any failure fails the run: every phase relies on the devices.
func (r *hubRunner) createDevices(ctx context.Context, rep *HubReport) (*hubDevices, error) {
	n := r.cfg.Devices
	devs := &hubDevices{prefix: "bench-hub-" + r.runID, hostName: r.srv.HostName, ids: make([]string, n), passwords: make([]string, n)}
	rep.Devices.Prefix = devs.prefix
	expiry := time.Now().Add(hubTokenTTL)
	res, err := r.load("devices created", deviceAPIConcurrency, n, 0, MaxWindow).Run(ctx, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		id := devs.prefix + "-" + strconv.Itoa(i)
		primary, err := sas.GenerateKey()
		if err != nil {
			return err
		}
		secondary, err := sas.GenerateKey()
		if err != nil {
			return err
		}
		out, err := r.srv.Service.CreateDevice(ctx, &registry.Device{
			DeviceID: id, Status: "enabled",
			Authentication: registry.Authentication{Type: "sas", SymmetricKey: &registry.SymmetricKey{PrimaryKey: primary, SecondaryKey: secondary}},
		})
		if err != nil {
			return fmt.Errorf("create device %s: %w", id, err)
		}
		if k := out.Authentication.SymmetricKey; k != nil && k.PrimaryKey != "" {
			primary = k.PrimaryKey
		}
		key, err := sas.DecodeKey(primary)
		if err != nil {
			return fmt.Errorf("decode the primary key of device %s: %w", id, err)
		}
		devs.ids[i] = id
		devs.passwords[i] = sas.Sign(r.srv.HostName+"/devices/"+id, key, "", expiry)
		return nil
	})
	if res == nil {
		return devs, err
	}
	rep.Devices.Created, rep.Devices.Seconds = res.Succeeded, res.Window.Elapsed.Seconds()
	rep.Devices.RatePerSecond = res.Window.Rate
	r.notef("devices: %d created as %s-<n> in %.1fs (%.0f/s)", res.Succeeded, devs.prefix, res.Window.Elapsed.Seconds(), res.Window.Rate)
	if err != nil {
		return devs, err
	}
	if res.Failed > 0 {
		return devs, fmt.Errorf("%d of %d devices could not be created: %s", res.Failed, n, kindsText(res.Errors, res.ErrorSamples))
	}
	return devs, nil
}

// deleteDevices deletes the devices created (unless cfg.KeepDevices),
// even after ctx ended, bounded by deviceCleanupTimeout.
func (r *hubRunner) deleteDevices(ctx context.Context, devs *hubDevices, rep *HubReport) {
	if devs == nil {
		return
	}
	var ids []string
	for _, id := range devs.ids {
		if id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return
	}
	if r.cfg.KeepDevices {
		rep.Devices.Kept = true
		r.notef("devices: kept %d devices %s-<n>", len(ids), devs.prefix)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deviceCleanupTimeout)
	defer cancel()
	res, err := r.load("devices deleted", deviceAPIConcurrency, len(ids), 0, deviceCleanupTimeout).Run(ctx, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		return r.srv.Service.DeleteDevice(ctx, ids[i], "*")
	})
	if res != nil {
		rep.Devices.Deleted = res.Succeeded
		if res.Failed > 0 {
			r.warnf("%d of the bench's devices could not be deleted (%s); delete the devices %s-<n> by hand", res.Failed, kindsText(res.Errors, res.ErrorSamples), devs.prefix)
		}
	}
	if err != nil {
		r.warnf("deleting the bench's devices stopped: %v; delete the devices %s-<n> by hand", err, devs.prefix)
	}
}

// kindsText lists error counts by kind with one sample each.
func kindsText(byKind map[string]int, samples map[string]string) string {
	parts := make([]string, 0, len(byKind))
	for k, n := range byKind {
		parts = append(parts, fmt.Sprintf("%s %d (e.g. %s)", k, n, samples[k]))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}
