package cli

import (
	"runtime/debug"
	"testing"
)

func TestBuiltWithCgo(t *testing.T) {
	for _, c := range []struct {
		settings []debug.BuildSetting
		want     bool
	}{
		{[]debug.BuildSetting{{Key: "CGO_ENABLED", Value: "1"}}, true},
		{[]debug.BuildSetting{{Key: "CGO_ENABLED", Value: "0"}}, false},
		{[]debug.BuildSetting{{Key: "-tags", Value: "osusergo,netgo"}, {Key: "CGO_ENABLED", Value: "1"}}, false},
		{nil, false},
	} {
		if got := builtWithCgo(c.settings); got != c.want {
			t.Errorf("builtWithCgo(%v) = %v, want %v", c.settings, got, c.want)
		}
	}
}
