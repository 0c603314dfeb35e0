package protocol

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ocikp/ocikp/internal/jsonwalk"
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

// Enabled is the decryption parameter value that skopeo's bare
// --decryption-key provider:NAME sends: "no specific key".
const Enabled = "Enabled"

// ErrMalformed is returned (wrapped) for every request that cannot be used.
var ErrMalformed = errors.New("malformed key provider request")

// ReadRequest reads one request of at most MaxRequestSize bytes from r.
func ReadRequest(r io.Reader) (*Request, error) {
	data, err := ReadRequestBytes(r)
	if err != nil {
		return nil, err
	}
	return DecodeRequest(data)
}

// ReadRequestBytes reads a request's bytes as ReadRequest does, with its
// bound and its errors, without decoding them.
func ReadRequestBytes(r io.Reader) ([]byte, error) {
	// One buffer that holds a usual request (a few KiB; a post-quantum
	// unwrap about 5), grown only for bigger ones: io.ReadAll starts at 512
	// bytes and copies as it doubles.
	data := make([]byte, 0, 16<<10)
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := r.Read(data[len(data):min(cap(data), MaxRequestSize+1)])
		data = data[:len(data)+n]
		if len(data) > MaxRequestSize {
			return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxRequestSize)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading request: %w", err)
		}
	}
	return data, nil
}

// Bounds on what a request may hold besides its size: the parameter lists
// are ocicrypt's whole encryption or decryption config (every scheme's keys,
// not only ours), a few names and a few values each.
const (
	MaxParameterNames  = 256  // names in all the Parameters maps of a request
	MaxParameterValues = 1024 // values in all their lists
	maxName            = 1024 // bytes of one name or key
	maxOp              = 64
)

// Errors of the deliberate differences from encoding/json's leniency
// (wrapped with ErrMalformed).
var (
	errUnknownField = errors.New("unknown field")
	errDuplicate    = errors.New("duplicate key")
	errTooMany      = errors.New("too many parameters")
)

// DecodeRequest parses and validates one request. Its errors describe the
// shape of the problem only, never the content.
//
// It walks the JSON once, by hand (internal/jsonwalk), rather than through
// encoding/json: struct decoding builds its field tables by reflection on
// first use (about 80 µs of each exec's start-up), and raw-message maps scan
// and copy the big base64 values several times. The schema is ocicrypt's
// KeyProviderKeyWrapProtocolInput as its json.Marshal writes it (exact key
// names); an unknown field, a duplicate key or a value over its bound is
// refused where it is met, unread.
func DecodeRequest(data []byte) (*Request, error) {
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxRequestSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty input (ocikp keyprovider expects one JSON request on stdin)", ErrMalformed)
	}
	w := walker{d: jsonwalk.New(data)}
	req, err := w.request()
	if err == nil {
		err = w.d.End()
		if err != nil {
			err = fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
		}
	}
	if err != nil {
		return nil, w.describe(err)
	}
	switch req.Op {
	case OpKeyWrap:
		if req.KeyWrapParams == nil || req.KeyWrapParams.EC == nil {
			return nil, fmt.Errorf("%w: keywrap without keywrapparams.ec", ErrMalformed)
		}
		req.KeyUnwrapParams = nil
	case OpKeyUnwrap:
		u := req.KeyUnwrapParams
		if u == nil {
			return nil, fmt.Errorf("%w: keyunwrap without keyunwrapparams", ErrMalformed)
		}
		if len(u.Annotation) == 0 {
			return nil, fmt.Errorf("%w: keyunwrap with an empty annotation", ErrMalformed)
		}
		req.KeyWrapParams = nil
	case "":
		return nil, fmt.Errorf("%w: no \"op\"", ErrMalformed)
	default:
		return nil, fmt.Errorf("%w: unknown op (want %q or %q)", ErrMalformed, OpKeyWrap, OpKeyUnwrap)
	}
	return req, nil
}

// walker decodes the request's schema, counting the parameters. Both params objects are decoded by their schema whatever the
// op (ocicrypt sends the other one as nulls): the op may come last.
type walker struct {
	d      *jsonwalk.Decoder
	names  int
	values int
}

// fieldError is an error about the value at where.
type fieldError struct {
	where string
	err   error
}

func (e *fieldError) Error() string { return e.where + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// describe turns a walk error into the request's error: the shape of the
// problem and where, never the content.
func (w *walker) describe(err error) error {
	if errors.Is(err, ErrMalformed) {
		return err
	}
	var syn *jsonwalk.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("%w: %v", ErrMalformed, syn)
	}
	if errors.Is(err, jsonwalk.ErrTruncated) {
		return fmt.Errorf("%w: truncated JSON", ErrMalformed)
	}
	var fe *fieldError
	if !errors.As(err, &fe) {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case errors.Is(err, errUnknownField), errors.Is(err, errDuplicate), errors.Is(err, errTooMany):
		return fmt.Errorf("%w: %s %w", ErrMalformed, fe.where, fe.err)
	case errors.Is(err, jsonwalk.ErrTooLong):
		return fmt.Errorf("%w: %s is too long", ErrMalformed, fe.where)
	case errors.Is(err, jsonwalk.ErrBase64):
		return fmt.Errorf("%w: %s is not valid base64", ErrMalformed, fe.where)
	case strings.HasSuffix(fe.where, "Parameters"):
		return fmt.Errorf("%w: %s is not a map of lists of base64 strings", ErrMalformed, fe.where)
	case fe.where == `"op"`:
		return fmt.Errorf("%w: %s is not a string", ErrMalformed, fe.where)
	case strings.HasSuffix(fe.where, "optsdata"), strings.HasSuffix(fe.where, "annotation"):
		return fmt.Errorf("%w: %s is not a base64 string", ErrMalformed, fe.where)
	default:
		return fmt.Errorf("%w: %s is not an object", ErrMalformed, fe.where)
	}
}

func (w *walker) fail(where string, err error) error {
	if err == nil {
		return nil
	}
	var fe *fieldError
	var syn *jsonwalk.SyntaxError
	if errors.As(err, &fe) || errors.As(err, &syn) || errors.Is(err, jsonwalk.ErrTruncated) {
		return err
	}
	return &fieldError{where, err}
}

// object walks an object of the fields named in keys: each key at most
// once, any other refused.
func (w *walker) object(where string, keys []string, field func(i int) error) error {
	var seen uint32
	err := w.d.Object(maxName, func(key []byte) error {
		for i, k := range keys {
			if string(key) == k {
				if seen&(1<<i) != 0 {
					return &fieldError{where, errDuplicate}
				}
				seen |= 1 << i
				return field(i)
			}
		}
		return &fieldError{where, errUnknownField}
	})
	return w.fail(where, err)
}

func (w *walker) request() (*Request, error) {
	if w.d.Peek() != '{' {
		if err := w.d.Skip(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	req := &Request{}
	err := w.object("the request", []string{"op", "keywrapparams", "keyunwrapparams"}, func(i int) error {
		switch i {
		case 0:
			if null, err := w.d.Null(); null || err != nil {
				return err
			}
			op, err := w.d.String(maxOp)
			if err != nil {
				return w.fail(`"op"`, err)
			}
			req.Op = string(op)
			return nil
		case 1:
			var err error
			req.KeyWrapParams, err = w.wrap()
			return err
		default:
			var err error
			req.KeyUnwrapParams, err = w.unwrap()
			return err
		}
	})
	return req, err
}

func (w *walker) wrap() (*KeyWrapParams, error) {
	if null, err := w.d.Null(); null || err != nil {
		return nil, err
	}
	p := &KeyWrapParams{}
	err := w.object("keywrapparams", []string{"ec", "optsdata"}, func(i int) error {
		var err error
		if i == 1 {
			p.Optsdata, err = w.bytes("keywrapparams.optsdata")
			return err
		}
		if null, err := w.d.Null(); null || err != nil {
			return err
		}
		p.EC = &EncryptConfig{}
		return w.object("keywrapparams.ec", []string{"Parameters", "DecryptConfig"}, func(i int) error {
			if i == 0 {
				p.EC.Parameters, err = w.parameters("keywrapparams.ec.Parameters")
				return err
			}
			if null, err := w.d.Null(); null || err != nil {
				return err
			}
			return w.object("keywrapparams.ec.DecryptConfig", []string{"Parameters"}, func(int) error {
				p.EC.DecryptConfig.Parameters, err = w.parameters("keywrapparams.ec.DecryptConfig.Parameters")
				return err
			})
		})
	})
	if err != nil {
		return nil, err
	}
	if p.Optsdata == nil {
		p.Optsdata = []byte{} // absent or null, as base64 of ""
	}
	return p, nil
}

func (w *walker) unwrap() (*KeyUnwrapParams, error) {
	if null, err := w.d.Null(); null || err != nil {
		return nil, err
	}
	u := &KeyUnwrapParams{}
	err := w.object("keyunwrapparams", []string{"dc", "annotation"}, func(i int) error {
		var err error
		if i == 1 {
			u.Annotation, err = w.bytes("keyunwrapparams.annotation")
			return err
		}
		if null, err := w.d.Null(); null || err != nil {
			return err
		}
		u.DC = &DecryptConfig{}
		return w.object("keyunwrapparams.dc", []string{"Parameters"}, func(int) error {
			u.DC.Parameters, err = w.parameters("keyunwrapparams.dc.Parameters")
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	if u.Annotation == nil {
		u.Annotation = []byte{}
	}
	return u, nil
}

// b64 is what encoding/json uses for []byte.
var b64 = base64.StdEncoding

// bytes reads a base64 string, decoded once from the input; null gives nil.
func (w *walker) bytes(where string) ([]byte, error) {
	if null, err := w.d.Null(); null || err != nil {
		return nil, err
	}
	b, err := w.d.Base64(b64, MaxRequestSize)
	if err != nil {
		return nil, w.fail(where, err)
	}
	return b, nil
}

// parameters decodes ocicrypt's map[string][][]byte (values base64).
// Like encoding/json, a null list is an empty one and a null value an empty
// value.
func (w *walker) parameters(where string) (map[string][][]byte, error) {
	if null, err := w.d.Null(); null || err != nil {
		return nil, err
	}
	m := map[string][][]byte{}
	err := w.d.Object(maxName, func(key []byte) error {
		if w.names++; w.names > MaxParameterNames {
			return &fieldError{where, errTooMany}
		}
		if _, dup := m[string(key)]; dup {
			return &fieldError{where, errDuplicate}
		}
		name := string(key)
		vs := [][]byte{}
		if null, err := w.d.Null(); err != nil || null {
			m[name] = vs
			return err
		}
		err := w.d.Array(func() error {
			if w.values++; w.values > MaxParameterValues {
				return &fieldError{where, errTooMany}
			}
			v, err := w.bytes(where)
			if v == nil && err == nil {
				v = []byte{}
			}
			vs = append(vs, v)
			return err
		})
		m[name] = vs
		return err
	})
	if err != nil {
		return nil, w.fail(where, err)
	}
	return m, nil
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
