package envelope_test

// Parse before the one-pass walk of internal/jsonwalk (raw-message maps, then a re-marshal
// compared with the blob), kept as the oracle of FuzzParseDifferential.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/oldjson"
)

const maxField = 8 << 10

var b64 = base64.StdEncoding.Strict()

// Parse decodes a blob strictly: compact JSON, exact keys, no unknown
// fields, canonical base64, bounded sizes. Errors never quote the blob.
func ParseOld(blob []byte) (*envelope.Envelope, error) {
	if len(blob) > envelope.MaxBlobSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", envelope.ErrMalformed, len(blob), envelope.MaxBlobSize)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(blob, &top); err != nil || top == nil {
		return nil, envelope.ErrNotEnvelope
	}
	if _, ok := top["v"]; !ok {
		return nil, envelope.ErrNotEnvelope
	}
	if err := knownOld(top, "v", "recipients", "payload", "mac"); err != nil {
		return nil, err
	}
	var v int
	if json.Unmarshal(top["v"], &v) != nil {
		return nil, fmt.Errorf("%w: \"v\" is not an integer", envelope.ErrMalformed)
	}
	if v != envelope.Version {
		return nil, fmt.Errorf("%w: this layer uses envelope version %d; this ocikp reads version %d", envelope.ErrUnsupportedVersion, v, envelope.Version)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(top["recipients"], &raws); err != nil || len(raws) == 0 {
		return nil, fmt.Errorf("%w: \"recipients\" must be a non-empty array", envelope.ErrMalformed)
	}
	if len(raws) > envelope.MaxRecipients {
		return nil, fmt.Errorf("%w: %d recipients, at most %d", envelope.ErrMalformed, len(raws), envelope.MaxRecipients)
	}
	e := &envelope.Envelope{}
	var err error
	if e.Payload, err = fieldOld(top, "payload", true); err != nil {
		return nil, err
	}
	if e.MAC, err = fieldOld(top, "mac", true); err != nil {
		return nil, err
	}
	if len(e.MAC) != sha256.Size {
		return nil, fmt.Errorf("%w: \"mac\" is not %d bytes", envelope.ErrMalformed, sha256.Size)
	}
	for i, raw := range raws {
		s, err := parseStanzaOld(raw)
		if err != nil {
			return nil, fmt.Errorf("recipient %d: %w", i+1, err)
		}
		e.Recipients = append(e.Recipients, s)
	}
	// One encoding per blob: whitespace, key order, escapes or anything else
	// that differs from Marshal's output is refused.
	if canon, _ := e.Marshal(); !bytes.Equal(canon, blob) {
		return nil, fmt.Errorf("%w: not in canonical form (compact JSON, fixed key order; see docs/format.md)", envelope.ErrMalformed)
	}
	return e, nil
}

func parseStanzaOld(raw []byte) (*envelope.Stanza, error) {
	m, err := objectOld(raw, "type", "tag", "kid", "enc", "key")
	if err != nil {
		return nil, err
	}
	s := &envelope.Stanza{}
	if s.Type, err = strOld(m, "type", true); err != nil {
		return nil, err
	}
	if s.KID, err = strOld(m, "kid", false); err != nil {
		return nil, err
	}
	if s.Tag, err = fieldOld(m, "tag", false); err != nil {
		return nil, err
	}
	if s.Enc, err = fieldOld(m, "enc", false); err != nil {
		return nil, err
	}
	if s.Key, err = fieldOld(m, "key", true); err != nil {
		return nil, err
	}
	return s, nil
}

// object decodes a JSON object whose keys must all be in allowed, matched
// exactly (encoding/json alone would match them case-insensitively).
func objectOld(raw []byte, allowed ...string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: expected a JSON object", envelope.ErrMalformed)
	}
	return m, knownOld(m, allowed...)
}

func knownOld(m map[string]json.RawMessage, allowed ...string) error {
	for k := range m {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return fmt.Errorf("%w: unknown field %.32q", envelope.ErrMalformed, k)
		}
	}
	return nil
}

func strOld(m map[string]json.RawMessage, key string, required bool) (string, error) {
	raw, ok := m[key]
	if !ok {
		if required {
			return "", fmt.Errorf("%w: missing %q", envelope.ErrMalformed, key)
		}
		return "", nil
	}
	s, err := oldjson.Unquote(raw)
	if err != nil || (s == "" && required) || len(s) > maxField {
		return "", fmt.Errorf("%w: %q must be a non-empty string", envelope.ErrMalformed, key)
	}
	return s, nil
}

func fieldOld(m map[string]json.RawMessage, key string, required bool) ([]byte, error) {
	s, err := strOld(m, key, required)
	if err != nil || s == "" {
		if _, present := m[key]; present && err == nil {
			return nil, fmt.Errorf("%w: %q is empty", envelope.ErrMalformed, key)
		}
		return nil, err
	}
	if len(s) > maxField*4/3+4 && key != "payload" {
		return nil, fmt.Errorf("%w: %q too long", envelope.ErrMalformed, key)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not canonical base64", envelope.ErrMalformed, key)
	}
	return b, nil
}
