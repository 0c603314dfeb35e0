package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ocikp/ocikp/internal/jsonstr"
)

// MaxRequestSize bounds a request: optsdata is about 200 bytes and an
// annotation a few KiB, so 1 MiB leaves room for many recipients and still
// refuses garbage before it is buffered.
const MaxRequestSize = 1 << 20

// Operations, as ocicrypt spells them.
const (
	OpKeyWrap   = "keywrap"
	OpKeyUnwrap = "keyunwrap"
)

// Request is ocicrypt's KeyProviderKeyWrapProtocolInput.
type Request struct {
	Op              string           `json:"op"`
	KeyWrapParams   *KeyWrapParams   `json:"keywrapparams,omitempty"`
	KeyUnwrapParams *KeyUnwrapParams `json:"keyunwrapparams,omitempty"`
}

// KeyWrapParams carries the encryption config and the secret to wrap.
type KeyWrapParams struct {
	EC       *EncryptConfig `json:"ec"`
	Optsdata []byte         `json:"optsdata"`
}

// KeyUnwrapParams carries the decryption config and the stored annotation.
type KeyUnwrapParams struct {
	DC         *DecryptConfig `json:"dc"`
	Annotation []byte         `json:"annotation"`
}

// EncryptConfig mirrors ocicrypt's config.EncryptConfig (field names untagged there).
type EncryptConfig struct {
	Parameters    map[string][][]byte `json:"Parameters"`
	DecryptConfig DecryptConfig       `json:"DecryptConfig"`
}

// DecryptConfig mirrors ocicrypt's config.DecryptConfig.
type DecryptConfig struct {
	Parameters map[string][][]byte `json:"Parameters"`
}

// ErrMalformed is returned (wrapped) for every request that cannot be used.
var ErrMalformed = errors.New("malformed key provider request")

// ReadRequest reads one request of at most MaxRequestSize bytes from r.
func ReadRequest(r io.Reader) (*Request, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxRequestSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading request: %w", err)
	}
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxRequestSize)
	}
	return DecodeRequest(data)
}

// DecodeRequest parses and validates one request. Its errors describe the
// shape of the problem only, never the content.
//
// It walks the JSON through maps of raw messages rather than decoding into
// the structs directly: encoding/json's first use of a struct type builds its
// field tables by reflection, which measured about 80 µs of the provider's
// per-layer start-up. Keys match exactly, as ocicrypt writes them.
func DecodeRequest(data []byte) (*Request, error) {
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxRequestSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty input (ocikp keyprovider expects one JSON request on stdin)", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, describeJSONError(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	if top == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	req := &Request{}
	if err := str(top, "op", &req.Op); err != nil {
		return nil, err
	}
	var err error
	switch req.Op {
	case OpKeyWrap:
		req.KeyWrapParams, err = decodeWrap(top["keywrapparams"])
	case OpKeyUnwrap:
		req.KeyUnwrapParams, err = decodeUnwrap(top["keyunwrapparams"])
	case "":
		return nil, fmt.Errorf("%w: no \"op\"", ErrMalformed)
	default:
		return nil, fmt.Errorf("%w: unknown op (want %q or %q)", ErrMalformed, OpKeyWrap, OpKeyUnwrap)
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

func decodeWrap(raw json.RawMessage) (*KeyWrapParams, error) {
	m, err := object(raw, "keywrapparams")
	if err != nil || m == nil {
		return nil, fmt.Errorf("%w: keywrap without keywrapparams.ec", ErrMalformed)
	}
	ec, err := object(m["ec"], "keywrapparams.ec")
	if err != nil {
		return nil, err
	}
	if ec == nil {
		return nil, fmt.Errorf("%w: keywrap without keywrapparams.ec", ErrMalformed)
	}
	w := &KeyWrapParams{EC: &EncryptConfig{}}
	if w.EC.Parameters, err = parameters(ec["Parameters"], "keywrapparams.ec.Parameters"); err != nil {
		return nil, err
	}
	if dc, err := object(ec["DecryptConfig"], "keywrapparams.ec.DecryptConfig"); err != nil {
		return nil, err
	} else if dc != nil {
		if w.EC.DecryptConfig.Parameters, err = parameters(dc["Parameters"], "keywrapparams.ec.DecryptConfig.Parameters"); err != nil {
			return nil, err
		}
	}
	if w.Optsdata, err = bytesField(m, "optsdata", "keywrapparams.optsdata"); err != nil {
		return nil, err
	}
	return w, nil
}

func decodeUnwrap(raw json.RawMessage) (*KeyUnwrapParams, error) {
	m, err := object(raw, "keyunwrapparams")
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("%w: keyunwrap without keyunwrapparams", ErrMalformed)
	}
	u := &KeyUnwrapParams{}
	if dc, err := object(m["dc"], "keyunwrapparams.dc"); err != nil {
		return nil, err
	} else if dc != nil {
		u.DC = &DecryptConfig{}
		if u.DC.Parameters, err = parameters(dc["Parameters"], "keyunwrapparams.dc.Parameters"); err != nil {
			return nil, err
		}
	}
	if u.Annotation, err = bytesField(m, "annotation", "keyunwrapparams.annotation"); err != nil {
		return nil, err
	}
	if len(u.Annotation) == 0 {
		return nil, fmt.Errorf("%w: keyunwrap with an empty annotation", ErrMalformed)
	}
	return u, nil
}

// object decodes an optional JSON object; absent or null gives nil.
func object(raw json.RawMessage, where string) (map[string]json.RawMessage, error) {
	if raw == nil {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %s is not an object", ErrMalformed, where)
	}
	return m, nil
}

func str(m map[string]json.RawMessage, key string, out *string) error {
	raw, ok := m[key]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%w: %q is not a string", ErrMalformed, key)
	}
	return nil
}

// b64 is what encoding/json uses for []byte.
var b64 = base64.StdEncoding

func bytesField(m map[string]json.RawMessage, key, where string) ([]byte, error) {
	var s string
	if raw, ok := m[key]; ok && string(raw) != "null" {
		var err error
		if s, err = jsonstr.Unquote(raw); err != nil {
			return nil, fmt.Errorf("%w: %s is not a base64 string", ErrMalformed, where)
		}
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not valid base64", ErrMalformed, where)
	}
	return b, nil
}

// parameters decodes ocicrypt's map[string][][]byte (values base64).
func parameters(raw json.RawMessage, where string) (map[string][][]byte, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	var m map[string][]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %s is not a map of lists of base64 strings", ErrMalformed, where)
	}
	out := make(map[string][][]byte, len(m))
	for k, vs := range m {
		bs := make([][]byte, len(vs))
		for i, v := range vs {
			b, err := b64.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("%w: %s has a value that is not valid base64", ErrMalformed, where)
			}
			bs[i] = b
		}
		out[k] = bs
	}
	return out, nil
}

// describeJSONError names where and what kind of error, without quoting the
// input: encoding/json's own messages can echo values.
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q has the wrong type (want %s)", typ.Field, typ.Type)
		}
		return fmt.Sprintf("wrong JSON type at byte %d (want %s)", typ.Offset, typ.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	default:
		// base64 errors and the like: say what, not where in the secret.
		return "invalid value (bad base64 or structure)"
	}
}

// EncodeWrapResponse returns the JSON reply for a wrapped annotation.
// Replies are written directly: base64 needs no JSON escaping, and this
// spares the exec path encoding/json's reflection (see DecodeRequest).
func EncodeWrapResponse(annotation []byte) ([]byte, error) {
	return reply(`{"keywrapresults":{"annotation":"`, annotation), nil
}

// EncodeUnwrapResponse returns the JSON reply carrying the unwrapped optsdata.
func EncodeUnwrapResponse(optsdata []byte) ([]byte, error) {
	return reply(`{"keyunwrapresults":{"optsdata":"`, optsdata), nil
}

func reply(prefix string, value []byte) []byte {
	out := make([]byte, 0, len(prefix)+b64.EncodedLen(len(value))+3)
	out = append(out, prefix...)
	out = b64.AppendEncode(out, value)
	return append(out, `"}}`...)
}
