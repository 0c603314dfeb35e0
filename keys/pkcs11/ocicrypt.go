package pkcs11

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Bounds on ocicrypt's PKCS#11 annotation, which comes from an image.
const (
	maxOcicryptBlob       = 64 << 10
	maxOcicryptRecipients = 64
	maxSecret             = 4096
)

// ocicryptBlob is ocicrypt's PKCS#11 wrapped key
// (crypto/pkcs11.Pkcs11Blob): the layer secret RSA-OAEP encrypted for
// each recipient.
type ocicryptBlob struct {
	Version    uint `json:"version"`
	Recipients []struct {
		Version uint   `json:"version"`
		Blob    string `json:"blob"`
		Hash    string `json:"hash,omitempty"`
	} `json:"recipients"`
}

// ErrNotOpened says no recipient of an ocicrypt PKCS#11 blob is the key's.
var ErrNotOpened = errors.New("the token key opens none of the layer's PKCS#11 wrapped keys")

// OpenOcicrypt decrypts ocicrypt's PKCS#11 wrapped key (the decoded value
// of org.opencontainers.image.enc.keys.pkcs11) with the RSA key u names,
// trying each recipient as ocicrypt does. u comes from the user (migrate
// --pkcs11-key), never from the image.
func OpenOcicrypt(u *URI, pin []byte, blob []byte) ([]byte, error) {
	if len(blob) > maxOcicryptBlob {
		return nil, fmt.Errorf("the PKCS#11 wrapped key is %d bytes, at most %d are read", len(blob), maxOcicryptBlob)
	}
	var b ocicryptBlob
	dec := json.NewDecoder(bytes.NewReader(blob))
	if err := dec.Decode(&b); err != nil {
		return nil, errors.New("the PKCS#11 wrapped key is not ocicrypt's JSON")
	}
	switch {
	case b.Version != 0:
		return nil, fmt.Errorf("the PKCS#11 wrapped key has version %d, ocicrypt writes 0", b.Version)
	case len(b.Recipients) == 0 || len(b.Recipients) > maxOcicryptRecipients:
		return nil, fmt.Errorf("the PKCS#11 wrapped key has %d recipients (1 to %d are read)", len(b.Recipients), maxOcicryptRecipients)
	}
	module, err := CheckModule(u)
	if err != nil {
		return nil, err
	}
	for _, r := range b.Recipients {
		ct, err := base64.StdEncoding.DecodeString(r.Blob)
		if err != nil || r.Version != 0 || len(ct) == 0 {
			continue
		}
		hash := r.Hash
		if hash == "" {
			hash = "sha1" // ocicrypt's default for a missing hash
		}
		if hash != "sha1" && hash != "sha256" {
			continue
		}
		rep, err := Call(&Request{Op: "rsa-oaep", Module: module, URI: u.String(), PIN: string(pin), Hash: hash, Data: ct})
		switch {
		case err == nil && len(rep.Secret) <= maxSecret:
			return rep.Secret, nil
		case errors.Is(err, ErrPINIncorrect), errors.Is(err, ErrPINLocked), errors.Is(err, ErrTokenAbsent),
			errors.Is(err, ErrModule), errors.Is(err, ErrNoKey), errors.Is(err, ErrNoSupport):
			return nil, err
		}
	}
	return nil, ErrNotOpened
}
