package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const wrapReq = `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"ocikp":["b2Npa3AtcDI1Njp4"]},"DecryptConfig":{"Parameters":{}}},"optsdata":"c2VjcmV0"}}`
const unwrapReq = `{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{}},"annotation":"eyJ2IjoxfQ=="}}`

func TestDecodeRequest(t *testing.T) {
	r, err := DecodeRequest([]byte(wrapReq))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.KeyWrapParams.EC.Parameters["ocikp"][0]); got != "ocikp-p256:x" {
		t.Fatalf("parameter %q", got)
	}
	if string(r.KeyWrapParams.Optsdata) != "secret" {
		t.Fatal("optsdata")
	}
	r, err = DecodeRequest([]byte(unwrapReq))
	if err != nil || string(r.KeyUnwrapParams.Annotation) != `{"v":1}` {
		t.Fatalf("unwrap: %v", err)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	const marker = "TOPSECRETMARKER"
	cases := map[string]string{
		"empty":        ``,
		"spaces":       "  \n",
		"not json":     `{"op":`,
		"trailing":     unwrapReq + `{}`,
		"no op":        `{}`,
		"bad op":       `{"op":"` + marker + `"}`,
		"wrap no ec":   `{"op":"keywrap","keywrapparams":{"optsdata":"c2VjcmV0"}}`,
		"unwrap no p":  `{"op":"keyunwrap"}`,
		"unwrap empty": `{"op":"keyunwrap","keyunwrapparams":{"annotation":""}}`,
		"bad b64":      `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{}},"optsdata":"` + marker + `!!"}}`,
		"wrong type":   `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"x":"` + marker + `"}},"optsdata":""}}`,
		"array":        `["` + marker + `"]`,
	}
	for name, in := range cases {
		_, err := DecodeRequest([]byte(in))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
			continue
		}
		if strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("%s: error echoes the request: %v", name, err)
		}
	}
}

func TestReadRequestLimit(t *testing.T) {
	big := `{"op":"keyunwrap","keyunwrapparams":{"annotation":"` + strings.Repeat("A", MaxRequestSize) + `"}}`
	if _, err := ReadRequest(strings.NewReader(big)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v", err)
	}
}

func TestEncode(t *testing.T) {
	b, _ := EncodeWrapResponse([]byte("ann"))
	if string(b) != `{"keywrapresults":{"annotation":"YW5u"}}` {
		t.Fatal(string(b))
	}
	b, _ = EncodeUnwrapResponse([]byte("opt"))
	if string(b) != `{"keyunwrapresults":{"optsdata":"b3B0"}}` {
		t.Fatal(string(b))
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(wrapReq))
	f.Add([]byte(unwrapReq))
	f.Add([]byte(`{"op":"keywrap","keywrapparams":{"ec":null}}`))
	f.Add([]byte(`{"op":"keyunwrap","keyunwrapparams":{"dc":null,"annotation":"AA=="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			if len(b) >= 8 && bytes.Contains([]byte(err.Error()), b) {
				t.Fatalf("error echoes the input")
			}
			return
		}
		switch r.Op {
		case OpKeyWrap:
			if r.KeyWrapParams == nil || r.KeyWrapParams.EC == nil {
				t.Fatal("accepted keywrap without ec")
			}
		case OpKeyUnwrap:
			if r.KeyUnwrapParams == nil || len(r.KeyUnwrapParams.Annotation) == 0 {
				t.Fatal("accepted keyunwrap without annotation")
			}
		default:
			t.Fatal("accepted unknown op")
		}
	})
}
