package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/muster-iot/muster/internal/twin"
)

func TestPatchReported(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev"}, "")
	if _, err := f.hub.PatchTwin(ctx, "dev", TwinUpdate{Desired: json.RawMessage(`{"interval":5}`), Tags: json.RawMessage(`{"site":"a"}`)}, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		patch    string
		values   string // reported members after the patch, without $version and $metadata
		version  int64  // reported $version after the patch
		twinVer  int64
		wantErr  error
		errMatch string
	}{
		{name: "add", patch: `{"fw":"1.0","net":{"ip":"10.0.0.2","up":true}}`, values: `{"fw":"1.0","net":{"ip":"10.0.0.2","up":true}}`, version: 2, twinVer: 3},
		{name: "merge and delete", patch: `{"net":{"up":null},"$version":99}`, values: `{"fw":"1.0","net":{"ip":"10.0.0.2"}}`, version: 3, twinVer: 4},
		{name: "bad key", patch: `{"a b":1}`, wantErr: twin.ErrInvalid, errMatch: "a b"},
		{name: "not an object", patch: `[1]`, wantErr: twin.ErrInvalid},
		{name: "too large", patch: fmt.Sprintf(`{"a":%q,"b":%q,"c":%q,"d":%q,"e":%q,"f":%q,"g":%q,"h":%q,"i":%q}`,
			longValue(), longValue(), longValue(), longValue(), longValue(), longValue(), longValue(), longValue(), longValue()), wantErr: twin.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := f.hub.GetTwin(ctx, "dev")
			if err != nil {
				t.Fatal(err)
			}
			tw, err := f.hub.PatchReported(ctx, "dev", json.RawMessage(tc.patch))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("PatchReported: %v, want %v", err, tc.wantErr)
				}
				after, err := f.hub.GetTwin(ctx, "dev")
				if err != nil {
					t.Fatal(err)
				}
				if after.ETag != before.ETag || after.Version != before.Version {
					t.Fatal("a refused patch changed the twin")
				}
				return
			}
			if err != nil {
				t.Fatalf("PatchReported: %v", err)
			}
			stored, err := f.hub.GetTwin(ctx, "dev")
			if err != nil {
				t.Fatal(err)
			}
			if stored.ETag != tw.ETag || stored.Version != tc.twinVer || tw.Version != tc.twinVer {
				t.Fatalf("twin version %d (returned %d, etag %q vs stored %q), want %d", stored.Version, tw.Version, tw.ETag, stored.ETag, tc.twinVer)
			}
			var rep map[string]json.RawMessage
			if err := json.Unmarshal(stored.Properties.Reported, &rep); err != nil {
				t.Fatal(err)
			}
			if string(rep["$version"]) != fmt.Sprint(tc.version) || rep["$metadata"] == nil {
				t.Fatalf("reported %s: want $version %d and $metadata", stored.Properties.Reported, tc.version)
			}
			delete(rep, "$version")
			delete(rep, "$metadata")
			got, _ := json.Marshal(rep)
			if canonical(t, got) != canonical(t, json.RawMessage(tc.values)) {
				t.Fatalf("reported members %s, want %s", got, tc.values)
			}
			if canonical(t, stored.Tags) != `{"site":"a"}` || desiredValues(t, stored.Properties.Desired) != `{"$version":2,"interval":5}` {
				t.Fatalf("tags %s / desired %s changed", stored.Tags, stored.Properties.Desired)
			}
		})
	}
	t.Run("missing device", func(t *testing.T) {
		if _, err := f.hub.PatchReported(ctx, "ghost", json.RawMessage(`{"a":1}`)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("PatchReported: %v, want ErrNotFound", err)
		}
	})
}

// longValue is a 4000-byte string value (nine exceed 32 KiB).
func longValue() string {
	b := make([]byte, 4000)
	for i := range b {
		b[i] = 'x'
	}
	return string(b)
}

func TestPatchReportedConcurrentWithDesired(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev"}, "")
	const each = 5
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range each {
			_, err := f.hub.PatchReported(ctx, "dev", json.RawMessage(fmt.Sprintf(`{"r%d":%d}`, i, i)))
			errs <- err
		}
	}()
	go func() {
		defer wg.Done()
		for i := range each {
			_, err := f.hub.PatchTwin(ctx, "dev", TwinUpdate{Desired: json.RawMessage(fmt.Sprintf(`{"d%d":%d}`, i, i))}, "")
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tw, err := f.hub.GetTwin(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	var rep, des map[string]any
	if err := json.Unmarshal(tw.Properties.Reported, &rep); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(tw.Properties.Desired, &des); err != nil {
		t.Fatal(err)
	}
	// Every write survived: each section has its members, $version and $metadata.
	if len(rep) != each+2 || rep["$version"] != float64(1+each) || len(des) != each+2 || des["$version"] != float64(1+each) || tw.Version != 1+2*each {
		t.Fatalf("after %d writes each: version %d, reported %v, desired %v", each, tw.Version, rep, des)
	}
}
