package registry

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/muster-iot/muster/internal/fastjson"
)

// The stored documents of a device and its twin are written on every
// registration; these write them without reflection, byte for byte as
// json.Marshal does (the tests compare the two).

// AppendJSON appends d as json.Marshal writes it, or reports false when d
// needs encoding/json (see fastjson).
func (d *Device) AppendJSON(dst []byte) ([]byte, bool) {
	ok := true
	b := dst
	b = append(b, `{"deviceId":`...)
	b = fastjson.String(b, d.DeviceID, &ok)
	b = append(b, `,"generationId":`...)
	b = fastjson.String(b, d.GenerationID, &ok)
	b = append(b, `,"etag":`...)
	b = fastjson.String(b, d.ETag, &ok)
	b = append(b, `,"connectionState":`...)
	b = fastjson.String(b, d.ConnectionState, &ok)
	b = append(b, `,"status":`...)
	b = fastjson.String(b, d.Status, &ok)
	b = append(b, `,"statusReason":`...)
	b = fastjson.StringPtr(b, d.StatusReason, &ok)
	b = append(b, `,"connectionStateUpdatedTime":`...)
	b = fastjson.Time(b, d.ConnectionStateUpdatedTime, &ok)
	b = append(b, `,"statusUpdatedTime":`...)
	b = fastjson.Time(b, d.StatusUpdatedTime, &ok)
	b = append(b, `,"lastActivityTime":`...)
	b = fastjson.Time(b, d.LastActivityTime, &ok)
	b = append(b, `,"cloudToDeviceMessageCount":`...)
	b = strconv.AppendInt(b, int64(d.CloudToDeviceMessageCount), 10)
	b = append(b, `,"authentication":{`...)
	if k := d.Authentication.SymmetricKey; k != nil {
		b = append(b, `"symmetricKey":{"primaryKey":`...)
		b = fastjson.String(b, k.PrimaryKey, &ok)
		b = append(b, `,"secondaryKey":`...)
		b = fastjson.String(b, k.SecondaryKey, &ok)
		b = append(b, `},`...)
	}
	b = append(b, `"x509Thumbprint":{"primaryThumbprint":`...)
	b = fastjson.StringPtr(b, d.Authentication.X509Thumbprint.PrimaryThumbprint, &ok)
	b = append(b, `,"secondaryThumbprint":`...)
	b = fastjson.StringPtr(b, d.Authentication.X509Thumbprint.SecondaryThumbprint, &ok)
	b = append(b, `},"type":`...)
	b = fastjson.String(b, d.Authentication.Type, &ok)
	b = append(b, `},"capabilities":{"iotEdge":`...)
	b = strconv.AppendBool(b, d.Capabilities.IoTEdge)
	b = append(b, `},"deviceScope":`...)
	b = fastjson.String(b, d.DeviceScope, &ok)
	b = append(b, `,"parentScopes":`...)
	b = fastjson.Strings(b, d.ParentScopes, &ok)
	if p := d.ProvisionedBy; p != nil {
		b = append(b, `,"provisionedBy":{"registrationId":`...)
		b = fastjson.String(b, p.RegistrationID, &ok)
		b = fastjson.OmitEmpty(b, `,"enrollmentGroupId":`, p.EnrollmentGroupID, &ok)
		b = append(b, `}`...)
	}
	b = append(b, `}`...)
	return b, ok
}

// AppendJSON appends t as json.Marshal writes it, or reports false when t
// needs encoding/json (see fastjson).
func (t *Twin) AppendJSON(dst []byte) ([]byte, bool) {
	if len(t.Configurations) > 0 {
		return dst, false
	}
	ok := true
	b := dst
	b = append(b, `{"deviceId":`...)
	b = fastjson.String(b, t.DeviceID, &ok)
	b = fastjson.OmitEmpty(b, `,"moduleId":`, t.ModuleID, &ok)
	b = append(b, `,"etag":`...)
	b = fastjson.String(b, t.ETag, &ok)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, t.Version, 10)
	b = append(b, `,"tags":`...)
	b = fastjson.Raw(b, t.Tags, &ok)
	b = append(b, `,"properties":{"desired":`...)
	b = fastjson.Raw(b, t.Properties.Desired, &ok)
	b = append(b, `,"reported":`...)
	b = fastjson.Raw(b, t.Properties.Reported, &ok)
	b = append(b, `}}`...)
	return b, ok
}

// deviceDoc returns json.Marshal(d).
func deviceDoc(d *Device) ([]byte, error) {
	var s fastjson.Scratch
	if b, ok := d.AppendJSON(s[:0]); ok {
		return bytes.Clone(b), nil
	}
	return json.Marshal(d)
}

// twinDoc returns json.Marshal(t).
func twinDoc(t *Twin) ([]byte, error) {
	var s fastjson.Scratch
	if b, ok := t.AppendJSON(s[:0]); ok {
		return bytes.Clone(b), nil
	}
	return json.Marshal(t)
}
