package soft

// ParseKeyFile before the one-pass walk of internal/jsonwalk (raw-message maps), the oracle
// of FuzzParseKeyFileDifferential.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ocikp/ocikp/internal/oldjson"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

type wireKeyFileOld struct {
	Format, Type, Name, Created, Recipient, Public, Private string
	Encrypted                                               *Sealed
}

// ParseKeyFile decodes a key file strictly. Its errors never quote the file.
// Like protocol.DecodeRequest it reads through raw-message maps: every
// unwrap lists the keystore, and struct decoding's reflection is a visible
// part of each exec's start-up.
func parseKeyFileOld(data []byte) (*KeyFile, error) {
	bad := func(what string) error { return fmt.Errorf("not an ocikp key file: %s", what) }
	if len(data) > MaxKeyFileSize {
		return nil, bad("too large")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, bad("invalid JSON")
	}
	var w wireKeyFileOld
	for key, dst := range map[string]*string{
		"format": &w.Format, "type": &w.Type, "name": &w.Name, "created": &w.Created,
		"recipient": &w.Recipient, "private": &w.Private, "public": &w.Public,
	} {
		if raw, ok := m[key]; ok {
			// Already validated by the Unmarshal into m: a plain string is
			// sliced out (jsonstr), not scanned a second time — post-quantum
			// key files hold 3.6 KB of recipient and public key.
			v, err := oldjson.Unquote(raw)
			if err != nil {
				return nil, bad(fmt.Sprintf("%q is not a string", key))
			}
			*dst = v
		}
	}
	if raw, ok := m["encrypted"]; ok && string(raw) != "null" {
		var em map[string]json.RawMessage
		if json.Unmarshal(raw, &em) != nil || em == nil {
			return nil, bad(`"encrypted" is not an object`)
		}
		w.Encrypted = &Sealed{}
		for key, dst := range map[string]any{
			"kdf": &w.Encrypted.KDF, "logN": &w.Encrypted.LogN, "r": &w.Encrypted.R, "p": &w.Encrypted.P,
			"salt": &w.Encrypted.Salt, "nonce": &w.Encrypted.Nonce, "ciphertext": &w.Encrypted.Ciphertext,
		} {
			if json.Unmarshal(em[key], dst) != nil {
				return nil, bad(fmt.Sprintf("encrypted.%s is missing or of the wrong type", key))
			}
		}
	}
	if w.Format != formatV1 {
		return nil, bad(`"format" is not "` + formatV1 + `"`)
	}
	if !ValidName(w.Name) {
		return nil, bad("invalid name")
	}
	var pub []byte
	var err error
	switch kind := pq.KindOf(w.Type); {
	case w.Type == TypeP256:
		if pub, err = p256.ParseCompressed(w.Recipient); err != nil {
			return nil, bad("invalid recipient")
		}
	case kind != nil:
		// The public key from its base64 copy: Bech32-decoding a 2,000
		// character recipient costs about 0.1 ms, paid for every key on
		// every unwrap (the keystore is listed to match tags). The
		// recipient's form is checked, its checksum when it is printed;
		// the public key is checked against the private one when used.
		raw, err := base64.StdEncoding.Strict().DecodeString(w.Public)
		if err != nil || len(raw) != kind.PublicSize() || !kind.HasForm(w.Recipient) {
			return nil, bad(`invalid "public" or "recipient"`)
		}
		pub = raw
	default:
		return nil, bad(`unsupported key type (want one of ` + strings.Join(Types(), ", ") + `)`)
	}
	k := &KeyFile{Name: w.Name, Type: w.Type, Recipient: w.Recipient, Public: pub}
	if w.Created != "" {
		if k.Created, err = time.Parse(time.RFC3339, w.Created); err != nil {
			return nil, bad("invalid creation time")
		}
	}
	switch {
	case w.Private != "" && w.Encrypted == nil:
		k.private, err = base64.StdEncoding.Strict().DecodeString(w.Private)
		if err != nil || len(k.private) != 32 {
			return nil, bad("private key is not 32 bytes of base64")
		}
		// That it matches the recipient is checked when it is used
		// (PrivateKey): listing a keystore costs no scalar multiplications.
	case w.Private == "" && w.Encrypted != nil:
		if err := w.Encrypted.check(32); err != nil {
			return nil, bad(err.Error())
		}
		k.sealed = w.Encrypted
	default:
		return nil, bad(`need exactly one of "private" and "encrypted"`)
	}
	return k, nil
}
