package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// WrapResponse is the reply to a keywrap request.
type WrapResponse struct {
	KeyWrapResults struct {
		Annotation []byte `json:"annotation"`
	} `json:"keywrapresults"`
}

// UnwrapResponse is the reply to a keyunwrap request.
type UnwrapResponse struct {
	KeyUnwrapResults struct {
		OptsData []byte `json:"optsdata"`
	} `json:"keyunwrapresults"`
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
func DecodeRequest(data []byte) (*Request, error) {
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxRequestSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty input (ocikp keyprovider expects one JSON request on stdin)", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, describeJSONError(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	switch req.Op {
	case OpKeyWrap:
		if req.KeyWrapParams == nil || req.KeyWrapParams.EC == nil {
			return nil, fmt.Errorf("%w: keywrap without keywrapparams.ec", ErrMalformed)
		}
	case OpKeyUnwrap:
		if req.KeyUnwrapParams == nil {
			return nil, fmt.Errorf("%w: keyunwrap without keyunwrapparams", ErrMalformed)
		}
		if len(req.KeyUnwrapParams.Annotation) == 0 {
			return nil, fmt.Errorf("%w: keyunwrap with an empty annotation", ErrMalformed)
		}
	case "":
		return nil, fmt.Errorf("%w: no \"op\"", ErrMalformed)
	default:
		return nil, fmt.Errorf("%w: unknown op (want %q or %q)", ErrMalformed, OpKeyWrap, OpKeyUnwrap)
	}
	return &req, nil
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
func EncodeWrapResponse(annotation []byte) ([]byte, error) {
	var r WrapResponse
	r.KeyWrapResults.Annotation = annotation
	return json.Marshal(&r)
}

// EncodeUnwrapResponse returns the JSON reply carrying the unwrapped optsdata.
func EncodeUnwrapResponse(optsdata []byte) ([]byte, error) {
	var r UnwrapResponse
	r.KeyUnwrapResults.OptsData = optsdata
	return json.Marshal(&r)
}
