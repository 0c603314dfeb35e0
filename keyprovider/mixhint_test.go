package keyprovider

import (
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/pq"
)

// The mixing refusal's hint names the flag of the command that was run:
// the exec provider's (ocikp config), the service's (ocikp serve), or the
// one its caller names (rewrap, migrate, doctor), and never another's.
func TestMixingHintNamesTheCommand(t *testing.T) {
	f := newFixture(t, "classic")
	xw := f.addPQ("xwing", pq.XWing, nil)
	mixed := wrapParams(map[string][][]byte{"ocikp": vals(xw, f.recip["classic"])})
	for _, c := range []struct {
		name     string
		p        *Provider
		want     string
		wantNots []string
	}{
		{"exec", &Provider{Name: "ocikp", Store: f.st}, "ocikp config --allow-classical", []string{"ocikp serve", "rewrap"}},
		{"service", &Provider{Name: "ocikp", Store: f.st, Remote: true}, "ocikp serve --allow-classical", []string{"OCICRYPT_KEYPROVIDER_CONFIG", "ocikp config"}},
		{"rewrap", &Provider{Name: "ocikp", Store: f.st, AllowClassicalHint: "ocikp rewrap --allow-classical"}, "ocikp rewrap --allow-classical", []string{"OCICRYPT_KEYPROVIDER_CONFIG", "ocikp config", "ocikp serve"}},
	} {
		_, err := c.p.Wrap(mixed)
		if !errors.Is(err, ErrMixedStrength) {
			t.Fatalf("%s: %v", c.name, err)
		}
		hs := hint.Of(err)
		if len(hs) != 2 || !strings.Contains(hs[0], "ocikp keygen --type mlkem768x25519") {
			t.Fatalf("%s: hints %q", c.name, hs)
		}
		if !strings.Contains(hs[1], c.want) {
			t.Errorf("%s: hint %q does not name %q", c.name, hs[1], c.want)
		}
		for _, n := range c.wantNots {
			if strings.Contains(hs[1], n) {
				t.Errorf("%s: hint %q names %q", c.name, hs[1], n)
			}
		}
		// CheckMix (rewrap, migrate, doctor) gives the same hints.
		r1, _ := c.p.RecipientFor(t.Context(), xw)
		r2, _ := c.p.RecipientFor(t.Context(), f.recip["classic"])
		if err := c.p.CheckMix([]envelope.Recipient{r1, r2}); !strings.Contains(strings.Join(hint.Of(err), "\n"), c.want) {
			t.Errorf("%s: CheckMix: %v %q", c.name, err, hint.Of(err))
		}
	}
}
