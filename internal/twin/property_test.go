package twin

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// gen builds random JSON documents over a small key alphabet, so that
// patches collide with the document and with each other often.
type gen struct{ r *rand.Rand }

func (g gen) object(depth int, patch bool) map[string]any {
	m := map[string]any{}
	for range g.r.IntN(4) {
		m[[]string{"a", "b", "c", "d"}[g.r.IntN(4)]] = g.value(depth, patch)
	}
	return m
}

func (g gen) value(depth int, patch bool) any {
	switch n := g.r.IntN(12); {
	case patch && n < 2:
		return nil
	case n < 5 && depth < 4:
		return g.object(depth+1, patch)
	case n == 5 && depth < 4:
		arr := make([]any, g.r.IntN(3))
		for i := range arr {
			if g.r.IntN(3) == 0 {
				arr[i] = g.object(depth+1, true) // arrays keep nulls verbatim
			} else {
				arr[i] = json.Number(strconv.Itoa(g.r.IntN(3)))
			}
		}
		return arr
	case n == 6:
		return []string{"x", "y", ""}[g.r.IntN(3)]
	case n == 7:
		return g.r.IntN(2) == 0
	default:
		return json.Number(strconv.Itoa(g.r.IntN(4)))
	}
}

// refMergePatch is RFC 7386 §2's MergePatch pseudo-code, transcribed
// literally and independently of mergeObject. It does not modify its inputs.
func refMergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	out := map[string]any{}
	for k, v := range tm {
		out[k] = v
	}
	for name, value := range pm {
		if value == nil {
			delete(out, name)
			continue
		}
		out[name] = refMergePatch(out[name], value)
	}
	return out
}

// compose returns a merge patch q with apply(apply(t,p1),p2) == apply(t,q)
// for every object t, or false where RFC 7386 patches do not compose: when
// p1 sets a member to a non-object (or deletes it) and p2 then merges an
// object into it, the result depends on nothing in t, which no single merge
// patch can express when t holds an object there.
func compose(p1, p2 map[string]any) (map[string]any, bool) {
	out := map[string]any{}
	for k, v := range p1 {
		out[k] = v
	}
	for k, v2 := range p2 {
		m2, obj2 := v2.(map[string]any)
		if !obj2 {
			out[k] = v2
			continue
		}
		v1, in1 := p1[k]
		if !in1 {
			out[k] = m2
			continue
		}
		m1, obj1 := v1.(map[string]any)
		if !obj1 {
			return nil, false
		}
		c, ok := compose(m1, m2)
		if !ok {
			return nil, false
		}
		out[k] = c
	}
	return out, true
}

func mustEncode(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

// checkMetadataMirrors asserts that m has exactly one node per object member
// of v, recursively, and that no node claims a version above ver.
func checkMetadataMirrors(t *testing.T, path string, m *Metadata, v any, ver int64) {
	t.Helper()
	if m == nil {
		t.Fatalf("%s: no metadata node", path)
	}
	if m.LastUpdatedVersion < 1 || m.LastUpdatedVersion > ver {
		t.Fatalf("%s: $lastUpdatedVersion %d outside 1..%d", path, m.LastUpdatedVersion, ver)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		if len(m.Children) != 0 {
			t.Fatalf("%s: metadata children under a non-object", path)
		}
		return
	}
	if len(m.Children) != len(obj) {
		t.Fatalf("%s: %d metadata children for %d members", path, len(m.Children), len(obj))
	}
	for k, cv := range obj {
		checkMetadataMirrors(t, path+"."+k, m.Children[k], cv, ver)
	}
}

func TestPropertyPatchSequences(t *testing.T) {
	const seeds = 400
	composed := 0
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			g := gen{rand.New(rand.NewPCG(seed, 0x7e1))}
			base := g.object(0, false)
			seq := New("d1", "", t0)
			if err := ReplaceDesired(seq, mustEncode(t, base), t0); err != nil {
				t.Fatalf("replace with base: %v", err)
			}
			one := seq.Clone()

			var want any = stripNulls(base)
			acc, composable := map[string]any{}, true
			n := 1 + g.r.IntN(5)
			for i := range n {
				p := g.object(0, true)
				before := seq.Clone()
				now := t0.Add(time.Duration(i+1) * time.Second)
				if err := PatchDesired(seq, mustEncode(t, p), now); err != nil {
					t.Fatalf("patch %d %s: %v", i, mustEncode(t, p), err)
				}
				want = refMergePatch(want, p)
				if diff := cmp.Diff(want, map[string]any(seq.Properties.Desired.Values)); diff != "" {
					t.Fatalf("after patch %d %s: differs from RFC 7386 (-ref +got):\n%s", i, mustEncode(t, p), diff)
				}

				// The device notification turns the old desired
				// properties into the new ones.
				delta, err := DesiredDelta(before, seq)
				if err != nil {
					t.Fatal(err)
				}
				dv, err := decodeValue(delta)
				if err != nil {
					t.Fatal(err)
				}
				dm := dv.(map[string]any)
				if dm[keyVersion] != json.Number(strconv.FormatInt(seq.Properties.Desired.Version, 10)) {
					t.Fatalf("delta %s: wrong $version", delta)
				}
				delete(dm, keyVersion)
				if diff := cmp.Diff(map[string]any(seq.Properties.Desired.Values), refMergePatch(map[string]any(before.Properties.Desired.Values), dm)); diff != "" {
					t.Fatalf("delta %s does not reproduce the write (-want +got):\n%s", delta, diff)
				}

				// Merge patches are idempotent.
				again := seq.Clone()
				if err := PatchDesired(again, mustEncode(t, p), now); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(seq.Properties.Desired.Values, again.Properties.Desired.Values); diff != "" {
					t.Fatalf("patch %d is not idempotent (-once +twice):\n%s", i, diff)
				}

				checkMetadataMirrors(t, keyMetadata, seq.Properties.Desired.Metadata, map[string]any(seq.Properties.Desired.Values), seq.Properties.Desired.Version)
				if seq.Properties.Desired.Metadata.LastUpdatedVersion != seq.Properties.Desired.Version || !seq.Properties.Desired.Metadata.LastUpdated.Equal(now) {
					t.Fatalf("root metadata %+v does not record write %d at %v", seq.Properties.Desired.Metadata, seq.Properties.Desired.Version, now)
				}

				if composable {
					acc, composable = compose(acc, p)
				}
			}
			if got, want := seq.Properties.Desired.Version, int64(2+n); got != want {
				t.Errorf("desired $version = %d after %d patches, want %d", got, n, want)
			}
			if got, want := seq.Version, int64(2+n); got != want || seq.ETag != ETag(want) {
				t.Errorf("twin version, etag = %d, %q; want %d, %q", got, seq.ETag, want, ETag(want))
			}
			if !composable {
				return
			}
			composed++
			if err := PatchDesired(one, mustEncode(t, acc), t0); err != nil {
				t.Fatalf("composed patch %s: %v", mustEncode(t, acc), err)
			}
			if diff := cmp.Diff(seq.Properties.Desired.Values, one.Properties.Desired.Values); diff != "" {
				t.Errorf("sequence and composition %s differ (-sequence +composed):\n%s", mustEncode(t, acc), diff)
			}
		})
	}
	// Guard against a generator that makes the composition law vacuous.
	if composed < seeds/4 {
		t.Errorf("only %d of %d sequences were composable", composed, seeds)
	}
}

func TestPropertyReplaceThenDelta(t *testing.T) {
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			g := gen{rand.New(rand.NewPCG(seed, 0x5eed))}
			tw := New("d1", "", t0)
			if err := ReplaceDesired(tw, mustEncode(t, g.object(0, false)), t0); err != nil {
				t.Fatal(err)
			}
			before := tw.Clone()
			next := g.object(0, true)
			if err := ReplaceDesired(tw, mustEncode(t, next), t0); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(stripNulls(next), map[string]any(tw.Properties.Desired.Values)); diff != "" {
				t.Fatalf("replace result (-want +got):\n%s", diff)
			}
			delta, err := DesiredDelta(before, tw)
			if err != nil {
				t.Fatal(err)
			}
			dv, err := decodeValue(delta)
			if err != nil {
				t.Fatal(err)
			}
			dm := dv.(map[string]any)
			delete(dm, keyVersion)
			if diff := cmp.Diff(map[string]any(tw.Properties.Desired.Values), refMergePatch(map[string]any(before.Properties.Desired.Values), dm)); diff != "" {
				t.Fatalf("delta %s does not reproduce the replace (-want +got):\n%s", delta, diff)
			}
			// Round trip through the service JSON keeps everything.
			b, err := json.Marshal(tw)
			if err != nil {
				t.Fatal(err)
			}
			var back Twin
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tw, &back); diff != "" {
				t.Fatalf("JSON round trip (-want +got):\n%s", diff)
			}
		})
	}
}
