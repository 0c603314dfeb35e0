package protocol

// The decoder before the one-pass walk of internal/jsonwalk (raw-message maps), kept as the
// oracle of the differential tests: the walk accepts what it accepted,
// with the same result, but for the deliberate changes.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ocikp/ocikp/internal/oldjson"
)

// DecodeRequest parses and validates one request. Its errors describe the
// shape of the problem only, never the content.
//
// It walks the JSON through maps of raw messages rather than decoding into
// the structs directly: encoding/json's first use of a struct type builds its
// field tables by reflection, which measured about 80 µs of the provider's
// per-layer start-up. Keys match exactly, as ocicrypt writes them.
func DecodeRequestOld(data []byte) (*Request, error) {
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxRequestSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty input (ocikp keyprovider expects one JSON request on stdin)", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, describeJSONErrorOld(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	if top == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	req := &Request{}
	if err := strOld(top, "op", &req.Op); err != nil {
		return nil, err
	}
	var err error
	switch req.Op {
	case OpKeyWrap:
		req.KeyWrapParams, err = decodeWrapOld(top["keywrapparams"])
	case OpKeyUnwrap:
		req.KeyUnwrapParams, err = decodeUnwrapOld(top["keyunwrapparams"])
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

func decodeWrapOld(raw json.RawMessage) (*KeyWrapParams, error) {
	m, err := objectOld(raw, "keywrapparams")
	if err != nil || m == nil {
		return nil, fmt.Errorf("%w: keywrap without keywrapparams.ec", ErrMalformed)
	}
	ec, err := objectOld(m["ec"], "keywrapparams.ec")
	if err != nil {
		return nil, err
	}
	if ec == nil {
		return nil, fmt.Errorf("%w: keywrap without keywrapparams.ec", ErrMalformed)
	}
	w := &KeyWrapParams{EC: &EncryptConfig{}}
	if w.EC.Parameters, err = parametersOld(ec["Parameters"], "keywrapparams.ec.Parameters"); err != nil {
		return nil, err
	}
	if dc, err := objectOld(ec["DecryptConfig"], "keywrapparams.ec.DecryptConfig"); err != nil {
		return nil, err
	} else if dc != nil {
		if w.EC.DecryptConfig.Parameters, err = parametersOld(dc["Parameters"], "keywrapparams.ec.DecryptConfig.Parameters"); err != nil {
			return nil, err
		}
	}
	if w.Optsdata, err = bytesFieldOld(m, "optsdata", "keywrapparams.optsdata"); err != nil {
		return nil, err
	}
	return w, nil
}

func decodeUnwrapOld(raw json.RawMessage) (*KeyUnwrapParams, error) {
	m, err := objectOld(raw, "keyunwrapparams")
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("%w: keyunwrap without keyunwrapparams", ErrMalformed)
	}
	u := &KeyUnwrapParams{}
	if dc, err := objectOld(m["dc"], "keyunwrapparams.dc"); err != nil {
		return nil, err
	} else if dc != nil {
		u.DC = &DecryptConfig{}
		if u.DC.Parameters, err = parametersOld(dc["Parameters"], "keyunwrapparams.dc.Parameters"); err != nil {
			return nil, err
		}
	}
	if u.Annotation, err = bytesFieldOld(m, "annotation", "keyunwrapparams.annotation"); err != nil {
		return nil, err
	}
	if len(u.Annotation) == 0 {
		return nil, fmt.Errorf("%w: keyunwrap with an empty annotation", ErrMalformed)
	}
	return u, nil
}

// object decodes an optional JSON object; absent or null gives nil.
func objectOld(raw json.RawMessage, where string) (map[string]json.RawMessage, error) {
	if raw == nil {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %s is not an object", ErrMalformed, where)
	}
	return m, nil
}

func strOld(m map[string]json.RawMessage, key string, out *string) error {
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
var b64Old = base64.StdEncoding

func bytesFieldOld(m map[string]json.RawMessage, key, where string) ([]byte, error) {
	var s string
	if raw, ok := m[key]; ok && string(raw) != "null" {
		var err error
		if s, err = oldjson.Unquote(raw); err != nil {
			return nil, fmt.Errorf("%w: %s is not a base64 string", ErrMalformed, where)
		}
	}
	b, err := b64Old.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not valid base64", ErrMalformed, where)
	}
	return b, nil
}

// parameters decodes ocicrypt's map[string][][]byte (values base64).
func parametersOld(raw json.RawMessage, where string) (map[string][][]byte, error) {
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
			b, err := b64Old.DecodeString(v)
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
func describeJSONErrorOld(err error) string {
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
