package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/jsonwalk"
)

// ocicryptInput is ocicrypt's KeyProviderKeyWrapProtocolInput with its
// config structs (v1.1 to v1.3 alike), as real callers marshal it.
type ocicryptInput struct {
	Operation     string `json:"op"`
	KeyWrapParams struct {
		Ec       *ocicryptEC `json:"ec"`
		OptsData []byte      `json:"optsdata"`
	} `json:"keywrapparams,omitempty"`
	KeyUnwrapParams struct {
		Dc         *ocicryptDC `json:"dc"`
		Annotation []byte      `json:"annotation"`
	} `json:"keyunwrapparams,omitempty"`
}

type ocicryptEC struct {
	Parameters    map[string][][]byte
	DecryptConfig ocicryptDC
}

type ocicryptDC struct{ Parameters map[string][][]byte }

// What ocicrypt writes, the walk reads as the old decoder did.
func TestOcicryptRequests(t *testing.T) {
	params := map[string][][]byte{"ocikp": {[]byte("ocikp1p256xyz"), nil}, "privkeys": {bytes.Repeat([]byte{0xfb}, 3000)}, "empty": nil, "x509s": {}}
	var reqs []ocicryptInput
	for _, p := range []map[string][][]byte{nil, {}, params} {
		var w ocicryptInput
		w.Operation = OpKeyWrap
		w.KeyWrapParams.Ec = &ocicryptEC{Parameters: p, DecryptConfig: ocicryptDC{p}}
		w.KeyWrapParams.OptsData = []byte(`{"symkey":"…"}`)
		reqs = append(reqs, w)
		for _, dc := range []*ocicryptDC{nil, {}, {p}} {
			var u ocicryptInput
			u.Operation = OpKeyUnwrap
			u.KeyUnwrapParams.Dc = dc
			u.KeyUnwrapParams.Annotation = []byte(`{"v":1}`)
			reqs = append(reqs, u)
		}
	}
	for i, r := range reqs {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRequest(data)
		if err != nil {
			t.Fatalf("request %d %s: %v", i, data, err)
		}
		want, err := DecodeRequestOld(data)
		if err != nil {
			t.Fatalf("request %d: old decoder: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("request %d %s:\n got %#v\nwant %#v", i, data, got, want)
		}
	}
}

// The deliberate differences from the old decoder: each refused, with a
// message that names where but not what.
func TestDecodeRequestStricter(t *testing.T) {
	const marker = "TOPSECRETMARKER"
	ann := `"annotation":"eyJ2IjoxfQ=="`
	names := make([]string, MaxParameterNames+1)
	for i := range names {
		names[i] = `"n` + strings.Repeat("x", i) + `":null`
	}
	values := strings.Repeat(`"AA==",`, MaxParameterValues) + `"AA=="`
	cases := map[string]struct{ in, want string }{
		"unknown top":      {`{"op":"keyunwrap","` + marker + `":1,"keyunwrapparams":{` + ann + `}}`, "the request unknown field"},
		"unknown nested":   {`{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{},"` + marker + `":[]},` + ann + `}}`, "keyunwrapparams.dc unknown field"},
		"case differs":     {`{"op":"keyunwrap","keyunwrapparams":{"dc":{"parameters":{}},` + ann + `}}`, "keyunwrapparams.dc unknown field"},
		"duplicate op":     {`{"op":"keywrap","op":"keyunwrap","keyunwrapparams":{` + ann + `}}`, "the request duplicate key"},
		"duplicate name":   {`{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{"a":[],"a":[]}},` + ann + `}}`, "keyunwrapparams.dc.Parameters duplicate key"},
		"duplicate ann":    {`{"op":"keyunwrap","keyunwrapparams":{` + ann + `,` + ann + `}}`, "keyunwrapparams duplicate key"},
		"too many names":   {`{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{` + strings.Join(names, ",") + `}},` + ann + `}}`, "too many parameters"},
		"too many values":  {`{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{"a":[` + values + `]}},` + ann + `}}`, "too many parameters"},
		"long name":        {`{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{"` + strings.Repeat("n", maxName+1) + `":[]}},` + ann + `}}`, "keyunwrapparams.dc.Parameters is too long"},
		"other op's param": {`{"op":"keyunwrap","keywrapparams":{"ec":5},"keyunwrapparams":{` + ann + `}}`, "keywrapparams.ec is not an object"},
		"trailing bracket": {`{"op":"keyunwrap","keyunwrapparams":{` + ann + `}}]`, "trailing data"},
	}
	for name, c := range cases {
		if _, err := DecodeRequestOld([]byte(c.in)); err != nil {
			t.Errorf("%s: the old decoder refused it too (%v): not a change", name, err)
		}
		_, err := DecodeRequest([]byte(c.in))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrMalformed with %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), marker) {
			t.Errorf("%s: error quotes the request: %v", name, err)
		}
	}
}

// deliberate reports whether err, for a request the old decoder accepted
// as op, is one of the deliberate refusals.
func deliberate(err error, op string) bool {
	var fe *fieldError
	switch {
	case errors.Is(err, errUnknownField), errors.Is(err, errDuplicate), errors.Is(err, errTooMany),
		errors.Is(err, jsonwalk.ErrTooLong), strings.Contains(err.Error(), "trailing data"):
		return true
	case errors.As(err, &fe):
		// The params of the other op, which the old decoder never read.
		other := "keyunwrapparams"
		if op == OpKeyUnwrap {
			other = "keywrapparams"
		}
		return strings.HasPrefix(fe.where, other)
	}
	return false
}

// The walk accepts what the old decoder accepted, with the same result,
// except the deliberate refusals; and accepts nothing it refused.
func FuzzDecodeRequestDifferential(f *testing.F) {
	f.Add([]byte(wrapReq))
	f.Add([]byte(unwrapReq))
	f.Add([]byte(` {"keyunwrapparams":{"annotation":"QU\u004aD","dc":{"Parameters":{"a\u00e9":["QUJD\n",null],"b":null}}},"op":"keyunwrap"} `))
	f.Add([]byte(`{"op":"keywrap","keywrapparams":{"ec":{"Parameters":null,"DecryptConfig":null},"optsdata":null},"keyunwrapparams":{"dc":null,"annotation":null}}`))
	f.Add([]byte(`{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":null,"annotation":"QUI="}}`))
	f.Add([]byte(`{"op":"keywrap","keywrapparams":{"ec":{"x":1}}}`))
	f.Add([]byte(`{"op":"keyunwrap","keyunwrapparams":{"annotation":"QUJD"}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeRequest(b)
		want, oerr := DecodeRequestOld(b)
		switch {
		case err == nil && oerr != nil:
			t.Fatalf("accepted what the old decoder refused (%v)", oerr)
		case err == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("results differ:\n got %#v\nwant %#v", got, want)
		case err != nil && oerr == nil && !deliberate(err, want.Op):
			t.Fatalf("refused what the old decoder accepted: %v", err)
		case err != nil && !errors.Is(err, ErrMalformed):
			t.Fatalf("error not ErrMalformed: %v", err)
		}
	})
}

// base64 values are decoded from the input, including escaped ones.
func TestDecodeRequestEscapes(t *testing.T) {
	in := `{"op":"keyunwrap","keyunwrapparams":{"annotation":"QU\u004aD\/A=="}}`
	r, err := DecodeRequest([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := base64.StdEncoding.DecodeString("QUJD/A==")
	if !bytes.Equal(r.KeyUnwrapParams.Annotation, want) {
		t.Fatalf("got %q", r.KeyUnwrapParams.Annotation)
	}
}
