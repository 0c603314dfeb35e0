package imagecli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/keys/soft"
)

// The mixing refusal's hint names the flag of the command that was run:
// rewrap and migrate take --allow-classical themselves, so their hint is
// not the exec provider's (OCICRYPT_KEYPROVIDER_CONFIG, ocikp config).
func TestMixingHintNamesCommand(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	xw := newPQKey(t, st, "xw")
	newKey(t, st, "alice")
	img := "oci:" + layout(t, nil, xw) + ":img"
	for _, c := range []struct {
		cmd  string
		args []string
	}{
		{"rewrap", []string{"rewrap", "--keystore", ks, "--add", "alice", img}},
		{"migrate", []string{"migrate", "--keystore", ks, "--recipient", "xw", "--recipient", "alice", img}},
	} {
		_, stderr, code := runMain(c.args...)
		checkError(t, stderr, code, "mix post-quantum and classical-only recipients")
		if !strings.Contains(stderr, "ocikp: hint: or accept classical strength on purpose: ocikp "+c.cmd+" --allow-classical\n") {
			t.Errorf("%s: the hint does not name ocikp %s --allow-classical:\n%s", c.cmd, c.cmd, stderr)
		}
		if strings.Contains(stderr, "OCICRYPT_KEYPROVIDER_CONFIG") || strings.Contains(stderr, "ocikp config") {
			t.Errorf("%s: the hint names the exec provider's setting:\n%s", c.cmd, stderr)
		}
	}
}
