package imagecli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/containers/ocicrypt/config"
	"github.com/containers/ocicrypt/keywrap/jwe"
	"github.com/containers/ocicrypt/keywrap/pkcs7"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/imagekeys"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keyprovider"
)

const migrateSummary = `Give every encrypted layer of an image an ocikp envelope for the
recipients given, with the layer key taken from another scheme: the seed
providers' blobs (the Apple Keychain provider's, the GCP kmscrypt
provider's: opened with the keystore and KMS, as an unwrap would), or
ocicrypt's JWE, PKCS#7 and PGP (opened with --key, --cert and --gpg-key, by
ocicrypt's own unwrapping code) and PKCS#11 (RSA-OAEP, opened on the token
--pkcs11-key names). The old annotations are removed, so readers must use ocikp,
unless --keep-old leaves them for readers not yet moved. Layers do not move.`

// foreignOpener opens other schemes' wrapped keys for migrate.
type foreignOpener struct {
	p      *keyprovider.Provider
	dc     *config.DecryptConfig // --key, --cert
	pkcs11 []string              // --pkcs11-key URIs
}

func (f *foreignOpener) OpenForeign(ctx context.Context, w *imagekeys.Wrapping, blob []byte) ([]byte, error) {
	switch w.Scheme {
	case "provider":
		for _, b := range w.Blobs {
			if b.Format == imagekeys.FormatOpaque || b.Format == imagekeys.FormatUnreadable {
				return nil, fmt.Errorf("%w: another key provider's format", imagekeys.ErrCannotOpen)
			}
		}
		return f.p.OpenBlob(ctx, blob)
	case "jwe", "pkcs7":
		if f.dc == nil || len(f.dc.Parameters["privkeys"]) == 0 {
			return nil, fmt.Errorf("%w: give its private key with --key", imagekeys.ErrCannotOpen)
		}
		if err := checkForeignSize(w.Scheme, blob); err != nil {
			return nil, err
		}
		// go-jose inflates a "zip":"DEF" payload to at most 10 times its
		// size (or 250 kB); PKCS#7 decrypts no more than it holds.
		var secret []byte
		var err error
		if w.Scheme == "jwe" {
			secret, err = jwe.NewKeyWrapper().UnwrapKey(f.dc, blob)
		} else {
			secret, err = pkcs7.NewKeyWrapper().UnwrapKey(f.dc, blob)
		}
		if err == nil && len(secret) > maxSecret {
			return nil, fmt.Errorf("the %s wrapped key holds %d bytes: %w", w.Scheme, len(secret), errTooLarge)
		}
		return secret, err
	case "pkcs11":
		if len(f.pkcs11) == 0 {
			return nil, fmt.Errorf("%w: give its token key with --pkcs11-key URI", imagekeys.ErrCannotOpen)
		}
		return openPKCS11(f.pkcs11, blob)
	case "pgp":
		if f.dc == nil || len(f.dc.Parameters["gpg-privatekeys"]) == 0 {
			return nil, fmt.Errorf("%w: give its secret key with --gpg-key", imagekeys.ErrCannotOpen)
		}
		// Not ocicrypt's unwrapper: it reads the whole decompressed body.
		return openPGP(f.dc.Parameters["gpg-privatekeys"], blob)
	}
	return nil, fmt.Errorf("%w: %s is not migrated here", imagekeys.ErrCannotOpen, w.Scheme)
}

func (c *cmd) migrate(ctx context.Context, args []string) error {
	fs := c.flags()
	var recips, keys, certs multiFlag
	fs.Var(&recips, "recipient", "encrypt the layer keys for `RECIPIENT` (recipient string, key name, KMS key URL); repeatable")
	fs.Var(&keys, "key", "private key `FILE` (PEM) for JWE or PKCS#7 wrapped keys; repeatable")
	fs.Var(&certs, "cert", "certificate `FILE` (PEM) for PKCS#7 wrapped keys; repeatable")
	var gpgKeys, p11Keys multiFlag
	fs.Var(&p11Keys, "pkcs11-key", "RSA key on a PKCS#11 token, as a pkcs11: `URI` with module-path and pin-source or pin-value, for ocicrypt's PKCS#11 wrapped keys; repeatable")
	fs.Var(&gpgKeys, "gpg-key", "OpenPGP secret key `FILE` (binary or armored, unprotected) for PGP wrapped keys; repeatable")
	fs.BoolVar(&c.allowClassical, "allow-classical", false, "let a layer mix post-quantum and classical-only recipients")
	keepOld := fs.Bool("keep-old", false, "keep the old annotations for readers not yet moved")
	dryRun := fs.Bool("dry-run", false, "print the plan; write nothing")
	pos, err := c.parse(fs, args, "ocikp migrate --recipient RECIPIENT... [--key FILE]... [--cert FILE]... [--gpg-key FILE]... [--pkcs11-key URI]... [--keep-old] [--dry-run] [--json] IMAGE...", migrateSummary)
	if err != nil {
		return err
	}
	names, err := c.images(pos)
	if err != nil {
		return err
	}
	if len(names) == 0 || len(recips) == 0 {
		return usagef("migrate needs --recipient and an image")
	}
	p, done, err := c.provider()
	if err != nil {
		return err
	}
	defer done()
	op := &foreignOpener{p: p, pkcs11: p11Keys}
	if len(keys)+len(certs)+len(gpgKeys) > 0 {
		params := map[string][][]byte{}
		for _, k := range keys {
			b, err := readKeyFile(k)
			if err != nil {
				return err
			}
			params["privkeys"] = append(params["privkeys"], b)
			params["privkeys-passwords"] = append(params["privkeys-passwords"], nil)
		}
		for _, k := range certs {
			b, err := readKeyFile(k)
			if err != nil {
				return err
			}
			params["x509s"] = append(params["x509s"], b)
		}
		for _, k := range gpgKeys {
			b, err := readKeyFile(k)
			if err != nil {
				return err
			}
			if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN PGP")) {
				blk, err := armor.Decode(bytes.NewReader(b))
				if err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
				if b, err = io.ReadAll(io.LimitReader(blk.Body, 1<<20)); err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
			}
			params["gpg-privatekeys"] = append(params["gpg-privatekeys"], b)
		}
		op.dc = &config.DecryptConfig{Parameters: params}
	}
	var rs []envelope.Recipient
	for i, r := range recips {
		rc, err := p.RecipientFor(ctx, r)
		if err != nil {
			return fmt.Errorf("--recipient %d of %d: %w", i+1, len(recips), err)
		}
		rs = append(rs, rc)
	}
	if err := p.CheckMix(rs); err != nil {
		return err
	}
	var results []*imagekeys.Result
	failed := 0
	for _, n := range names {
		res := &imagekeys.Result{Image: n}
		img, st, _, err := c.open(ctx, n)
		if err == nil {
			res.Image, res.OldDigest = img.Name, img.Digest
			var changed bool
			var plans []*imagekeys.MigratePlan
			plans, changed, err = imagekeys.MigrateAll(ctx, img, c.providerName, op, rs, *keepOld, *dryRun)
			if err != nil {
				err = explainMigrate(img.Name, err)
			}
			for i, pl := range plans {
				switch {
				case pl.UpToDate:
					printf(c.stderr, "%s: encrypted layer %d: already has an ocikp envelope\n", oneLine(img.Name), i)
				default:
					printf(c.stderr, "%s: encrypted layer %d: from %s (%s) to %d recipients; removed: %d annotations\n",
						oneLine(img.Name), i, pl.From, pl.Format, len(pl.After), len(pl.Removed))
				}
			}
			switch {
			case err != nil:
			case *dryRun:
				res.Status = imagekeys.StatusPlanned
			case !changed:
				res.Status, res.NewDigest = imagekeys.StatusUpToDate, img.Digest
			default:
				var d string
				if d, err = imagekeys.Write(ctx, img, st, st); err == nil {
					res.Status, res.NewDigest = "migrated", d
				}
			}
		}
		if err != nil {
			res.Fail(err)
			failed++
		}
		results = append(results, res)
	}
	return c.finish(results, failed)
}

func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
		return nil, fmt.Errorf("%s: not a key file (a regular file of at most 1 MiB)", path)
	}
	return os.ReadFile(path)
}

func explainMigrate(image string, err error) error {
	switch {
	case errors.Is(err, imagekeys.ErrNotEncrypted):
		return hint.Wrap(fmt.Errorf("%s: %w", image, err), "nothing to migrate")
	case errors.Is(err, errTooLarge):
		return hint.Wrap(fmt.Errorf("%s: %w", image, err), "no tool writes a wrapped key that large: the image is damaged or made to exhaust memory; nothing was written")
	}
	return hint.Wrap(fmt.Errorf("%s: %w", image, err),
		"seed providers' layers open with the keystore (ocikp import the seed's key) or KMS; JWE and PKCS#7 layers need --key FILE (and --cert FILE for PKCS#7), PGP layers --gpg-key FILE, PKCS#11 layers --pkcs11-key URI")
}
