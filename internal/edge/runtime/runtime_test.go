package runtime

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEnvList(t *testing.T) {
	tests := []struct {
		name string
		list []string
		env  map[string]string
		want []string
	}{
		{"both empty", nil, nil, []string{}},
		{"list only, order kept", []string{"B=2", "A=1"}, nil, []string{"B=2", "A=1"}},
		{"map only, sorted", nil, map[string]string{"Z": "26", "A": "1"}, []string{"A=1", "Z=26"}},
		{"map overrides list", []string{"A=from-list", "B=2"}, map[string]string{"A": "from-map"}, []string{"B=2", "A=from-map"}},
		{"later list duplicate wins in place", []string{"A=1", "B=2", "A=3"}, nil, []string{"A=3", "B=2"}},
		{"entry without = is a name", []string{"FLAG", "X=1"}, map[string]string{"X": "2"}, []string{"FLAG", "X=2"}},
		{"empty values kept", []string{"E="}, map[string]string{"F": ""}, []string{"E=", "F="}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, EnvList(tc.list, tc.env)); diff != "" {
				t.Errorf("EnvList (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSpecError(t *testing.T) {
	err := error(&SpecError{Module: "m1", Field: "settings.image", Msg: "empty"})
	if !errors.Is(err, ErrInvalidSpec) {
		t.Error("SpecError does not match ErrInvalidSpec")
	}
	if got, want := err.Error(), "module m1: settings.image: empty"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
