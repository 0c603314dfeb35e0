package imagecli

import (
	"context"
	"fmt"
	"strings"

	"github.com/ocikp/ocikp/imagekeys"
)

const inspectSummary = `Show who can decrypt an image: for every platform and layer, the media
type, whether it is encrypted, each key-wrapping scheme (ocikp envelopes
with their recipients, other key providers, JWE, PKCS#7, PGP, PKCS#11)
and, with --keys, which keys of the local keystore could open it (decided
from tags and key ids, without a private-key operation).`

func (c *cmd) inspect(ctx context.Context, args []string) error {
	fs := c.flags()
	keys := fs.Bool("keys", false, "also name the local keys that could open each layer")
	pos, err := c.parse(fs, args, "ocikp inspect [--json] [--keys] IMAGE...  (IMAGE: docker://HOST/REPO:TAG, oci:DIR[:REF], oci-archive:FILE[:REF]; - reads names from stdin)", inspectSummary)
	if err != nil {
		return err
	}
	names, err := c.images(pos)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return usagef("inspect needs an image")
	}
	var finder imagekeys.KeyFinder
	if *keys {
		p, done, err := c.provider()
		if err != nil {
			return err
		}
		defer done()
		finder = p
	}
	var reports []*imagekeys.Report
	for _, n := range names {
		img, _, _, err := c.open(ctx, n)
		if err != nil {
			return err
		}
		reports = append(reports, imagekeys.Inspect(img, finder))
	}
	if c.asJSON {
		return c.printJSON(reports)
	}
	for _, r := range reports {
		c.printReport(r, *keys)
	}
	return nil
}

func (c *cmd) printReport(r *imagekeys.Report, keys bool) {
	printf(c.stdout, "%s  %s\n", r.Image, r.Digest)
	for _, p := range r.Platforms {
		indent := "  "
		if p.Platform != "" || len(p.Via) > 0 {
			printf(c.stdout, "  platform %s  %s%s\n", p.Platform, p.Digest, via(p.Via))
			indent = "    "
		}
		for _, l := range p.Layers {
			state := "not encrypted"
			if l.Encrypted {
				state = "encrypted"
			}
			if l.Strength != "" {
				state += ", " + l.Strength
			}
			printf(c.stdout, "%slayer %d  %s  %s  %s\n", indent, l.Index, short(l.Digest), l.MediaType, state)
			for _, w := range l.Wrappings {
				scheme := w.Scheme
				if w.Provider != "" {
					scheme = "provider:" + oneLine(w.Provider)
				}
				for _, b := range w.Blobs {
					printf(c.stdout, "%s  %s: %s", indent, scheme, b.Format)
					if b.Error != "" {
						printf(c.stdout, " (%s)", oneLine(b.Error))
					}
					fmt.Fprintln(c.stdout)
					for _, rc := range b.Recipients {
						printf(c.stdout, "%s    %s  (%s)\n", indent, oneLine(rc.Hint), rc.Strength)
					}
				}
			}
			if keys && l.Encrypted {
				if len(l.Keys) == 0 {
					printf(c.stdout, "%s  local keys: none\n", indent)
				} else {
					printf(c.stdout, "%s  local keys: %s\n", indent, oneLine(strings.Join(l.Keys, ", ")))
				}
			}
		}
	}
	c.printPassedOver(r)
}

// via names the nested indexes a manifest is reached through.
func via(v []string) string {
	if len(v) == 0 {
		return ""
	}
	s := make([]string, len(v))
	for i, d := range v {
		s[i] = oneLine(short(d))
	}
	return "  via index " + strings.Join(s, " > ")
}

func (c *cmd) printPassedOver(r *imagekeys.Report) {
	for _, p := range r.PassedOver {
		printf(c.stdout, "  passed over %s  %s  %s%s\n", oneLine(p.Digest), oneLine(p.MediaType), oneLine(p.Reason), via(p.Via))
	}
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
