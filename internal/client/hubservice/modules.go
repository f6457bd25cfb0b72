package hubservice

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/muster-iot/muster/internal/registry"
)

// segModules is the path segment of module identities and module twins.
const segModules = "modules"

// GetModule returns a module identity (with its keys).
func (c *Client) GetModule(ctx context.Context, deviceID, moduleID string) (*registry.Module, error) {
	if err := checkModuleIDs(deviceID, moduleID); err != nil {
		return nil, fmt.Errorf("get module: %w", err)
	}
	var m registry.Module
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segDevices, deviceID, segModules, moduleID}}, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// ListModules returns the module identities of a device in module ID order.
func (c *Client) ListModules(ctx context.Context, deviceID string) ([]*registry.Module, error) {
	if err := checkID("device ID", deviceID); err != nil {
		return nil, fmt.Errorf("list modules: %w", err)
	}
	var ms []*registry.Module
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segDevices, deviceID, segModules}}, &ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// GetModuleTwin returns a module's twin.
func (c *Client) GetModuleTwin(ctx context.Context, deviceID, moduleID string) (*Twin, error) {
	if err := checkModuleIDs(deviceID, moduleID); err != nil {
		return nil, fmt.Errorf("get module twin: %w", err)
	}
	var t Twin
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segTwins, deviceID, segModules, moduleID}}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// PatchModuleTwin merges u into a module twin's tags and desired
// properties if the twin's etag is still etag ("" or "*": any).
func (c *Client) PatchModuleTwin(ctx context.Context, deviceID, moduleID string, u TwinUpdate, etag string) (*Twin, error) {
	return c.updateModuleTwin(ctx, http.MethodPatch, deviceID, moduleID, u, etag)
}

// ReplaceModuleTwin replaces a module twin's tags and desired properties
// with u if the twin's etag is still etag ("" or "*": any).
func (c *Client) ReplaceModuleTwin(ctx context.Context, deviceID, moduleID string, u TwinUpdate, etag string) (*Twin, error) {
	return c.updateModuleTwin(ctx, http.MethodPut, deviceID, moduleID, u, etag)
}

func (c *Client) updateModuleTwin(ctx context.Context, method, deviceID, moduleID string, u TwinUpdate, etag string) (*Twin, error) {
	if err := checkModuleIDs(deviceID, moduleID); err != nil {
		return nil, fmt.Errorf("update module twin: %w", err)
	}
	body, err := u.body()
	if err != nil {
		return nil, fmt.Errorf("update twin of module %s of %s: %w", moduleID, deviceID, err)
	}
	if len(body) == 0 && method == http.MethodPatch {
		return nil, fmt.Errorf("update twin of module %s of %s: nothing to change: give tags or desired properties", moduleID, deviceID)
	}
	if strings.TrimSpace(etag) == "" {
		etag = "*"
	}
	var t Twin
	if _, err := c.call(ctx, request{method: method, segs: []string{segTwins, deviceID, segModules, moduleID}, body: body, ifMatch: etag}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// checkModuleIDs refuses an empty device or module ID before a request is sent.
func checkModuleIDs(deviceID, moduleID string) error {
	if err := checkID("device ID", deviceID); err != nil {
		return err
	}
	return checkID("module ID", moduleID)
}
