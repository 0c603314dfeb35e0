package imagecli

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/pkcs11"
)

// Bounds on other schemes' wrapped keys, which come from the image: each
// is decoded only after these checks, so no annotation costs more than a
// small multiple of its own size.
const (
	// maxForeignBlob bounds one JWE, PKCS#7 or PGP wrapped key. ocicrypt
	// writes a few hundred bytes per recipient; PKCS#7's BER parser
	// recurses once per nesting level (about 128 bytes of stack per byte
	// of input), so this also bounds its stack to a few MiB.
	maxForeignBlob = 64 << 10
	// maxSecret is the largest layer secret migrate can use: what an
	// ocikp envelope holds.
	maxSecret = envelope.MaxSecretSize
	// maxPGPDecompressed bounds what one PGP compressed packet may expand
	// to: the literal packet's header (a file name of up to 255 bytes)
	// and the secret.
	maxPGPDecompressed = maxSecret + 512
)

var errTooLarge = errors.New("larger than any layer key")

// checkForeignSize refuses a wrapped key larger than any ocicrypt writes.
func checkForeignSize(scheme string, blob []byte) error {
	if len(blob) > maxForeignBlob {
		return fmt.Errorf("the %s wrapped key is %d bytes, at most %d are read: %w", scheme, len(blob), maxForeignBlob, errTooLarge)
	}
	return nil
}

// openPGP decrypts a PGP-wrapped layer secret with unprotected secret
// keys, as ocicrypt's PGP unwrapper does, but reads no more than
// maxSecret bytes of the message's (possibly compressed) body: ocicrypt's
// reads the whole body into memory, so a small annotation compressed from
// gigabytes of zeros, made with the public key alone, would cost as much
// memory.
func openPGP(keys [][]byte, blob []byte) ([]byte, error) {
	if err := checkForeignSize("PGP", blob); err != nil {
		return nil, err
	}
	limit := int64(maxPGPDecompressed)
	cfg := &packet.Config{MaxDecompressedMessageSize: &limit}
	var last error
	for _, k := range keys {
		ring, err := openpgp.ReadKeyRing(bytes.NewReader(k))
		if err != nil {
			return nil, fmt.Errorf("unable to parse the --gpg-key: %w", err)
		}
		md, err := openpgp.ReadMessage(bytes.NewReader(blob), ring, nil, cfg)
		if err != nil {
			if errors.Is(err, pgperrors.ErrMessageTooLarge) {
				return nil, pgpTooLarge()
			}
			last = err
			continue
		}
		secret, err := io.ReadAll(io.LimitReader(md.UnverifiedBody, maxSecret+1))
		switch {
		case errors.Is(err, pgperrors.ErrMessageTooLarge) || len(secret) > maxSecret:
			return nil, pgpTooLarge()
		case err != nil:
			// Read to the end, the body was checked (MDC or AEAD): a
			// failure here is a tampered message, not another key's.
			return nil, fmt.Errorf("PGP: %w", err)
		}
		return secret, nil
	}
	if last != nil && !errors.Is(last, pgperrors.ErrKeyIncorrect) {
		return nil, fmt.Errorf("PGP: no given key opens it (%w)", last)
	}
	return nil, errors.New("PGP: no given key opens it")
}

func pgpTooLarge() error {
	return fmt.Errorf("the PGP wrapped key decompresses to more than %d bytes: %w", maxSecret, errTooLarge)
}

// openPKCS11 decrypts ocicrypt's PKCS#11 wrapped key with the token keys
// the user named (--pkcs11-key): the URI, its module and PIN come from
// the command line, never from the image.
func openPKCS11(uris []string, blob []byte) ([]byte, error) {
	if err := checkForeignSize("PKCS#11", blob); err != nil {
		return nil, err
	}
	var last error
	for _, s := range uris {
		u, err := pkcs11.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("--pkcs11-key: %w", err)
		}
		var pin []byte
		switch {
		case u.PINValue != "":
			pin = []byte(u.PINValue)
		case u.PINSource != "":
			if pin, err = pkcs11.ReadPINSource(u.PINSource); err != nil {
				return nil, err
			}
		}
		secret, err := pkcs11.OpenOcicrypt(u, pin, blob)
		if err == nil {
			if len(secret) > maxSecret {
				return nil, fmt.Errorf("the PKCS#11 wrapped key holds %d bytes: %w", len(secret), errTooLarge)
			}
			return secret, nil
		}
		if !errors.Is(err, pkcs11.ErrNotOpened) {
			return nil, err
		}
		last = err
	}
	return nil, last
}
